#pragma once

#include "quantlens/encoding/quantized_layer.h"
#include "quantlens/io/atomic_directory.h"
#include "quantlens/model/model.h"

#include <cstdint>
#include <filesystem>
#include <map>
#include <memory>
#include <string>
#include <vector>

namespace quantlens {

// How a `quantlens` checkpoint's compressed linear layers are loaded: dequantized to fp32 (a
// dense model every job can use), or kept compressed and run through the fused kernels
// (inference: eval, generate).
enum class CompressedLayers { Dequantize, Keep };

// The `quantlens` checkpoint (docs/FORMAT.md §The quantlens checkpoint): one safetensors file of
// compressed linear layers (the arrays of each method, byte for byte) plus the unquantized
// embedding, norms and head, with the format, version, method and every layer's settings in
// __metadata__; config.json and the tokenizer beside it.
inline constexpr const char* kQuantlensFormatName = "quantlens";
// Version 2 stores index arrays no wider than they need and no CSR for a layer without outliers;
// version 1 checkpoints (I32 row pointers, U16 columns and permutations) still load.
inline constexpr int kQuantlensFormatVersion = 2;
inline constexpr int kOldestQuantlensFormatVersion = 1;

// A method's settings as the JSON object stored per layer ({"method": "spqr", "wbits": 3, …}),
// and back; parsing requires every setting of the method and validates them, throwing Error
// (source, …) that names the bad one.
std::string quantConfigJson(const QuantConfig& config);
QuantConfig parseQuantConfigJson(const std::string& text, const std::string& source);

// Writes a quantlens checkpoint directory from `source` (config.json, tokenizer and every tensor
// that is not a quantized linear layer, copied in its stored dtype) and the quantized layers given
// to writeLayer(), e.g. as quantizeModel's sink. Layers are validated and appended to a spill
// file as they arrive, so memory stays at one layer; commit() streams the final file. The
// directory appears whole at commit() or not at all (AtomicDirectory).
class QuantlensWriter {
public:
    QuantlensWriter(const Model& source, const std::filesystem::path& directory,
                    const std::map<std::string, std::string>& metadata = {});
    ~QuantlensWriter();
    QuantlensWriter(const QuantlensWriter&) = delete;
    QuantlensWriter& operator=(const QuantlensWriter&) = delete;

    // Layers arrive block by block, in kLinearLayers order.
    void writeLayer(int block, const std::string& name, const QuantizedLayer& layer);
    void commit();

private:
    struct SpilledArray {
        std::string key;
        std::string dtype;
        std::vector<std::int64_t> shape;
        std::uint64_t offset = 0;
        std::size_t size = 0;
    };
    struct WrittenLayer {
        QuantConfig config;
        int rows = 0;
        int cols = 0;
        std::vector<SpilledArray> arrays;
    };
    void spill(const std::vector<std::uint8_t>& bytes);
    void writeFiles(); // everything commit() writes into the staging directory

    const Model& source_;
    std::map<std::string, std::string> metadata_;
    AtomicDirectory directory_;
    std::filesystem::path spillPath_;
    int spillFd_ = -1;
    std::uint64_t spilled_ = 0;
    std::vector<WrittenLayer> layers_; // block-major, kLinearLayers order
};

// Whether `directory` holds a quantlens checkpoint: a model.safetensors whose metadata names the
// format (its header is validated on the way).
bool isQuantlensCheckpoint(const std::filesystem::path& directory);

// Loads a quantlens checkpoint: config.json (its RoPE layout from the metadata), the tokenizer,
// the unquantized tensors viewed in the mapped file, and every linear layer validated against
// docs/FORMAT.md — kept compressed (Model::compressedLayers, viewing the mapped file) or
// dequantized to fp32, as `layers` says. Errors name the file and the problem.
std::unique_ptr<Model> loadQuantlensModel(const std::filesystem::path& directory,
                                          CompressedLayers layers);

} // namespace quantlens
