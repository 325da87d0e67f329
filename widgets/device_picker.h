#pragma once

#include <QList>
#include <QString>
#include <QWidget>

class QComboBox;

// One entry of the device picker: a device jobs can run on, or a kind of device this machine or
// build lacks (not usable, with the reason as its detail).
struct DeviceChoice {
    QString id;     // the registry id: "cpu", "cuda:0"
    QString label;  // "cuda:0 — NVIDIA H200, sm_90, 131.2 GiB free of 139.8 GiB"
    QString detail; // tooltip
    bool usable = true;
};

// "Run on": the devices the engine's jobs can run on, each with its name and free memory, and the
// kinds that cannot be used, greyed, saying why. It chooses; it runs nothing.
class DevicePicker : public QWidget {
    Q_OBJECT

public:
    explicit DevicePicker(QWidget* parent = nullptr);

    // Replaces the list; the current device stays chosen when it is still usable, else the first
    // choice (the CPU) is, with deviceChosen.
    void setChoices(const QList<DeviceChoice>& choices);
    // Chooses `id` when it is a usable choice (no deviceChosen); false when it is not.
    bool setCurrentDevice(const QString& id);
    QString currentDevice() const;
    QComboBox* combo() const { return combo_; }

signals:
    // The user (or setChoices) chose another device.
    void deviceChosen(const QString& id);

private:
    QComboBox* combo_;
};
