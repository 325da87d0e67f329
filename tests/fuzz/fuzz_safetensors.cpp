// Any bytes as a safetensors file: header length, JSON header, dtypes, shapes and offsets.
#include "fuzz_input.h"

#include "quantlens/core/error.h"
#include "quantlens/io/safetensors.h"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
    const auto path = quantlens::fuzz::writeScratch("input.safetensors", data, size);
    try {
        const quantlens::SafetensorsFile file(path, quantlens::SafetensorsFile::DTypes::Any);
        std::size_t bytes = 0;
        for (const auto& tensor : file.rawTensors()) // touch every byte a view claims
            for (std::size_t i = 0; i < tensor.size; i += 4096)
                bytes += static_cast<std::size_t>(tensor.data[i]);
        (void)bytes;
    } catch (const quantlens::Error&) {
    }
    return 0;
}
