#pragma once

#include "quantlens/core/float_tensor.h"
#include "quantlens/io/mapped_file.h"
#include "quantlens/io/safetensors.h"
#include "quantlens/model/layer_layout.h"
#include "quantlens/model/model_config.h"

#include <array>
#include <filesystem>
#include <memory>
#include <string>
#include <vector>

namespace quantlens {

class CompressedLinear;

enum class ModelFormat { HuggingFace, Llama2c };

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
    // (kLinearLayers order), which the Transformer runs through the fused kernels. Their
    // TensorViews in `blocks` then carry name, shape and file but no data. Empty otherwise.
    std::vector<std::array<std::shared_ptr<const CompressedLinear>, 7>> compressedLayers;
};

// Calls dense(name, view) for every tensor of `model` that is not a linear layer and
// linear(block, layer) for every linear layer (kLinearLayers index), in Hugging Face's file order:
// the embedding, each block's tensors (kBlockTensors: norms and biases are dense), the final
// norm, and the head unless tied.
template <class Dense, class Linear>
void forEachModelTensor(const Model& model, Dense&& dense, Linear&& linear) {
    dense(std::string(kEmbeddingTensor), model.embedding);
    for (int b = 0; b < static_cast<int>(model.blocks.size()); ++b)
        for (const BlockTensorSpec& spec : kBlockTensors)
            if (spec.kind == BlockTensorKind::Weight)
                linear(b, spec.linear);
            else if (hasBlockTensor(spec, model.config))
                dense(blockPrefix(b) + spec.name,
                      model.blocks[static_cast<std::size_t>(b)].*spec.weights);
    dense(std::string(kFinalNormTensor), model.finalNorm);
    if (!model.config.tiedEmbeddings) dense(std::string(kLmHeadTensor), model.lmHead);
}

// The loaders of the two unquantized formats; loadModel (formats/model_loading.h) picks among
// them and the quantlens checkpoint.
std::unique_ptr<Model> loadHfModel(const std::filesystem::path& directory);
std::unique_ptr<Model> loadLlama2cModel(const std::filesystem::path& binFile);

// A copy of `source` whose linear layers are `layers[block][i]` (kLinearLayers order), e.g. a
// quantized model's reconstruction; every other tensor still views the source's storage.
std::unique_ptr<Model> withLinearLayers(const Model& source,
                                        std::vector<std::array<RowMatrix, 7>> layers);
// A copy of `source` with one linear layer replaced (`layer` a kLinearLayers index), e.g. to see
// what quantizing that layer alone does.
std::unique_ptr<Model> withLinearLayer(const Model& source, int block, int layer,
                                       RowMatrix weights);

} // namespace quantlens
