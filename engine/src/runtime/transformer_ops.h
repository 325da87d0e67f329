#pragma once

// The LLaMA block's pieces, shared by the forward pass (transformer.cpp) and the backward pass
// (gradients.cpp), with the backward of each piece next to it.

#include "quantlens/core/float_tensor.h"
#include "quantlens/core/parallel.h"
#include "quantlens/model/model_config.h"

#include <Eigen/Core>

#include <algorithm>

namespace quantlens::ops {

// out = x·Wᵀ, or out += x·Wᵀ with `accumulate`, for a dense W [rows, cols] row-major at `w`;
// `out` is [x.rows(), rows]. Eigen multiplies many tokens on its own threads but runs a product
// with one token (decoding) on one thread, at a fraction of the memory's speed: up to
// kSplitTokens tokens, W's rows are split over the engine's threads instead.
inline constexpr Eigen::Index kSplitTokens = 8;
template <class Out>
void denseProduct(const RowMatrix& x, const float* w, Eigen::Index rows, Eigen::Index cols,
                  Out&& out, bool accumulate) {
    const ConstRowMatrixMap weights(w, rows, cols);
    const auto multiply = [&](auto&& target, const auto& part) {
        if (accumulate)
            target.noalias() += x * part.transpose();
        else
            target.noalias() = x * part.transpose();
    };
    if (x.rows() > kSplitTokens || threadCount() == 1) return multiply(out, weights);
    constexpr Eigen::Index kRows = 256; // W's rows per task
    parallelFor((rows + kRows - 1) / kRows, [&](std::int64_t task) {
        const Eigen::Index first = task * kRows, count = std::min(kRows, rows - first);
        multiply(out.middleCols(first, count), weights.middleRows(first, count));
    });
}

inline RowMatrix denseProduct(const RowMatrix& x, const float* w, Eigen::Index rows,
                              Eigen::Index cols) {
    RowMatrix out(x.rows(), rows);
    denseProduct(x, w, rows, cols, out, false);
    return out;
}

// RMSNorm, per row: x / sqrt(mean(x²) + eps) ⊙ weight.
RowMatrix rmsNorm(const RowMatrix& x, const float* weight, float eps);
// ∂L/∂x of rmsNorm(x) given ∂L/∂y: with r = 1/sqrt(mean(x²) + eps) and g = ∂L/∂y ⊙ weight, per row
// ∂L/∂x = r·g − r³·(g·x)/d · x.
RowMatrix rmsNormBackward(const RowMatrix& x, const float* weight, float eps,
                          const RowMatrix& outputGradient);

// Qwen3's q/k norm: rmsNorm of each head [headDim] of every row of x [tokens, heads·headDim],
// with one weight [headDim] for all heads; and its ∂L/∂x given ∂L/∂y.
RowMatrix headRmsNorm(const RowMatrix& x, Eigen::Index headDim, const float* weight, float eps);
RowMatrix headRmsNormBackward(const RowMatrix& x, Eigen::Index headDim, const float* weight,
                              float eps, const RowMatrix& outputGradient);

// RoPE's θ_i = theta^(−2i/headDim), i < headDim / 2, scaled as config.ropeScaling says, in fp32 as
// the reference implementations compute the rotation angles.
Eigen::VectorXf ropeInverseFrequencies(const ModelConfig& config);

// Forward rotates each head's pairs by +position·θ_i; Inverse by −position·θ_i, the transpose of
// the rotation, which carries gradients back through RoPE.
enum class RopeDirection { Forward, Inverse };
// Rotates the `headCount` heads of each row of `projected` [tokens, headCount·headDim], row t being
// position startPosition + t, with the pairs of config.ropeLayout.
void applyRope(RowMatrix& projected, int headCount, int startPosition, const ModelConfig& config,
               const Eigen::VectorXf& inverseFrequencies,
               RopeDirection direction = RopeDirection::Forward);

// Queries are processed in chunks of this many rows: a chunk only needs the keys up to its last
// position (halving causal work), and its score matrix stays small enough to live in cache.
inline constexpr Eigen::Index kQueryChunk = 64;

// The attention weights P = causal softmax(Q·Kᵀ·scale) [queries, keys] of the query rows Q at
// positions firstPosition… over the keys K at positions 0…; query i at position t sees the keys
// t − window < s ≤ t (every s ≤ t when window is 0) and gives the others weight 0.
RowMatrix causalAttentionWeights(const Eigen::Ref<const RowMatrix>& queries,
                                 const Eigen::Ref<const RowMatrix>& keys, float scale,
                                 Eigen::Index firstPosition, Eigen::Index window);

// SwiGLU in place: gate ← silu(gate) ⊙ up.
void swiGlu(RowMatrix& gate, const RowMatrix& up);
// ∂L/∂gate and ∂L/∂up of silu(gate) ⊙ up given ∂L/∂output; silu'(x) = σ(x)·(1 + x·(1 − σ(x))).
void swiGluBackward(const RowMatrix& gate, const RowMatrix& up, const RowMatrix& outputGradient,
                    RowMatrix& gateGradient, RowMatrix& upGradient);

} // namespace quantlens::ops
