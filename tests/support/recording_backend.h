#pragma once

#include "quantlens/runtime/backend_registry.h"

#include <atomic>
#include <memory>
#include <string>

namespace quantlens::test {

// A device for tests of backend selection: computes as the CPU does and counts what jobs asked of
// it, or, when `failing`, throws DeviceFailure on every call, as a GPU out of memory would.
class RecordingBackend final : public Backend {
public:
    RecordingBackend(std::string id, bool failing) : id_(std::move(id)), failing_(failing) {}

    // Calls so far, of every kind.
    int calls() const { return calls_.load(); }

    std::string id() const override { return id_; }
    std::string name() const override { return id_ + " test device"; }
    std::unique_ptr<GramAccumulator> gramAccumulator(Eigen::Index n) const override;
    bool inverseCholeskyFactor(Eigen::MatrixXf& a) const override;
    std::unique_ptr<ObsTrailingColumns>
    obsTrailingColumns(Eigen::MatrixXf& weights,
                       const Eigen::MatrixXf& inverseCholesky) const override;
    void assignNearest(const RowMatrix& values, std::span<const float> tables, int levels,
                       std::span<std::uint16_t> codes) const override;
    std::unique_ptr<CalibrationWalk> calibrationWalk(const Transformer& transformer,
                                                     std::vector<RowMatrix> hidden,
                                                     const JobContext& job) const override;
    // The CPU's, with a notice that says so (kForwardNotice), as a device that cannot hold a
    // model does.
    std::unique_ptr<SequenceForward> sequenceForward(const Transformer& transformer,
                                                     const JobContext& job) const override;
    static constexpr const char* kForwardNotice =
        "the forward pass runs on the CPU (a test device)";

private:
    void record() const;

    std::string id_;
    bool failing_;
    mutable std::atomic<int> calls_{0};
};

// The kind "test" with devices test:0 (RecordingBackend, 8 GiB, 6 free) and, when asked for,
// test:1, which fails.
class TestDeviceProvider final : public BackendProvider {
public:
    explicit TestDeviceProvider(bool withFailingDevice = false) : withFailing_(withFailingDevice) {}
    std::string kind() const override { return "test"; }
    DeviceListing list() const override;
    std::shared_ptr<const Backend> open(int ordinal) const override;
    // The backends open() handed out, by ordinal (the same one each time).
    const std::shared_ptr<RecordingBackend>& device(int ordinal) const;

private:
    bool withFailing_;
    std::shared_ptr<RecordingBackend> working_ =
        std::make_shared<RecordingBackend>("test:0", false);
    std::shared_ptr<RecordingBackend> failing_ = std::make_shared<RecordingBackend>("test:1", true);
};

} // namespace quantlens::test
