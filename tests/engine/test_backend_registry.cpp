#include "error_text.h"
#include "recording_backend.h"
#include "synthetic_fixtures.h"
#include "test_data.h"

#include "quantlens/core/error.h"
#include "quantlens/formats/model_loading.h"
#include "quantlens/model/model.h"
#include "quantlens/quantization/layer_calibration.h"
#include "quantlens/quantization/layer_quantizer.h"
#include "quantlens/runtime/backend_registry.h"
#include "quantlens/runtime/perplexity.h"
#include "quantlens/runtime/transformer.h"

#include <QtTest>

#include <memory>
#include <vector>

using namespace quantlens;

namespace {

QString openError(const BackendRegistry& registry, const std::string& spec) {
    return test::errorOf([&] { registry.open(spec); });
}

} // namespace

class TestBackendRegistry : public QObject {
    Q_OBJECT

private slots:
    void opensWhatEachSpecNames();
    void namesWhyADeviceCannotBeHad();
    void jobsCarryTheirBackend();
    void engineWorkRunsOnTheJobsBackend();
    void aFailingDeviceEndsTheJobWithItsReason();
};

void TestBackendRegistry::opensWhatEachSpecNames() {
    QCOMPARE(BackendRegistry().open("auto")->id(), std::string("cpu"));

    BackendRegistry registry;
    const auto provider = std::make_shared<test::TestDeviceProvider>(true);
    registry.add(provider);
    registry.addMissing("cuda", "this build has no CUDA backend");
    QCOMPARE(registry.open("cpu")->id(), std::string("cpu"));
    QCOMPARE(registry.open("auto").get(), provider->device(0).get());
    QCOMPARE(registry.open("test").get(), provider->device(0).get());
    QCOMPARE(registry.open("test:1").get(), provider->device(1).get());

    const std::vector<ComputeDevice> devices = registry.devices();
    QCOMPARE(devices.size(), std::size_t(3));
    QCOMPARE(devices[0].id, std::string("cpu"));
    QCOMPARE(devices[1].id, std::string("test:0"));
    QCOMPARE(devices[1].freeMemoryBytes, 6ull << 30);
    QCOMPARE(devices[2].id, std::string("test:1"));
    const auto unavailable = registry.unavailable();
    QCOMPARE(unavailable.size(), std::size_t(1));
    QCOMPARE(unavailable[0].kind, std::string("cuda"));
}

void TestBackendRegistry::namesWhyADeviceCannotBeHad() {
    BackendRegistry registry;
    registry.add(std::make_shared<test::TestDeviceProvider>());
    registry.addMissing("cuda", "this build has no CUDA backend");
    QCOMPARE(openError(registry, "cuda"), QString("device cuda: this build has no CUDA backend"));
    QCOMPARE(openError(registry, "cuda:1"),
             QString("device cuda:1: this build has no CUDA backend"));
    QCOMPARE(openError(registry, "test:2"),
             QString("device test:2: this machine has one test device, test:0"));
    QCOMPARE(openError(registry, "test:x"),
             QString("device test:x: expected test:N with N a device number"));
    QCOMPARE(openError(registry, "test:"),
             QString("device test:: expected test:N with N a device number"));
    QCOMPARE(openError(registry, "tpu"),
             QString("device tpu: unknown device; choose auto, cpu, test, test:N, cuda"));
}

void TestBackendRegistry::jobsCarryTheirBackend() {
    const auto device = std::make_shared<test::RecordingBackend>("test:0", false);
    QCOMPARE(JobContext().backend().id(), std::string("cpu"));
    const JobContext job(device);
    QCOMPARE(&job.backend(), device.get());
    const JobContext part(job, 0.2, 0.6);
    QCOMPARE(&part.backend(), device.get());
    const JobContext partOfPart(part, 0.0, 0.5);
    QCOMPARE(&partOfPart.backend(), device.get());
    const JobContext reporting([](double, const std::string&) {}, device);
    QCOMPARE(&reporting.backend(), device.get());
}

// Calibration, every quantizer's device step and perplexity reach the job's backend, and compute
// what the CPU does; a job without one runs on the CPU.
void TestBackendRegistry::engineWorkRunsOnTheJobsBackend() {
    QUANTLENS_REQUIRE_DATA("stories260K-hf");
    const auto model = loadModel(test::dataPath("stories260K-hf"));
    const auto stream = test::randomTokens(400, model->config.vocabSize, 3);
    const auto device = std::make_shared<test::RecordingBackend>("test:0", false);
    const JobContext onDevice(device), onCpu;

    const BlockCalibration calibration = calibrateBlock(*model, stream, {4, 64}, 1, onDevice);
    const int afterCalibration = device->calls();
    QVERIFY(afterCalibration > 0);
    const BlockCalibration calibrationOnCpu = calibrateBlock(*model, stream, {4, 64}, 1, onCpu);
    QCOMPARE(device->calls(), afterCalibration);
    QVERIFY(calibration.hessianOf("q_proj") == calibrationOnCpu.hessianOf("q_proj"));

    const RowMatrix weights = FloatTensor(*model->blocks[1].linearLayers()[0]).matrix();
    const Eigen::MatrixXf& hessian = calibration.hessianOf("q_proj");
    const RowMatrix fisher = RowMatrix::Ones(weights.rows(), weights.cols());
    for (const QuantConfig& config :
         {QuantConfig(GptqConfig{}), QuantConfig(SpqrConfig{}), QuantConfig(SqueezeConfig{})}) {
        const int before = device->calls();
        const QuantizedLayer there =
            quantizeLayer(weights, {&hessian, &fisher}, config, onDevice, "q_proj");
        QVERIFY2(device->calls() > before, methodName(config).c_str());
        const QuantizedLayer here = quantizeLayer(weights, {&hessian, &fisher}, config, onCpu);
        for (const auto& [name, tensor] : here.tensors)
            QVERIFY2(there.tensors.at(name).bytes == tensor.bytes, name.c_str());
    }

    const Transformer transformer(*model);
    const int beforeScoring = device->calls();
    const PerplexityConfig scoring{64, PerplexityProtocol::Gptq};
    const double there = evaluatePerplexity(transformer, stream, scoring, onDevice).perplexity;
    QVERIFY(device->calls() > beforeScoring);
    QCOMPARE(there, evaluatePerplexity(transformer, stream, scoring, onCpu).perplexity);
}

void TestBackendRegistry::aFailingDeviceEndsTheJobWithItsReason() {
    QUANTLENS_REQUIRE_DATA("stories260K-hf");
    const auto model = loadModel(test::dataPath("stories260K-hf"));
    const auto stream = test::randomTokens(400, model->config.vocabSize, 3);
    const JobContext failing(std::make_shared<test::RecordingBackend>("test:1", true));
    try {
        calibrateBlock(*model, stream, {4, 64}, 0, failing);
        QFAIL("no DeviceFailure");
    } catch (const DeviceFailure& failure) {
        QCOMPARE(failure.source(), std::string("test:1"));
        QVERIFY(std::string(failure.what()).find("out of device memory") != std::string::npos);
    }
}

QTEST_APPLESS_MAIN(TestBackendRegistry)
#include "test_backend_registry.moc"
