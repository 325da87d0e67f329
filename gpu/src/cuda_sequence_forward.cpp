#include "cuda_sequence_forward.h"

#include "cublas_handle.h"
#include "device_binding.h"
#include "device_block.h"
#include "device_buffer.h"
#include "memory_fit.h"
#include "transformer_kernels.h"

#include <algorithm>
#include <atomic>
#include <cmath>
#include <mutex>
#include <vector>

namespace quantlens::gpu {
namespace {

DeviceBuffer<float> upload(const FloatTensor& tensor, const TensorView& stored) {
    return DeviceBuffer<float>(
        std::span<const float>(tensor.data(), static_cast<std::size_t>(stored.elementCount())));
}

bool tiedHead(const Model& model) {
    return model.lmHead.data == model.embedding.data;
}

// fp32 weights plus the activations of a window of `tokens`.
std::size_t deviceBytes(const Model& model, int tokens) {
    const ModelConfig& c = model.config;
    std::int64_t elements = model.embedding.elementCount() + model.finalNorm.elementCount();
    if (!tiedHead(model)) elements += model.lmHead.elementCount();
    for (const BlockWeights& b : model.blocks)
        for (const BlockTensorSpec& spec : kBlockTensors)
            if (hasBlockTensor(spec, c)) elements += (b.*spec.weights).elementCount();
    elements += std::int64_t{tokens} *
                (2 * c.hiddenSize + 2 * c.queryDim() + 2 * c.kvDim() + 2 * c.intermediateSize +
                 c.vocabSize + c.headDim + 1); // + ids, RoPE tables
    return static_cast<std::size_t>(elements) * sizeof(float);
}

class CudaSequenceForward final : public SequenceForward {
public:
    // Windows up to `plannedTokens` run on the device (its memory was checked for that many).
    CudaSequenceForward(int device, const Transformer& transformer, int plannedTokens)
        : device_(device), transformer_(transformer), config_(transformer.model().config),
          deviceTokenLimit_(std::min(plannedTokens, attentionTokenLimit(device, config_.headDim))) {
        const Model& model = transformer.model();
        embedding_ = upload(FloatTensor(model.embedding), model.embedding);
        finalNorm_ = upload(transformer.floatWeights(model.finalNorm), model.finalNorm);
        if (!tiedHead(model))
            lmHead_ = upload(transformer.floatWeights(model.lmHead), model.lmHead);
        for (int b = 0; b < config_.layerCount; ++b)
            blocks_.emplace_back(transformer.blockWeights(b).view(), config_);
    }

    RowMatrix logits(std::span<const std::int32_t> tokens, const JobContext& job) const override {
        const std::string source = transformer_.model().path.string();
        const int n = static_cast<int>(tokens.size());
        // Longer windows than planned, and the empty one (whose error the CPU gives), run there.
        if (n == 0) return cpuLogits(tokens, job);
        if (n > deviceTokenLimit_) {
            if (!longSequenceNoted_.exchange(true))
                job.notice("cuda:" + std::to_string(int(device_)) + ": sequences of " +
                           std::to_string(n) + " tokens are longer than the device's " +
                           std::to_string(deviceTokenLimit_) + ", so they run on the CPU");
            return cpuLogits(tokens, job);
        }
        if (n > config_.maxPositions)
            throw Error(source, std::to_string(n) + " tokens exceed the model's " +
                                    std::to_string(config_.maxPositions) + " positions");
        for (const std::int32_t id : tokens)
            if (id < 0 || id >= config_.vocabSize)
                throw Error(source, "token id " + std::to_string(id) +
                                        " is outside the vocabulary of " +
                                        std::to_string(config_.vocabSize));

        const std::lock_guard lock(mutex_);
        useDevice(device_);
        rope_.ensure(n, transformer_.ropeInverseFrequencies(), config_.headDim);
        scratch_.reserve(n, config_);
        ids_.resize(tokens.size());
        ids_.upload(tokens);
        const int dim = config_.hiddenSize;
        hidden_.resize(static_cast<std::size_t>(n) * dim);
        logits_.resize(static_cast<std::size_t>(n) * config_.vocabSize);
        embedRows(embedding_.data(), ids_.data(), n, dim, hidden_.data(), nullptr);
        for (const DeviceBlockWeights& w : blocks_) {
            job.checkpoint();
            runDeviceBlock(handle_, config_, w, scratch_, rope_, hidden_.data(), n);
        }
        rmsNorm(hidden_.data(), finalNorm_.data(), n, dim, config_.rmsNormEps,
                scratch_.normed.data(), nullptr);
        linearOnDevice(handle_, scratch_.normed.data(),
                       lmHead_.size() ? lmHead_.data() : embedding_.data(), n, config_.vocabSize,
                       dim, logits_.data(), false);
        RowMatrix result(n, config_.vocabSize);
        logits_.download({result.data(), static_cast<std::size_t>(result.size())});
        if (!result.allFinite() && cpuLogits(tokens, job).allFinite())
            // The CPU pass names the tensor at fault (it threw); here it found none.
            throw Error("cuda", "the device's forward pass gave non-finite logits where the "
                                "CPU's are finite");
        return result;
    }

private:
    RowMatrix cpuLogits(std::span<const std::int32_t> tokens, const JobContext& job) const {
        return cpuBackend()->sequenceForward(transformer_, job)->logits(tokens, job);
    }

    DeviceBinding device_; // first: the members below are made on the device
    const Transformer& transformer_;
    ModelConfig config_;
    int deviceTokenLimit_;
    mutable std::atomic<bool> longSequenceNoted_{false}; // said once per forward pass
    DeviceBuffer<float> embedding_, finalNorm_, lmHead_; // lmHead_ empty when tied
    std::vector<DeviceBlockWeights> blocks_;
    CublasHandle handle_;
    mutable std::mutex mutex_;
    // The last call's activations, kept to avoid allocating per call.
    mutable DeviceBuffer<std::int32_t> ids_;
    mutable DeviceBuffer<float> hidden_, logits_;
    mutable DeviceBlockScratch scratch_;
    mutable DeviceRopeTables rope_;
};

} // namespace

std::unique_ptr<SequenceForward> makeCudaSequenceForward(int device, const Transformer& transformer,
                                                         std::string& unfit) {
    useDevice(device);
    std::size_t freeBytes = 0, totalBytes = 0;
    checkCuda(cudaMemGetInfo(&freeBytes, &totalBytes), "cudaMemGetInfo");
    const Model& model = transformer.model();
    // Windows of up to 4096 tokens, with a tenth of the free memory spare for cuBLAS.
    const int plannedTokens = std::min(model.config.maxPositions, 4096);
    const std::size_t needBytes = deviceBytes(model, plannedTokens);
    if (!fitsFreeMemory(needBytes, freeBytes)) {
        unfit = memoryShortfall(needBytes, freeBytes);
        return nullptr;
    }
    return std::make_unique<CudaSequenceForward>(device, transformer, plannedTokens);
}

} // namespace quantlens::gpu
