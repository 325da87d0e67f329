#pragma once

#include "quantlens/core/job.h"
#include "quantlens/model/model.h"

#include <cstddef>
#include <cstdint>
#include <filesystem>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace quantlens {

// The ggml tensor types the GGUF export writes, numbered as ggml's ggml_type (gguf-py's
// GGMLQuantizationType). Q8_0, Q4_1 and Q5_1 hold 32 weights per block (docs/GGUF.md).
enum class GgufType : std::uint32_t { F32 = 0, F16 = 1, Q4_1 = 3, Q5_1 = 7, Q8_0 = 8, BF16 = 30 };

// ggml's names, "f32", "f16", "bf16", "q8_0", "q4_1", "q5_1"; parsing throws Error for others.
std::string ggufTypeName(GgufType type);
GgufType parseGgufType(std::string_view name);
// Weights per block (1 for F32, F16 and BF16) and the bytes of one block.
int ggufBlockSize(GgufType type);
std::size_t ggufBlockBytes(GgufType type);

struct GgufOptions {
    // Unset: the exact export. Every tensor holds the model's weights bit for bit: a quantized
    // layer as the block type its grid is (RTN/GPTQ of at most 4 bits as Q4_1, 5 bits as Q5_1,
    // up to 8 as Q8_0), its codes and statistics moved, never requantized; dense tensors in their
    // stored type. A layer whose grid is no block type is refused with the reason.
    // Set: every 2-D weight (embedding, linear layers, head) as this type, an approximation whose
    // error is measured: F32/F16/BF16 from the (dequantized) weights; a block type exactly from
    // the grid where the layer's grid is that type, else requantized with ggml's reference rule.
    // Rows whose length is not a multiple of 32 cannot be blocks: they fall back to F16 as
    // llama.cpp's do, F32 in the exact export. Norms are always F32.
    std::optional<GgufType> type;
    // The SentencePiece model whose vocabulary the file carries; empty: Model::defaultTokenizer.
    std::filesystem::path tokenizer;
    // general.name; empty: the name of the model's directory (or .bin file).
    std::string name;
};

// One tensor as written, measured against the model's weights (QuantizedLayer::dequantize() of
// a compressed layer, the stored values of anything else) in the file's row order.
struct GgufTensorReport {
    std::string name;        // "blk.0.attn_q.weight"
    std::string modelTensor; // "model.layers.0.self_attn.q_proj.weight"; empty for rope_freqs
    GgufType type = GgufType::F32;
    // "copied" (stored values, converted exactly), "dequantized" (a compressed layer's decoded
    // fp32 values), "grid" (its codes and statistics moved into blocks), "rounded" (to F16 or
    // BF16), "requantized" (ggml's reference rule), or "computed" (rope_freqs).
    std::string method;
    std::string note; // why it is not the requested or native type, or why it is requantized
    std::int64_t elements = 0;
    double maxError = 0.0; // max |written − weight|
    double rmsError = 0.0; // sqrt(mean (written − weight)²)
    bool exact() const { return maxError == 0.0; }
};

struct GgufResult {
    std::uintmax_t fileBytes = 0;
    std::uint32_t fileType = 0;            // general.file_type (llama.cpp's llama_ftype)
    std::vector<GgufTensorReport> tensors; // in file order
    double maxError = 0.0;                 // over every weight of every tensor
    double rmsError = 0.0;
    bool exact() const { return maxError == 0.0; }
};

// Writes `model` — a dense model or a quantlens checkpoint loaded with CompressedLayers::Keep —
// to `file` as GGUF v3 for llama.cpp's "llama" architecture (docs/GGUF.md): the hyperparameters
// and RoPE keys llama.cpp reads, the SentencePiece vocabulary with scores, token types and
// BOS/EOS, and llama.cpp's tensor names with q/k rows in its interleaved RoPE order. The file
// appears whole or not at all (AtomicFile); `job` is checked between tensors. Throws Error naming
// `file`, before anything is written, for an architecture other than Llama, a missing or
// non-SentencePiece tokenizer, or (exact export) a layer that does not map exactly, naming the
// layer and what differs.
GgufResult writeGguf(const Model& model, const std::filesystem::path& file,
                     const GgufOptions& options, const JobContext& job);

} // namespace quantlens
