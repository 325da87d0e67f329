#pragma once

#include "quantlens/float_tensor.h"
#include "quantlens/kv_cache.h"
#include "quantlens/model.h"

#include <cstdint>
#include <span>

namespace quantlens {

// The LLaMA forward pass on the CPU (Eigen): RMSNorm, RoPE in the model's layout, causal GQA
// attention, SwiGLU. Works on a whole sequence at once; positions continue from the cache, so the
// same code scores windows and generates token by token.
class Transformer {
public:
    explicit Transformer(const Model& model);

    const Model& model() const { return model_; }

    // Logits [tokens, vocab] for `tokens` at positions cache.length…; appends to the cache.
    RowMatrix forward(std::span<const std::int32_t> tokens, KvCache& cache) const;

    // The pieces of forward(), for jobs that walk the model block by block.
    RowMatrix embed(std::span<const std::int32_t> tokens) const;
    void runBlock(int block, RowMatrix& hidden, KvCache& cache, int startPosition) const;
    RowMatrix logits(const RowMatrix& hidden) const;

private:
    void applyRope(RowMatrix& projected, int headCount, int startPosition) const;
    [[noreturn]] void throwNonFinite(int block) const;

    const Model& model_;
    RowMatrix ropeCos_; // [maxPositions, headDim / 2]
    RowMatrix ropeSin_;
};

} // namespace quantlens
