// Any bytes as model.safetensors.index.json beside stories260K-hf's real config and weights:
// shard names (path traversal), the weight map, duplicate and missing tensors.
#include "fuzz_input.h"

#include "quantlens/core/error.h"
#include "quantlens/model/model.h"

#include <filesystem>
#include <fstream>

namespace {

// The model directory: the real config.json, the real weights as the only shard.
const std::filesystem::path& modelDirectory() {
    static const std::filesystem::path directory = [] {
        const std::filesystem::path dir = quantlens::fuzz::scratchModelDirectory(
            "sharded", "stories260K-hf", {"config.json", "model.safetensors"});
        std::filesystem::rename(dir / "model.safetensors",
                                dir / "model-00001-of-00001.safetensors");
        return dir;
    }();
    return directory;
}

} // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
    const std::filesystem::path& dir = modelDirectory();
    {
        std::ofstream index(dir / "model.safetensors.index.json",
                            std::ios::binary | std::ios::trunc);
        index.write(reinterpret_cast<const char*>(data), static_cast<std::streamsize>(size));
    }
    try {
        const auto model = quantlens::loadHfModel(dir);
        (void)model;
    } catch (const quantlens::Error&) {
    }
    return 0;
}
