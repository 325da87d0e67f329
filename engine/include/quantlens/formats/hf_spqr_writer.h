#pragma once

#include "quantlens/core/job.h"
#include "quantlens/encoding/quantized_layer.h"
#include "quantlens/model/model.h"

#include <cstdint>
#include <filesystem>
#include <string>
#include <vector>

namespace quantlens {

// Hugging Face transformers' SpQR format (quant_method "spqr", spqr_quant's QuantizedLinear and
// kernels; docs/HF_SPQR.md): 3-bit SpQR in 16×16 tiles. Its kernels hold nothing else.
inline constexpr int kHfSpqrBits = 3;
inline constexpr int kHfSpqrTile = 16; // β1 = β2

// Why layers quantized with `config` cannot be written in the format at all, naming the setting
// ("qq_bits is 2; …"), or "" when they can: spqr with wbits 3, groupsize 16, qq_bits 3 and
// stats_groupsize 16.
std::string hfSpqrSettingMismatch(const QuantConfig& config);

// One linear layer W [rows = out, cols = in] as QuantizedLinear stores it: every array 1-D.
struct HfSpqrLayer {
    int rows = 0;
    int cols = 0;
    std::vector<std::int64_t> denseWeights; // rows·cols/16 words: one per row of each tile
    std::vector<std::int32_t> rowOffsets;   // rows + 1 CSR row pointers
    std::vector<std::int32_t> colVals;      // per outlier: fp16 value << 16 | permuted column
    std::vector<std::int32_t> inPerm;       // cols/2: perm[2k] | perm[2k + 1] << 16
    std::int64_t outliers = 0;
    // The weights as the kernels decode them (fp16 arithmetic, outliers added), measured against
    // QuantizedLayer::dequantize(): the largest difference, and the first weight outside the
    // bounds of docs/HF_SPQR.md ("" when none is).
    double maxError = 0.0;
    std::string outOfBound;

    std::size_t storedBytes() const;
};

// Converts an SpQR layer whose settings the format holds and whose rows and columns are multiples
// of 16 (Error naming `name` otherwise). Row `to` of the result is row rowOf[to] of `layer`
// (empty: the identity), which must stay in its 16-row tile. Codes and statistics move unchanged;
// each outlier is stored as the difference the kernels add to the value they decode.
HfSpqrLayer toHfSpqrLayer(const QuantizedLayer& layer, const std::string& name,
                          const std::vector<int>& rowOf = {});

// What the export did with one linear layer.
struct HfSpqrLayerReport {
    std::string name;       // "model.layers.0.self_attn.q_proj"
    bool converted = false; // false: stored fp16 dense and listed in modules_to_not_convert
    std::string reason;     // why it is dense
    int rows = 0, cols = 0;
    std::int64_t outliers = 0;
    std::uint64_t exportBytes = 0; // its tensors in model.safetensors
    std::uint64_t sourceBytes = 0; // its arrays in the checkpoint
    double maxError = 0.0;         // converted: max |kernel decode − dequantize()|; dense: 0
    std::int64_t parameters() const { return std::int64_t(rows) * cols; }
    double bitsPerParameter() const { return 8.0 * double(exportBytes) / double(parameters()); }
};

struct HfSpqrResult {
    std::vector<HfSpqrLayerReport> layers; // every linear layer, in file order
    std::vector<std::string> modulesToNotConvert;
    // Over all linear layers: stored bits per parameter in the export and in the checkpoint, and
    // the parameters stored dense (fp16).
    double bitsPerParameter = 0.0;
    double sourceBitsPerParameter = 0.0;
    std::int64_t denseParameters = 0;
    std::int64_t parameters = 0;
    int convertedLayers() const;
};

// Writes `model` — a quantlens checkpoint loaded with CompressedLayers::Keep — into `directory`
// (config.json with quantization_config, model.safetensors, the tokenizer): each linear layer the
// kernels can hold converted, the others and every other tensor fp16, as docs/HF_SPQR.md lays
// out. Throws Error before writing anything when a layer's method or settings are not the
// format's, naming the layer and the setting. Checks `job` between layers.
HfSpqrResult writeHfSpqrCheckpoint(const Model& model, const std::filesystem::path& directory,
                                   const JobContext& job);

} // namespace quantlens
