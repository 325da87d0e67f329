#pragma once

#include "quantlens/core/float_tensor.h"
#include "quantlens/core/job.h"
#include "quantlens/model/model.h"
#include "quantlens/runtime/activations.h"
#include "quantlens/runtime/kv_cache.h"
#include "quantlens/runtime/linear_operator.h"

#include <array>
#include <cstdint>
#include <functional>
#include <optional>
#include <span>
#include <unordered_map>

namespace quantlens {

// fp32 weights of one block, viewed where they live (mapped file, converted copy, or a quantized
// model's reconstruction); shapes follow the model config.
struct BlockView {
    const float* attnNorm;
    const float* wq;
    const float* wk;
    const float* wv;
    const float* wo;
    const float* ffnNorm;
    const float* gate;
    const float* up;
    const float* down;
    // q, k and v's biases [out] where the architecture has them (Qwen2), else null.
    const float* qBias = nullptr;
    const float* kBias = nullptr;
    const float* vBias = nullptr;
    // The per-head RMSNorm weights [headDim] of q and k where the architecture has them (Qwen3).
    const float* qNorm = nullptr;
    const float* kNorm = nullptr;
    // Layers stored compressed (a quantlens checkpoint), in kLinearLayers order: where set, the
    // layer runs through its operator (the fused kernels) and its pointer above is unused.
    std::array<const LinearOperator*, 7> linear{};
};

using StageObserver = std::function<void(LinearStage, const RowMatrix& input)>;

// What a block computes on the way, kept for the backward pass (gradients.h); all [tokens, …].
// The keys (after RoPE) and values are in the KvCache.
struct BlockActivations {
    RowMatrix attentionInput; // RMSNorm of the block's input: q/k/v_proj's input
    RowMatrix queries;        // after RoPE
    // With q/k norms (Qwen3): q_proj's and k_proj's outputs, before the norms and RoPE.
    RowMatrix projectedQueries, projectedKeys;
    RowMatrix attended;  // o_proj's input
    RowMatrix residual;  // the hidden state after attention
    RowMatrix mlpInput;  // RMSNorm of residual: gate/up_proj's input
    RowMatrix gate;      // gate_proj's output, before SiLU
    RowMatrix up;        // up_proj's output
    RowMatrix mlpOutput; // silu(gate) ⊙ up: down_proj's input
};

inline constexpr std::size_t kConversionCacheBytes = std::size_t{4} << 30;

// The LLaMA forward pass on the CPU (Eigen): RMSNorm, RoPE in the model's layout, causal GQA
// attention, SwiGLU, and what the architectures add to it (biases, q/k norms, a window). Works on a
// whole sequence at once; positions continue from the cache, so the same code scores windows and
// generates token by token.
class Transformer {
public:
    // Cached: F16/BF16 weights are converted to fp32 once, if the fp32 copy fits
    // kConversionCacheBytes. PerUse: converted as each block runs (jobs that supply their own
    // block weights, like quantization, need no copy of the model).
    enum class WeightConversion { Cached, PerUse };
    explicit Transformer(const Model& model,
                         WeightConversion conversion = WeightConversion::Cached);

    const Model& model() const { return model_; }

    // How compressed layers multiply a single token (decoding): exactly (the default, equal to the
    // dense reconstruction up to summation order), or with int8 activations, faster and within
    // the bound of docs/FORMAT.md, "Fused kernels".
    void setDecodeActivations(Activations activations) { decodeActivations_ = activations; }

    // Logits [tokens, vocab] for `tokens` at positions cache.length…; appends to the cache.
    // `job`, when given, is checked before every block.
    RowMatrix forward(std::span<const std::int32_t> tokens, KvCache& cache,
                      const JobContext* job = nullptr) const;

    // The pieces of forward(), for jobs that walk the model block by block.
    RowMatrix embed(std::span<const std::int32_t> tokens) const;
    void runBlock(int block, RowMatrix& hidden, KvCache& cache, int startPosition) const;
    // Runs a block on the given weights. `observer` sees each linear input; with `stopAfter` the
    // block returns right after that stage was observed, leaving `hidden` incomplete. With
    // `activations` a complete run also keeps its intermediates there.
    void runBlock(int block, const BlockView& weights, RowMatrix& hidden, KvCache& cache,
                  int startPosition, const StageObserver& observer = {},
                  std::optional<LinearStage> stopAfter = {},
                  BlockActivations* activations = nullptr) const;
    RowMatrix logits(const RowMatrix& hidden) const;
    // RoPE's θ_i, i < headDim / 2: position p rotates pair i by p·θ_i.
    const Eigen::VectorXf& ropeInverseFrequencies() const { return inverseFrequencies_; }

    // fp32 view of a stored tensor: the conversion cache's copy, or a fresh FloatTensor.
    FloatTensor floatWeights(const TensorView& tensor) const;

    // A block's weights in fp32 (floatWeights of each); view() lives as long as this does.
    struct FloatBlockWeights {
        FloatTensor attnNorm, wq, wk, wv, wo, ffnNorm, gate, up, down;
        FloatTensor qBias, kBias, vBias, qNorm, kNorm; // null data where absent
        BlockView view() const {
            return {attnNorm.data(), wq.data(),    wk.data(),    wv.data(),   wo.data(),
                    ffnNorm.data(),  gate.data(),  up.data(),    down.data(), qBias.data(),
                    kBias.data(),    vBias.data(), qNorm.data(), kNorm.data()};
        }
    };
    FloatBlockWeights blockWeights(int block) const;

private:
    [[noreturn]] void throwNonFinite(int block) const;

    const Model& model_;
    Activations decodeActivations_ = Activations::Exact;
    Eigen::VectorXf inverseFrequencies_; // RoPE, [headDim / 2]
    // F16/BF16 tensors converted once, when the whole model's fp32 copy fits kConversionCacheBytes;
    // larger models convert each block as it runs, so memory stays bounded.
    std::unordered_map<const std::byte*, FloatTensor> converted_;
};

} // namespace quantlens
