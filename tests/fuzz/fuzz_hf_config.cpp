// Any bytes as a Hugging Face config.json: parsing, types, bounds and consistency checks.
#include "fuzz_input.h"

#include "quantlens/core/error.h"
#include "quantlens/model/model_config.h"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
    const auto path = quantlens::fuzz::writeScratch("config.json", data, size);
    try {
        const quantlens::ModelConfig config = quantlens::readHfConfig(path);
        config.validate(path.string());
    } catch (const quantlens::Error&) {
    }
    return 0;
}
