#pragma once

#include "quantlens/float_tensor.h"
#include "quantlens/mapped_file.h"
#include "quantlens/model_config.h"
#include "quantlens/safetensors.h"

#include <array>
#include <filesystem>
#include <memory>
#include <string>
#include <vector>

namespace quantlens {

class CompressedLinear;

enum class ModelFormat { HuggingFace, Llama2c };

// How a `quantlens` checkpoint's compressed linear layers are loaded: dequantized to fp32 (a
// dense model every job can use), or kept compressed and run through the fused kernels
// (inference: eval, generate).
enum class CompressedLayers { Dequantize, Keep };

struct BlockWeights {
    TensorView attnNorm, wq, wk, wv, wo;
    TensorView ffnNorm, gate, up, down;

    // The seven linear layers in quantization order: q, k, v, o, gate, up, down.
    std::array<const TensorView*, 7> linearLayers() const {
        return {&wq, &wk, &wv, &wo, &gate, &up, &down};
    }
};

// A loaded LLaMA-family checkpoint: its config and zero-copy views of every weight. The files stay
// mapped for the model's lifetime.
class Model {
public:
    ModelFormat format = ModelFormat::HuggingFace;
    std::filesystem::path path; // directory or .bin file as given
    ModelConfig config;

    TensorView embedding; // [vocab, dim]
    std::vector<BlockWeights> blocks;
    TensorView finalNorm; // [dim]
    TensorView lmHead;    // [vocab, dim]; the embedding itself when tied

    // Every tensor stored in the checkpoint, in file order (for inspection).
    std::vector<TensorView> storedTensors;

    std::int64_t parameterCount() const;
    std::size_t storedBytes() const;

    // The tokenizer that ships with the checkpoint, or empty when none was found.
    std::filesystem::path defaultTokenizer;

    // Whatever the views point into (mapped files, owned buffers), kept alive with the model.
    std::vector<std::shared_ptr<const void>> storage;

    // A `quantlens` checkpoint loaded with CompressedLayers::Keep: each block's linear layers
    // (kLinearLayerNames order), which the Transformer runs through the fused kernels. Their
    // TensorViews in `blocks` then carry name, shape and file but no data. Empty otherwise.
    std::vector<std::array<std::shared_ptr<const CompressedLinear>, 7>> compressedLayers;
};

// Loads an HF directory (config.json + model.safetensors or a sharded index), a `quantlens`
// checkpoint directory (its compressed layers as `compressed` says) or a llama2.c .bin.
std::unique_ptr<Model> loadModel(const std::filesystem::path& path,
                                 CompressedLayers compressed = CompressedLayers::Dequantize);

std::unique_ptr<Model> loadHfModel(const std::filesystem::path& directory);
std::unique_ptr<Model> loadLlama2cModel(const std::filesystem::path& binFile);

// A copy of `source` whose linear layers are `layers[block][i]` (kLinearLayerNames order), e.g. a
// quantized model's reconstruction; every other tensor still views the source's storage.
std::unique_ptr<Model> withLinearLayers(const Model& source,
                                        std::vector<std::array<RowMatrix, 7>> layers);

} // namespace quantlens
