#include "cuda_sequence_forward.h"

#include "cublas_handle.h"
#include "device_buffer.h"
#include "transformer_kernels.h"

#include <cmath>
#include <mutex>
#include <vector>

namespace quantlens::gpu {
namespace {

DeviceBuffer<float> upload(const FloatTensor& tensor, std::size_t count) {
    return DeviceBuffer<float>(std::span<const float>(tensor.data(), count));
}

std::size_t elements(const TensorView& tensor) {
    return static_cast<std::size_t>(tensor.elementCount());
}

class CudaSequenceForward final : public SequenceForward {
public:
    CudaSequenceForward(int device, const Transformer& transformer)
        : device_(device), transformer_(transformer), config_(transformer.model().config) {
        checkCuda(cudaSetDevice(device_), "cudaSetDevice");
        const Model& model = transformer.model();
        try {
            embedding_ = upload(FloatTensor(model.embedding), elements(model.embedding));
            finalNorm_ =
                upload(transformer.floatWeights(model.finalNorm), elements(model.finalNorm));
            lmHead_ = upload(transformer.floatWeights(model.lmHead), elements(model.lmHead));
            for (int b = 0; b < config_.layerCount; ++b) {
                const Transformer::FloatBlockWeights w = transformer.blockWeights(b);
                const BlockWeights& stored = model.blocks[static_cast<std::size_t>(b)];
                blocks_.push_back(
                    {upload(w.attnNorm, elements(stored.attnNorm)),
                     upload(w.wq, elements(stored.wq)), upload(w.wk, elements(stored.wk)),
                     upload(w.wv, elements(stored.wv)), upload(w.wo, elements(stored.wo)),
                     upload(w.ffnNorm, elements(stored.ffnNorm)),
                     upload(w.gate, elements(stored.gate)), upload(w.up, elements(stored.up)),
                     upload(w.down, elements(stored.down))});
            }
        } catch (const Error& e) {
            throw Error(model.path.string(), "the model's fp32 weights do not fit on " +
                                                 std::string("the CUDA device (") + e.message() +
                                                 "); run with --device cpu");
        }
        // RoPE angles as the CPU computes them (transformer_ops.cpp), for every position.
        const Eigen::VectorXf& frequencies = transformer.ropeInverseFrequencies();
        const int half = config_.headDim / 2;
        std::vector<float> cosines(static_cast<std::size_t>(config_.maxPositions) * half),
            sines(cosines.size());
        for (int p = 0; p < config_.maxPositions; ++p)
            for (int i = 0; i < half; ++i) {
                const float angle = static_cast<float>(p) * frequencies[i];
                cosines[static_cast<std::size_t>(p) * half + i] = std::cos(angle);
                sines[static_cast<std::size_t>(p) * half + i] = std::sin(angle);
            }
        ropeCosines_ = DeviceBuffer<float>(std::span<const float>(cosines));
        ropeSines_ = DeviceBuffer<float>(std::span<const float>(sines));
    }

    RowMatrix logits(std::span<const std::int32_t> tokens, const JobContext& job) const override {
        const std::string source = transformer_.model().path.string();
        const int n = static_cast<int>(tokens.size());
        if (n > config_.maxPositions)
            throw Error(source, std::to_string(n) + " tokens exceed the model's " +
                                    std::to_string(config_.maxPositions) + " positions");
        for (const std::int32_t id : tokens)
            if (id < 0 || id >= config_.vocabSize)
                throw Error(source, "token id " + std::to_string(id) +
                                        " is outside the vocabulary of " +
                                        std::to_string(config_.vocabSize));
        const std::lock_guard lock(mutex_);
        checkCuda(cudaSetDevice(device_), "cudaSetDevice");
        const int dim = config_.hiddenSize, kvDim = config_.kvDim(), ffn = config_.intermediateSize;
        const int headDim = config_.headDim;
        Scratch& s = scratch_;
        s.ids.resize(tokens.size());
        s.ids.upload(tokens);
        resize(s.hidden, n, dim);
        resize(s.normed, n, dim);
        resize(s.q, n, dim);
        resize(s.k, n, kvDim);
        resize(s.v, n, kvDim);
        resize(s.attended, n, dim);
        resize(s.gate, n, ffn);
        resize(s.up, n, ffn);
        resize(s.logits, n, config_.vocabSize);

        embedRows(embedding_.data(), s.ids.data(), n, dim, s.hidden.data(), nullptr);
        for (const DeviceBlock& w : blocks_) {
            job.checkpoint();
            rmsNorm(s.hidden.data(), w.attnNorm.data(), n, dim, config_.rmsNormEps, s.normed.data(),
                    nullptr);
            linear(s.normed, w.wq, n, dim, dim, s.q, false);
            linear(s.normed, w.wk, n, kvDim, dim, s.k, false);
            linear(s.normed, w.wv, n, kvDim, dim, s.v, false);
            const bool interleaved = config_.ropeLayout == RopeLayout::Interleaved;
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
        linear(s.normed, lmHead_, n, config_.vocabSize, dim, s.logits, false);
        RowMatrix result(n, config_.vocabSize);
        s.logits.download({result.data(), static_cast<std::size_t>(result.size())});
        if (!result.allFinite()) {
            // The CPU pass names the tensor at fault; if it has none, the device is.
            const RowMatrix cpu = cpuBackend()->sequenceForward(transformer_)->logits(tokens, job);
            if (cpu.allFinite())
                throw Error("cuda", "the device's forward pass gave non-finite logits where the "
                                    "CPU's are finite");
        }
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

    static void resize(DeviceBuffer<float>& buffer, int rows, int cols) {
        buffer.resize(static_cast<std::size_t>(rows) * cols);
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

    int device_;
    const Transformer& transformer_;
    ModelConfig config_;
    DeviceBuffer<float> embedding_, finalNorm_, lmHead_, ropeCosines_, ropeSines_;
    std::vector<DeviceBlock> blocks_;
    CublasHandle handle_;
    mutable std::mutex mutex_;
    mutable Scratch scratch_;
};

} // namespace

std::unique_ptr<SequenceForward> makeCudaSequenceForward(int device,
                                                         const Transformer& transformer) {
    return std::make_unique<CudaSequenceForward>(device, transformer);
}

} // namespace quantlens::gpu
