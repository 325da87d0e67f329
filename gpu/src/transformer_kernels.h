#pragma once

// The LLaMA block's elementwise and attention pieces on the device, mirroring
// engine/src/runtime/transformer_ops.cpp; the linear layers are cuBLAS products. All matrices are
// row-major [tokens, width] in fp32, on the caller's stream.

#include <cuda_runtime.h>

#include <cstdint>

namespace quantlens::gpu {

// out[t] = table[ids[t]] for a row-major table of `width` columns.
void embedRows(const float* table, const std::int32_t* ids, int tokens, int width, float* out,
               cudaStream_t stream);

// out = x / sqrt(mean(x²) + eps) ⊙ weight, per row; out may be x. Qwen3's q/k norm is this over
// tokens·heads rows of headDim.
void rmsNorm(const float* x, const float* weight, int tokens, int width, float eps, float* out,
             cudaStream_t stream);

// y[t] += bias for each of the `tokens` rows of y [tokens, width] (Qwen2's q/k/v biases).
void addBias(float* y, const float* bias, int tokens, int width, cudaStream_t stream);

// Rotates each head's pairs (rotate-half: i and i + headDim/2; interleaved: 2i and 2i + 1) of row
// t by the angle table cos/sin [positions, headDim/2] at position t.
void applyRope(float* x, int tokens, int heads, int headDim, bool interleaved, const float* cosines,
               const float* sines, cudaStream_t stream);

// The longest sequence causalAttention() takes on `device`: one block holds a query and a row
// of scores in shared memory.
int attentionTokenLimit(int device, int headDim);

// Causal GQA attention of queries [tokens, heads·headDim] over keys and values
// [tokens, kvHeads·headDim], all from position 0: out [tokens, heads·headDim]. The query at t sees
// the keys t − window < s ≤ t (every s ≤ t when window is 0). Throws Error past
// attentionTokenLimit().
void causalAttention(const float* queries, const float* keys, const float* values, int tokens,
                     int heads, int kvHeads, int headDim, float scale, int window, float* out,
                     cudaStream_t stream);

// gate ← silu(gate) ⊙ up over `count` elements.
void swiGlu(float* gate, const float* up, std::int64_t count, cudaStream_t stream);

} // namespace quantlens::gpu
