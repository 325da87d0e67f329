// Any bytes as a llama2.c .bin checkpoint: the 7-int header, negative-size vocabulary flag for
// shared weights, and the sizes it implies against the file.
#include "fuzz_input.h"

#include "quantlens/core/error.h"
#include "quantlens/model/model.h"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
    const auto path = quantlens::fuzz::writeScratch("model.bin", data, size);
    try {
        const auto model = quantlens::loadLlama2cModel(path);
        (void)model;
    } catch (const quantlens::Error&) {
    }
    return 0;
}
