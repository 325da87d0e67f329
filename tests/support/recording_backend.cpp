#include "recording_backend.h"

#include "quantlens/core/error.h"

namespace quantlens::test {

void RecordingBackend::record() const {
    ++calls_;
    if (failing_)
        throw DeviceFailure(id_, "out of device memory (a test device that always fails)");
}

std::unique_ptr<GramAccumulator> RecordingBackend::gramAccumulator(Eigen::Index n) const {
    record();
    return cpuBackend()->gramAccumulator(n);
}

bool RecordingBackend::inverseCholeskyFactor(Eigen::MatrixXf& a) const {
    record();
    return cpuBackend()->inverseCholeskyFactor(a);
}

std::unique_ptr<ObsTrailingColumns>
RecordingBackend::obsTrailingColumns(Eigen::MatrixXf& weights,
                                     const Eigen::MatrixXf& inverseCholesky) const {
    record();
    return cpuBackend()->obsTrailingColumns(weights, inverseCholesky);
}

void RecordingBackend::assignNearest(const RowMatrix& values, std::span<const float> tables,
                                     int levels, std::span<std::uint16_t> codes) const {
    record();
    cpuBackend()->assignNearest(values, tables, levels, codes);
}

std::unique_ptr<CalibrationWalk> RecordingBackend::calibrationWalk(const Transformer& transformer,
                                                                   std::vector<RowMatrix> hidden,
                                                                   const JobContext& job) const {
    record();
    return cpuBackend()->calibrationWalk(transformer, std::move(hidden), job);
}

std::unique_ptr<SequenceForward> RecordingBackend::sequenceForward(const Transformer& transformer,
                                                                   const JobContext& job) const {
    record();
    job.notice(id_ + ": " + kForwardNotice);
    return cpuBackend()->sequenceForward(transformer, job);
}

DeviceListing TestDeviceProvider::list() const {
    DeviceListing listing;
    listing.devices.push_back({"test:0", "Test device", 8ull << 30, 6ull << 30});
    if (withFailing_) listing.devices.push_back({"test:1", "Failing test device", 8ull << 30, 0});
    return listing;
}

std::shared_ptr<const Backend> TestDeviceProvider::open(int ordinal) const {
    return device(ordinal);
}

const std::shared_ptr<RecordingBackend>& TestDeviceProvider::device(int ordinal) const {
    if (ordinal == 1 && withFailing_) return failing_;
    if (ordinal != 0) throw Error("test:" + std::to_string(ordinal), "no such test device");
    return working_;
}

} // namespace quantlens::test
