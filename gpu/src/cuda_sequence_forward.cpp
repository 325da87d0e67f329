#include "cuda_sequence_forward.h"

#include "cublas_handle.h"
#include "device_binding.h"
#include "device_buffer.h"
#include "transformer_kernels.h"

#include <algorithm>
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
        for (const TensorView* t :
             {&b.attnNorm, &b.wq, &b.wk, &b.wv, &b.wo, &b.ffnNorm, &b.gate, &b.up, &b.down})
            elements += t->elementCount();
    elements += std::int64_t{tokens} *
                (4 * c.hiddenSize + 2 * c.kvDim() + 2 * c.intermediateSize + c.vocabSize);
    return static_cast<std::size_t>(elements) * sizeof(float);
}

class CudaSequenceForward final : public SequenceForward {
public:
    CudaSequenceForward(int device, const Transformer& transformer)
        : device_(device), transformer_(transformer), config_(transformer.model().config),
          attentionTokenLimit_(attentionTokenLimit(device, config_.headDim)) {
        const Model& model = transformer.model();
        embedding_ = upload(FloatTensor(model.embedding), model.embedding);
        finalNorm_ = upload(transformer.floatWeights(model.finalNorm), model.finalNorm);
        if (!tiedHead(model))
            lmHead_ = upload(transformer.floatWeights(model.lmHead), model.lmHead);
        for (int b = 0; b < config_.layerCount; ++b) {
            const Transformer::FloatBlockWeights w = transformer.blockWeights(b);
            const BlockWeights& s = model.blocks[static_cast<std::size_t>(b)];
            blocks_.push_back({upload(w.attnNorm, s.attnNorm), upload(w.wq, s.wq),
                               upload(w.wk, s.wk), upload(w.wv, s.wv), upload(w.wo, s.wo),
                               upload(w.ffnNorm, s.ffnNorm), upload(w.gate, s.gate),
                               upload(w.up, s.up), upload(w.down, s.down)});
        }
    }

    RowMatrix logits(std::span<const std::int32_t> tokens, const JobContext& job) const override {
        const std::string source = transformer_.model().path.string();
        const int n = static_cast<int>(tokens.size());
        if (n == 0) return RowMatrix(0, config_.vocabSize);
        if (n > config_.maxPositions)
            throw Error(source, std::to_string(n) + " tokens exceed the model's " +
                                    std::to_string(config_.maxPositions) + " positions");
        for (const std::int32_t id : tokens)
            if (id < 0 || id >= config_.vocabSize)
                throw Error(source, "token id " + std::to_string(id) +
                                        " is outside the vocabulary of " +
                                        std::to_string(config_.vocabSize));
        if (n > attentionTokenLimit_) return cpuLogits(tokens, job);

        const std::lock_guard lock(mutex_);
        useDevice(device_);
        ensureRopeTables(n);
        const int dim = config_.hiddenSize, kvDim = config_.kvDim(), ffn = config_.intermediateSize;
        const int headDim = config_.headDim;
        const bool interleaved = config_.ropeLayout == RopeLayout::Interleaved;
        Scratch& s = scratch_;
        s.ids.resize(tokens.size());
        s.ids.upload(tokens);
        for (auto [buffer, width] : {std::pair{&s.hidden, dim},
                                     {&s.normed, dim},
                                     {&s.q, dim},
                                     {&s.k, kvDim},
                                     {&s.v, kvDim},
                                     {&s.attended, dim},
                                     {&s.gate, ffn},
                                     {&s.up, ffn},
                                     {&s.logits, config_.vocabSize}})
            buffer->resize(static_cast<std::size_t>(n) * width);

        embedRows(embedding_.data(), s.ids.data(), n, dim, s.hidden.data(), nullptr);
        for (const DeviceBlock& w : blocks_) {
            job.checkpoint();
            rmsNorm(s.hidden.data(), w.attnNorm.data(), n, dim, config_.rmsNormEps, s.normed.data(),
                    nullptr);
            linear(s.normed, w.wq, n, dim, dim, s.q, false);
            linear(s.normed, w.wk, n, kvDim, dim, s.k, false);
            linear(s.normed, w.wv, n, kvDim, dim, s.v, false);
            applyRope(s.q.data(), n, config_.headCount, headDim, interleaved, ropeCosines_.data(),
                      ropeSines_.data(), nullptr);
            applyRope(s.k.data(), n, config_.kvHeadCount, headDim, interleaved, ropeCosines_.data(),
                      ropeSines_.data(), nullptr);
            causalAttention(
                s.q.data(), s.k.data(), s.v.data(), n, config_.headCount, config_.kvHeadCount,
                headDim, 1.0f / std::sqrt(static_cast<float>(headDim)), s.attended.data(), nullptr);
            linear(s.attended, w.wo, n, dim, dim, s.hidden, true);
            rmsNorm(s.hidden.data(), w.ffnNorm.data(), n, dim, config_.rmsNormEps, s.normed.data(),
                    nullptr);
            linear(s.normed, w.gate, n, ffn, dim, s.gate, false);
            linear(s.normed, w.up, n, ffn, dim, s.up, false);
            swiGlu(s.gate.data(), s.up.data(), static_cast<std::int64_t>(n) * ffn, nullptr);
            linear(s.gate, w.down, n, dim, ffn, s.hidden, true);
        }
        rmsNorm(s.hidden.data(), finalNorm_.data(), n, dim, config_.rmsNormEps, s.normed.data(),
                nullptr);
        linear(s.normed, lmHead_.size() ? lmHead_ : embedding_, n, config_.vocabSize, dim, s.logits,
               false);
        RowMatrix result(n, config_.vocabSize);
        s.logits.download({result.data(), static_cast<std::size_t>(result.size())});
        if (!result.allFinite() && cpuLogits(tokens, job).allFinite())
            // The CPU pass names the tensor at fault (it threw); here it found none.
            throw Error("cuda", "the device's forward pass gave non-finite logits where the "
                                "CPU's are finite");
        return result;
    }

private:
    struct DeviceBlock {
        DeviceBuffer<float> attnNorm, wq, wk, wv, wo, ffnNorm, gate, up, down;
    };
    // Activations of the last call, kept to avoid allocating per call.
    struct Scratch {
        DeviceBuffer<std::int32_t> ids;
        DeviceBuffer<float> hidden, normed, q, k, v, attended, gate, up, logits;
    };

