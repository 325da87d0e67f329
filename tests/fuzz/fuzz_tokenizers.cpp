// Any bytes as a tokenizer file (llama2.c tok*.bin or a SentencePiece model proto, chosen by
// content as loadTokenizer does), then a round of encode and decode on fixed text.
#include "fuzz_input.h"

#include "quantlens/core/error.h"
#include "quantlens/tokenizer/tokenizer.h"

#include <vector>

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
    const auto path = quantlens::fuzz::writeScratch("tokenizer", data, size);
    try {
        const auto tokenizer = quantlens::loadTokenizer(path);
        const std::vector<std::int32_t> ids =
            tokenizer->encode("Once upon a time, a little \xE2\x9C\x93 girl\nnamed Lily.");
        (void)tokenizer->decode(ids);
        const std::vector<std::int32_t> edges{0, tokenizer->vocabSize() - 1};
        (void)tokenizer->decode(edges);
    } catch (const quantlens::Error&) {
    }
    return 0;
}
