#pragma once

#include <cstdint>
#include <filesystem>
#include <string>
#include <vector>

namespace quantlens {

// What kind of piece a token is, numbered as SentencePiece's ModelProto and llama.cpp's
// tokenizer.ggml.token_type number them.
enum class TokenKind : std::int32_t {
    Normal = 1,
    Unknown = 2,
    Control = 3,
    UserDefined = 4,
    Unused = 5,
    Byte = 6,
};

// A SentencePiece model's vocabulary as runtimes that re-implement its tokenizer need it (GGUF's
// tokenizer.ggml.*): every piece as stored (spaces spelled U+2581), its score and kind, and the
// special ids (−1 where the model has none).
struct SentencePieceVocabulary {
    std::vector<std::string> pieces;
    std::vector<float> scores;
    std::vector<TokenKind> kinds;
    int unknownId = -1;
    int bosId = -1;
    int eosId = -1;
    int padId = -1;
};

// Reads `model` (a tokenizer.model), validated as loadSentencePieceTokenizer validates it; errors
// name the file.
SentencePieceVocabulary readSentencePieceVocabulary(const std::filesystem::path& model);

} // namespace quantlens
