#include "quantlens/model.h"

#include "quantlens/error.h"

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

std::unique_ptr<Model> loadModel(const std::filesystem::path& path) {
    std::error_code error;
    if (std::filesystem::is_directory(path, error)) return loadHfModel(path);
    if (std::filesystem::is_regular_file(path, error)) {
        if (path.extension() == ".safetensors" || path.filename() == "config.json")
            return loadHfModel(path.parent_path());
        return loadLlama2cModel(path);
    }
    throw Error(path.string(), "no such file or directory");
}

} // namespace quantlens
