#include "quantlens/gpu/device_info.h"

#include <QtTest>

// Runs on every CUDA build; skips where the machine has no usable GPU (CI never has one).
class TestGpuDevices : public QObject {
    Q_OBJECT
private slots:
    void reportsDevicesOrReason() {
        const quantlens::gpu::DeviceQuery query = quantlens::gpu::queryDevices();
        if (query.devices.empty()) {
            QVERIFY(!query.unavailableReason.empty());
            QSKIP(qPrintable(QString("no CUDA device: %1")
                                 .arg(QString::fromStdString(query.unavailableReason))));
        }
        QVERIFY(query.unavailableReason.empty());
        for (const auto& device : query.devices) {
            QVERIFY(!device.name.empty());
            QVERIFY(device.totalMemoryBytes > 0);
            // The build targets sm_80 and sm_90.
            QVERIFY2(device.computeMajor >= 8, qPrintable(QString::fromStdString(device.name)));
        }
    }
};

QTEST_APPLESS_MAIN(TestGpuDevices)
#include "test_gpu_devices.moc"
