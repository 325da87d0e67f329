#pragma once

// What the GGUF writer and loader share of llama.cpp's layout: the metadata value types, its
// names for a block's tensors (src/llama-arch.cpp, LLM_ARCH_LLAMA) and how a 32-weight block
// decodes (ggml-common.h).

#include "quantlens/formats/gguf_writer.h"
#include "quantlens/model/layer_layout.h"

#include <array>
#include <cstdint>

namespace quantlens::gguf {

inline constexpr int kBlock = 32; // QK8_0 = QK4_1 = QK5_1

// gguf_metadata_value_type (ggml's docs/gguf.md).
enum class ValueType : std::uint32_t {
    UInt8 = 0,
    Int8 = 1,
    UInt16 = 2,
    Int16 = 3,
    UInt32 = 4,
    Int32 = 5,
    Float32 = 6,
    Bool = 7,
    String = 8,
    Array = 9,
    UInt64 = 10,
    Int64 = 11,
    Float64 = 12,
};

// llama.cpp's names for a block's linear layers, in kLinearLayers order: q, k, v, o, gate, up,
// down; and for its two norms.
inline constexpr std::array<const char*, kLinearLayerCount> kLinearNames{
    "attn_q", "attn_k", "attn_v", "attn_output", "ffn_gate", "ffn_up", "ffn_down"};
inline constexpr const char* kAttentionNorm = "attn_norm";
inline constexpr const char* kMlpNorm = "ffn_norm";

// The 32 weights of a Q8_0, Q4_1 or Q5_1 block at `in`, as ggml's dequantize_row_* computes them.
void decodeBlock(GgufType type, const std::uint8_t* in, float* out);

} // namespace quantlens::gguf
