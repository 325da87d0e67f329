#include "quantlens/model.h"

#include "quantlens/error.h"
#include "quantlens/quantlens_checkpoint.h"

namespace quantlens {

std::int64_t Model::parameterCount() const {
    std::int64_t count = embedding.elementCount() + finalNorm.elementCount();
    if (!config.tiedEmbeddings) count += lmHead.elementCount();
    for (const BlockWeights& b : blocks)
        for (const TensorView* t :
             {&b.attnNorm, &b.wq, &b.wk, &b.wv, &b.wo, &b.ffnNorm, &b.gate, &b.up, &b.down})
            count += t->elementCount();
    return count;
}

std::size_t Model::storedBytes() const {
    std::size_t bytes = 0;
    for (const TensorView& t : storedTensors)
        bytes += t.byteSize();
    return bytes;
}

std::unique_ptr<Model> withLinearLayers(const Model& source,
                                        std::vector<std::array<RowMatrix, 7>> layers) {
    if (layers.size() != source.blocks.size())
        throw Error(source.path.string(),
                    "replacement layers for " + std::to_string(layers.size()) +
                        " blocks, but the model has " + std::to_string(source.blocks.size()));
    auto model = std::make_unique<Model>(source);
    model->compressedLayers.clear(); // the replacements are dense
    auto owned = std::make_shared<std::vector<std::array<RowMatrix, 7>>>(std::move(layers));
    for (std::size_t b = 0; b < model->blocks.size(); ++b) {
        BlockWeights& block = model->blocks[b];
        const std::array<TensorView*, 7> views = {&block.wq,   &block.wk, &block.wv,  &block.wo,
                                                  &block.gate, &block.up, &block.down};
        for (std::size_t i = 0; i < views.size(); ++i) {
            const RowMatrix& matrix = (*owned)[b][i];
            if (matrix.rows() != views[i]->shape[0] || matrix.cols() != views[i]->shape[1])
                throw Error(source.path.string(),
                            "replacement for " + views[i]->name + " has the wrong shape");
            views[i]->dtype = DType::F32;
            views[i]->data = reinterpret_cast<const std::byte*>(matrix.data());
        }
    }
    model->storage.push_back(std::move(owned));
    return model;
}

std::unique_ptr<Model> loadModel(const std::filesystem::path& path, CompressedLayers compressed) {
    std::error_code error;
    const auto loadDirectory = [&](const std::filesystem::path& directory) {
        return isQuantlensCheckpoint(directory) ? loadQuantlensModel(directory, compressed)
                                                : loadHfModel(directory);
    };
    if (std::filesystem::is_directory(path, error)) return loadDirectory(path);
    if (std::filesystem::is_regular_file(path, error)) {
        if (path.extension() == ".safetensors" || path.filename() == "config.json")
            return loadDirectory(path.parent_path());
        return loadLlama2cModel(path);
    }
    throw Error(path.string(), "no such file or directory");
}

} // namespace quantlens
