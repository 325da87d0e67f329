#include "cuda_calibration_walk.h"

#include "cublas_handle.h"
#include "device_binding.h"
#include "device_block.h"
#include "device_gram.h"
#include "memory_fit.h"
#include "transformer_kernels.h"

#include <algorithm>

namespace quantlens::gpu {
namespace {

class CudaCalibrationWalk final : public CalibrationWalk {
public:
    CudaCalibrationWalk(int device, const Transformer& transformer,
                        const std::vector<RowMatrix>& hidden)
        : device_(device), config_(transformer.model().config),
          sequences_(static_cast<int>(hidden.size())), length_(static_cast<int>(hidden[0].rows())) {
        const std::size_t stride = sequenceElements();
        hidden_.resize(stride * hidden.size());
        for (std::size_t s = 0; s < hidden.size(); ++s)
            hidden_.upload({hidden[s].data(), stride}, s * stride);
        work_.resize(stride);
        scratch_.reserve(length_, config_);
        rope_.ensure(length_, transformer.ropeInverseFrequencies(), config_.headDim);
    }

    Eigen::MatrixXf stageGram(int, const BlockView& weights, LinearStage stage,
                              const JobContext& job) override {
        useDevice(device_);
        const DeviceBlockWeights w(weights, config_);
        DeviceGram gram(stage == LinearStage::MlpOutput         ? config_.intermediateSize
                        : stage == LinearStage::AttentionOutput ? config_.queryDim()
                                                                : config_.hiddenSize);
        const DeviceStageObserver accumulate = [&](LinearStage seen, const float* x, int) {
            if (seen == stage) gram.add(handle_, x, length_);
        };
        for (int s = 0; s < sequences_; ++s) {
            job.checkpoint();
            // The pass stops inside the block, so it runs on a copy of the sequence's state.
            checkCuda(cudaMemcpy(work_.data(), sequence(s), sequenceElements() * sizeof(float),
                                 cudaMemcpyDeviceToDevice),
                      "cudaMemcpy on device");
            runDeviceBlock(handle_, config_, w, scratch_, rope_, work_.data(), length_, accumulate,
                           stage);
        }
        return gram.result();
    }

    void advance(int, const BlockView& weights, const JobContext& job) override {
        useDevice(device_);
        const DeviceBlockWeights w(weights, config_);
        for (int s = 0; s < sequences_; ++s) {
            job.checkpoint();
            runDeviceBlock(handle_, config_, w, scratch_, rope_, sequence(s), length_);
        }
    }

    std::vector<RowMatrix> hiddenStates() const override {
        useDevice(device_);
        std::vector<RowMatrix> states;
        for (int s = 0; s < sequences_; ++s) {
            RowMatrix state(length_, config_.hiddenSize);
            hidden_.download({state.data(), sequenceElements()}, s * sequenceElements());
            states.push_back(std::move(state));
        }
        return states;
    }

private:
    std::size_t sequenceElements() const {
        return static_cast<std::size_t>(length_) * config_.hiddenSize;
    }
    float* sequence(int s) {
        return hidden_.data() + static_cast<std::size_t>(s) * sequenceElements();
    }

    DeviceBinding device_; // first: the members below are made on the device
    ModelConfig config_;
    int sequences_, length_;
    CublasHandle handle_;
    DeviceBuffer<float> hidden_, work_;
    DeviceBlockScratch scratch_;
    DeviceRopeTables rope_;
};

} // namespace

std::unique_ptr<CalibrationWalk> makeCudaCalibrationWalk(int device, const Transformer& transformer,
                                                         const std::vector<RowMatrix>& hidden,
                                                         std::string& unfit) {
    if (hidden.empty()) return nullptr;
    const ModelConfig& c = transformer.model().config;
    const std::int64_t length = hidden[0].rows();
    useDevice(device);
    if (const int limit = attentionTokenLimit(device, c.headDim); length > limit) {
        unfit = "its sequences of " + std::to_string(length) +
                " tokens are longer than the attention kernel's " + std::to_string(limit);
        return nullptr;
    }
    std::size_t freeBytes = 0, totalBytes = 0;
    checkCuda(cudaMemGetInfo(&freeBytes, &totalBytes), "cudaMemGetInfo");
    const std::int64_t dim = c.hiddenSize, qDim = c.queryDim(), ffn = c.intermediateSize,
                       kvDim = c.kvDim(), widest = std::max({ffn, dim, qDim});
    const std::int64_t elements =
        (static_cast<std::int64_t>(hidden.size()) + 1) * length * dim // states and the work copy
        + 2 * qDim * dim + 2 * kvDim * dim + 3 * ffn * dim + 2 * dim  // one block's weights
        + qDim + 2 * kvDim + 2 * c.headDim                            // its biases and norms
        + length * (dim + 2 * qDim + 2 * kvDim + 2 * ffn)             // scratch
        + widest * widest;                                            // the Gram
    const std::size_t needBytes = static_cast<std::size_t>(elements) * sizeof(float);
    if (!fitsFreeMemory(needBytes, freeBytes)) {
        unfit = memoryShortfall(needBytes, freeBytes);
        return nullptr;
    }
    return std::make_unique<CudaCalibrationWalk>(device, transformer, hidden);
}

} // namespace quantlens::gpu
