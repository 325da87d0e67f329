#pragma once

#include "quantlens/core/job.h"
#include "quantlens/encoding/quantized_layer.h"
#include "quantlens/model/model.h"

#include <filesystem>
#include <string>
#include <vector>

namespace quantlens {

// How qzeros hold a zero point: AutoGPTQ's classic "gptq" (v1) checkpoints store zero − 1, which
// cannot hold a zero of 0; GPTQModel's "gptq_v2" stores the zero itself.
enum class GptqZeros { V1, V2 };

// One linear layer in the GPTQ checkpoint layout of AutoGPTQ, which transformers' GPTQ loader
// reads: codes and zeros packed LSB-first into 32-bit words, 32 codes per `bits` words — qweight
// along the input dimension ([in·bits/32, out]), qzeros along the output dimension
// ([groups, out·bits/32]) — fp16 scales [groups, out] and g_idx [in], the group of each input
// column (act-order included). Weight (o, i) decodes to scales[g_idx[i], o] · (q(i, o) − zero),
// zero = qzero(g_idx[i], o) + 1 (V1) or qzero(g_idx[i], o) (V2).
struct GptqLayer {
    int bits = 0;
    int rows = 0; // out features
    int cols = 0; // in features
    std::vector<std::int32_t> qweight;
    std::vector<std::int32_t> qzeros;
    std::vector<std::uint16_t> scales; // fp16 bits
    std::vector<std::int32_t> gIdx;
};

// Converts an RTN or GPTQ layer without changing a single decoded weight. The layout needs
// 2, 3, 4 or 8 bits and in/out features that are multiples of 32. For V1, a group whose zero
// point is 0 is re-expressed with zero 1 and every code + 1, or refused when it also uses the
// largest code (fitsGptqV1 tells beforehand). `interleavedRope` moves the rows of a llama2.c-layout
// q/k_proj to Hugging Face's rotate-half order (`headDim` rows per head). Errors name `name`.
GptqLayer toGptqLayer(const QuantizedLayer& layer, const std::string& name, bool interleavedRope,
                      int headDim, GptqZeros zeros = GptqZeros::V1);
bool fitsGptqV1(const QuantizedLayer& layer);

// Writes a GPTQ checkpoint directory (model.safetensors, config.json with quantization_config,
// quantize_config.json, the tokenizer) into `directory` from a quantlens checkpoint loaded with
// CompressedLayers::Keep, whose layers must all be RTN or GPTQ with one bits/groupsize/act-order
// setting: checkpoint_format "gptq" (V1) when every layer fits it, else "gptq_v2". The
// unquantized tensors keep their stored dtype. Checks `job` between layers. Returns the zeros
// convention written.
GptqZeros writeGptqCheckpoint(const Model& compressed, const std::filesystem::path& directory,
                              const JobContext& job);

} // namespace quantlens
