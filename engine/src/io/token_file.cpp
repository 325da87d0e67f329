#include "quantlens/io/token_file.h"

#include "quantlens/core/error.h"
#include "quantlens/io/atomic_file.h"
#include "quantlens/io/mapped_file.h"

#include <algorithm>
#include <limits>
#include <string>

namespace quantlens {
namespace {

namespace fs = std::filesystem;

// 2^28 ids are 1 GiB in memory, ~300 times WikiText-2's test split; a larger file is not an
// evaluation set this reader should materialise.
constexpr std::size_t kMaxTokens = std::size_t{1} << 28;
constexpr std::size_t kWriteChunkTokens = std::size_t{1} << 16;

std::size_t bytesPerToken(TokenWidth width) {
    return static_cast<std::size_t>(width);
}

std::string extensionOf(TokenWidth width) {
    return width == TokenWidth::U16 ? ".u16" : ".u32";
}

std::int64_t largestId(TokenWidth width) {
    return width == TokenWidth::U16 ? std::numeric_limits<std::uint16_t>::max()
                                    : std::numeric_limits<std::int32_t>::max();
}

} // namespace

TokenWidth tokenWidthFromExtension(const fs::path& path) {
    const std::string extension = path.extension().string();
    if (extension == ".u16") return TokenWidth::U16;
    if (extension == ".u32") return TokenWidth::U32;
    throw Error(path.string(), (extension.empty() ? std::string("no extension")
                                                  : "unknown extension '" + extension + "'") +
                                   "; token files are .u16 (uint16 ids) or .u32 (uint32 ids)");
}

std::vector<std::int32_t> readTokenFile(const fs::path& path, TokenWidth width) {
    const std::string source = path.string();
    const MappedFile file(path);
    const std::span<const std::byte> bytes = file.bytes();
    const std::size_t step = bytesPerToken(width);
    if (bytes.empty()) throw Error(source, "contains no tokens (the file is empty)");
    if (bytes.size() % step != 0)
        throw Error(source,
                    "size " + std::to_string(bytes.size()) + " bytes is not a multiple of " +
                        std::to_string(step) + ", the width of a " + extensionOf(width) +
                        " token; the file is truncated or not a " + extensionOf(width) + " file");
    const std::size_t count = bytes.size() / step;
    if (count > kMaxTokens)
        throw Error(source, "holds " + std::to_string(count) + " tokens, more than the " +
                                std::to_string(kMaxTokens) + " a token file may hold");

    std::vector<std::int32_t> ids(count);
    const auto* data = reinterpret_cast<const unsigned char*>(bytes.data());
    for (std::size_t i = 0; i < count; ++i) {
        const unsigned char* p = data + i * step;
        std::uint32_t id = p[0] | static_cast<std::uint32_t>(p[1]) << 8;
        if (width == TokenWidth::U32)
            id |= static_cast<std::uint32_t>(p[2]) << 16 | static_cast<std::uint32_t>(p[3]) << 24;
        if (id > static_cast<std::uint32_t>(largestId(TokenWidth::U32)))
            throw Error(source, "token " + std::to_string(i) + " is " + std::to_string(id) +
                                    ", beyond the largest token id " +
                                    std::to_string(largestId(TokenWidth::U32)));
        ids[i] = static_cast<std::int32_t>(id);
    }
    return ids;
}

void writeTokenFile(const fs::path& path, TokenWidth width, const std::vector<std::int32_t>& ids) {
    const std::string source = path.string();
    if (ids.empty())
        throw Error(source, "no tokens to write; a token file holds at least one token");
    if (ids.size() > kMaxTokens)
        throw Error(source, std::to_string(ids.size()) + " tokens are more than the " +
                                std::to_string(kMaxTokens) + " a token file may hold");
    for (std::size_t i = 0; i < ids.size(); ++i)
        if (ids[i] < 0 || ids[i] > largestId(width))
            throw Error(source, "token " + std::to_string(i) + " is " + std::to_string(ids[i]) +
                                    ", which does not fit a " + extensionOf(width) +
                                    " file (ids 0 to " + std::to_string(largestId(width)) + ")");

    const std::size_t step = bytesPerToken(width);
    AtomicFile file(path);
    std::vector<unsigned char> chunk;
    chunk.reserve(kWriteChunkTokens * step);
    for (std::size_t begin = 0; begin < ids.size(); begin += kWriteChunkTokens) {
        chunk.clear();
        const std::size_t end = std::min(ids.size(), begin + kWriteChunkTokens);
        for (std::size_t i = begin; i < end; ++i) {
            const auto id = static_cast<std::uint32_t>(ids[i]);
            for (std::size_t b = 0; b < step; ++b)
                chunk.push_back(static_cast<unsigned char>(id >> (8 * b)));
        }
        file.write(chunk.data(), chunk.size());
    }
    file.commit();
}

} // namespace quantlens