    RowMatrix cpuLogits(std::span<const std::int32_t> tokens, const JobContext& job) const {
        return cpuBackend()->sequenceForward(transformer_)->logits(tokens, job);
    }

    // RoPE angles for positions [0, n) as the CPU computes them (transformer_ops.cpp), grown to
    // the longest sequence seen.
    void ensureRopeTables(int n) const {
        if (n <= ropePositions_) return;
        const Eigen::VectorXf& frequencies = transformer_.ropeInverseFrequencies();
        const int half = config_.headDim / 2;
        std::vector<float> cosines(static_cast<std::size_t>(n) * half), sines(cosines.size());
        for (int p = 0; p < n; ++p)
            for (int i = 0; i < half; ++i) {
                const float angle = static_cast<float>(p) * frequencies[i];
                cosines[static_cast<std::size_t>(p) * half + i] = std::cos(angle);
                sines[static_cast<std::size_t>(p) * half + i] = std::sin(angle);
            }
        ropeCosines_ = DeviceBuffer<float>(std::span<const float>(cosines));
        ropeSines_ = DeviceBuffer<float>(std::span<const float>(sines));
        ropePositions_ = n;
    }

    // y [n, out] = x [n, in] · Wᵀ (W row-major [out, in]), or y += with `accumulate`. Row-major
    // matrices are their column-major transposes: yᵀ = W·xᵀ.
    void linear(const DeviceBuffer<float>& x, const DeviceBuffer<float>& w, int n, int out, int in,
                DeviceBuffer<float>& y, bool accumulate) const {
        const float one = 1.0f, beta = accumulate ? 1.0f : 0.0f;
        checkCublas(cublasSgemm(handle_, CUBLAS_OP_T, CUBLAS_OP_N, out, n, in, &one, w.data(), in,
                                x.data(), in, &beta, y.data(), out),
                    "cublasSgemm");
    }

    DeviceBinding device_; // first: the members below are made on the device
    const Transformer& transformer_;
    ModelConfig config_;
    int attentionTokenLimit_;
    DeviceBuffer<float> embedding_, finalNorm_, lmHead_; // lmHead_ empty when tied
    std::vector<DeviceBlock> blocks_;
    CublasHandle handle_;
    mutable std::mutex mutex_;
    mutable Scratch scratch_;
    mutable DeviceBuffer<float> ropeCosines_, ropeSines_;
    mutable int ropePositions_ = 0;
};

} // namespace

std::unique_ptr<SequenceForward> makeCudaSequenceForward(int device,
                                                         const Transformer& transformer) {
    useDevice(device);
    std::size_t freeBytes = 0, totalBytes = 0;
    checkCuda(cudaMemGetInfo(&freeBytes, &totalBytes), "cudaMemGetInfo");
    const Model& model = transformer.model();
    // A window of up to 4096 tokens, with a tenth of the free memory spare for cuBLAS.
    if (deviceBytes(model, std::min(model.config.maxPositions, 4096)) > freeBytes / 10 * 9)
        return nullptr;
    return std::make_unique<CudaSequenceForward>(device, transformer);
}

} // namespace quantlens::gpu
