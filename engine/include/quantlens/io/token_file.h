#pragma once

#include <cstdint>
#include <filesystem>
#include <vector>

namespace quantlens {

// Pre-tokenised id streams: a flat little-endian array of uint16 or uint32 ids, no header. The
// stream is scored as it is (BOS tokens included), so any model can be evaluated without its
// tokenizer.
enum class TokenWidth { U16 = 2, U32 = 4 };

// Width from the extension: `.u16` or `.u32`; throws for anything else.
TokenWidth tokenWidthFromExtension(const std::filesystem::path& path);

std::vector<std::int32_t> readTokenFile(const std::filesystem::path& path, TokenWidth width);
void writeTokenFile(const std::filesystem::path& path, TokenWidth width,
                    const std::vector<std::int32_t>& ids);

} // namespace quantlens
