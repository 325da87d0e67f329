#include "quantlens/formats/model_loading.h"

#include "quantlens/core/error.h"
#include "quantlens/formats/gguf_loader.h"
#include "quantlens/formats/hf_spqr_loader.h"

namespace quantlens {

std::unique_ptr<Model> loadModel(const std::filesystem::path& path, CompressedLayers compressed) {
    std::error_code error;
    const auto loadDirectory = [&](const std::filesystem::path& directory) {
        if (isQuantlensCheckpoint(directory)) return loadQuantlensModel(directory, compressed);
        if (isHfSpqrCheckpoint(directory)) return loadHfSpqrModel(directory);
        return loadHfModel(directory);
    };
    if (std::filesystem::is_directory(path, error)) return loadDirectory(path);
    if (std::filesystem::is_regular_file(path, error)) {
        if (path.extension() == ".safetensors" || path.filename() == "config.json")
            return loadDirectory(path.parent_path());
        if (isGgufFile(path)) return loadGgufModel(path);
        return loadLlama2cModel(path);
    }
    throw Error(path.string(), "no such file or directory");
}

} // namespace quantlens
