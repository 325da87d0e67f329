#include "quantlens/formats/model_loading.h"

#include "quantlens/core/error.h"

namespace quantlens {

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
