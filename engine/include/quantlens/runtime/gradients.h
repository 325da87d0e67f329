#pragma once

#include "quantlens/core/float_tensor.h"
#include "quantlens/core/job.h"
#include "quantlens/runtime/transformer.h"

#include <cstdint>
#include <functional>
#include <span>

namespace quantlens {

// Receives ∂L/∂W [rows = out, cols = in] of linear layer `layer` (an index into kLinearLayers)
// of `block`. The matrix is only valid during the call.
using LinearGradientSink = std::function<void(int block, int layer, const RowMatrix& gradient)>;
// Receives ∂L/∂Y [tokens, out] of the same layer's output Y = X·Wᵀ (row t: position t), only
// valid during the call: what a curvature estimate per output needs, without forming ∂L/∂W.
using OutputGradientSink =
    std::function<void(int block, int layer, const RowMatrix& outputGradient)>;

// The backward pass of the LLaMA forward (Transformer) for one sequence starting at position 0.
// L = mean over positions t = 0 … n − 2 of −log softmax(logits_t)[tokens[t + 1]], the next-token
// cross-entropy. Runs the forward pass keeping only each block's input, then walks the blocks from
// the top, recomputing one block's intermediates at a time (checkpointing per block: memory is one
// block's activations plus tokens × hiddenSize per block), and hands every linear weight's
// gradient to `sink` (and its output's gradient to `outputs`; either may be empty): top block
// first, and inside a block in backward order (down, gate, up, o, q, k, v). Norm weights and
// embeddings get none. Returns L (computed in double). `job`, when given, is checked before each
// block of either pass. Throws Error for fewer than two tokens, or positions past the model's
// maximum.
double lossAndLinearGradients(const Transformer& transformer, std::span<const std::int32_t> tokens,
                              const LinearGradientSink& sink, const JobContext* job = nullptr,
                              const OutputGradientSink& outputs = {});

} // namespace quantlens
