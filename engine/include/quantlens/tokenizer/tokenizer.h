#pragma once

#include <cstdint>
#include <filesystem>
#include <memory>
#include <span>
#include <string>
#include <string_view>
#include <vector>

namespace quantlens {

// Text ⇄ token ids. encode() applies the model's own normalisation (the SentencePiece dummy-prefix
// space included) and never adds BOS; callers place BOS as their protocol says.
class Tokenizer {
public:
    virtual ~Tokenizer() = default;
    virtual std::vector<std::int32_t> encode(std::string_view text) const = 0;
    virtual std::string decode(std::span<const std::int32_t> ids) const = 0;
    virtual int vocabSize() const = 0;
};

// Chooses the reader by content: a SentencePiece model proto (`*.model`) or a llama2.c `tok*.bin`.
std::unique_ptr<Tokenizer> loadTokenizer(const std::filesystem::path& path);

std::unique_ptr<Tokenizer> loadSentencePieceTokenizer(const std::filesystem::path& path);
std::unique_ptr<Tokenizer> loadLlama2cTokenizer(const std::filesystem::path& path);

} // namespace quantlens
