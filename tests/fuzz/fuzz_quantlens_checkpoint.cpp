// Any bytes as the model.safetensors of a quantlens checkpoint (beside stories260K's real
// config.json and tokenizer): metadata version and layer settings, every compressed array's
// dtype, shape and contents (codes, statistics, LUTs, CSR pointers and columns, permutations).
// What loads is also run through the fused kernels, so a check the reader missed shows up as an
// out-of-bounds read there.
#include "fuzz_input.h"

#include "quantlens/core/error.h"
#include "quantlens/formats/quantlens_checkpoint.h"
#include "quantlens/runtime/kv_cache.h"
#include "quantlens/runtime/transformer.h"

#include <array>
#include <filesystem>
#include <fstream>

namespace {

const std::filesystem::path& checkpointDirectory() {
    static const std::filesystem::path directory = quantlens::fuzz::scratchModelDirectory(
        "checkpoint", "stories260K-hf", {"config.json", "tokenizer.model"});
    return directory;
}

} // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
    const std::filesystem::path& dir = checkpointDirectory();
    {
        std::ofstream weights(dir / "model.safetensors", std::ios::binary | std::ios::trunc);
        weights.write(reinterpret_cast<const char*>(data), static_cast<std::streamsize>(size));
    }
    try {
        const auto model = quantlens::loadQuantlensModel(dir, quantlens::CompressedLayers::Keep);
        const quantlens::Transformer transformer(*model);
        quantlens::KvCache cache(model->config, 2);
        const std::array<std::int32_t, 2> tokens{1, 2};
        (void)transformer.forward(tokens, cache);
    } catch (const quantlens::Error&) {
    }
    return 0;
}
