#include "quantlens/model/model.h"

#include "quantlens/core/error.h"

namespace quantlens {

std::int64_t Model::parameterCount() const {
    std::int64_t count = embedding.elementCount() + finalNorm.elementCount();
    if (!config.tiedEmbeddings) count += lmHead.elementCount();
    for (const BlockWeights& b : blocks)
        for (const BlockTensorSpec& tensor : kBlockTensors)
            if (hasBlockTensor(tensor, config)) count += (b.*tensor.weights).elementCount();
    return count;
}

std::size_t Model::storedBytes() const {
    std::size_t bytes = 0;
    for (const TensorView& t : storedTensors)
        bytes += t.byteSize();
    return bytes;
}

namespace {

// Points `block`'s layer `layer` at `matrix`, which the caller keeps alive with the model.
void replaceLinearLayer(Model& model, std::size_t block, std::size_t layer,
                        const RowMatrix& matrix) {
    TensorView& view = model.blocks[block].*kLinearLayers[layer].weights;
    if (matrix.rows() != view.shape[0] || matrix.cols() != view.shape[1])
        throw Error(model.path.string(), "replacement for " + view.name + " has the wrong shape");
    view.dtype = DType::F32;
    view.data = reinterpret_cast<const std::byte*>(matrix.data());
    if (!model.compressedLayers.empty()) model.compressedLayers[block][layer].reset();
}

} // namespace

std::unique_ptr<Model> withLinearLayers(const Model& source,
                                        std::vector<std::array<RowMatrix, 7>> layers) {
    if (layers.size() != source.blocks.size())
        throw Error(source.path.string(),
                    "replacement layers for " + std::to_string(layers.size()) +
                        " blocks, but the model has " + std::to_string(source.blocks.size()));
    auto model = std::make_unique<Model>(source);
    model->compressedLayers.clear(); // the replacements are dense
    auto owned = std::make_shared<std::vector<std::array<RowMatrix, 7>>>(std::move(layers));
    for (std::size_t b = 0; b < model->blocks.size(); ++b)
        for (std::size_t i = 0; i < kLinearLayers.size(); ++i)
            replaceLinearLayer(*model, b, i, (*owned)[b][i]);
    model->storage.push_back(std::move(owned));
    return model;
}

std::unique_ptr<Model> withLinearLayer(const Model& source, int block, int layer,
                                       RowMatrix weights) {
    if (block < 0 || block >= static_cast<int>(source.blocks.size()) || layer < 0 ||
        layer >= kLinearLayerCount)
        throw Error(source.path.string(), "no linear layer " + std::to_string(layer) +
                                              " in block " + std::to_string(block));
    auto model = std::make_unique<Model>(source);
    auto owned = std::make_shared<RowMatrix>(std::move(weights));
    replaceLinearLayer(*model, static_cast<std::size_t>(block), static_cast<std::size_t>(layer),
                       *owned);
    model->storage.push_back(std::move(owned));
    return model;
}

} // namespace quantlens
