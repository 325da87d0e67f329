#include "quantlens/tokenizer/tokenizer.h"

#include "quantlens/core/error.h"

#include <cerrno>
#include <cstring>
#include <fstream>

namespace quantlens {
namespace {

// A llama2.c tok*.bin opens with its longest piece's byte length; a SentencePiece model proto opens
// with a field tag and a varint, which read as an int32 is far outside this range.
constexpr std::int32_t kMaxPlausibleTokenLength = 1024;

} // namespace

std::unique_ptr<Tokenizer> loadTokenizer(const std::filesystem::path& path) {
    const std::string source = path.string();
    std::error_code error;
    if (!std::filesystem::exists(path, error)) throw Error(source, "no such file");
    if (!std::filesystem::is_regular_file(path, error))
        throw Error(source, "not a regular file; expected a tokenizer.model or tok*.bin");

    std::int32_t header = 0;
    std::ifstream in(path, std::ios::binary);
    if (!in) throw Error(source, std::string("cannot open: ") + std::strerror(errno));
    const bool hasHeader = static_cast<bool>(in.read(reinterpret_cast<char*>(&header), 4));
    in.close();

    std::string llama2cReason;
    if (hasHeader && header >= 1 && header <= kMaxPlausibleTokenLength) {
        try {
            return loadLlama2cTokenizer(path);
        } catch (const Error& e) {
            llama2cReason = e.message();
        }
    } else {
        llama2cReason = hasHeader
                            ? "its first int32, max_token_length, is " + std::to_string(header) +
                                  ", outside 1.." + std::to_string(kMaxPlausibleTokenLength)
                            : "it is shorter than the 4-byte header";
    }
    try {
        return loadSentencePieceTokenizer(path);
    } catch (const Error& e) {
        throw Error(source, "neither a llama2.c tokenizer (" + llama2cReason +
                                ") nor a SentencePiece model (" + e.message() + ")");
    }
}

} // namespace quantlens
