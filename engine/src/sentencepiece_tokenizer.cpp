#include "quantlens/error.h"
#include "quantlens/tokenizer.h"

#include <sentencepiece_processor.h>

namespace quantlens {
namespace {

// SentencePiece reads the whole file into memory; real models are a few MB.
constexpr std::uintmax_t kMaxModelBytes = std::uintmax_t{1} << 30;

class SentencePieceTokenizer final : public Tokenizer {
public:
    explicit SentencePieceTokenizer(const std::filesystem::path& path) : source_(path.string()) {
        std::error_code error;
        if (!std::filesystem::exists(path, error)) throw Error(source_, "no such file");
        if (!std::filesystem::is_regular_file(path, error))
            throw Error(source_, "not a regular file");
        const std::uintmax_t size = std::filesystem::file_size(path, error);
        if (error) throw Error(source_, "cannot read its size: " + error.message());
        if (size == 0) throw Error(source_, "empty file: expected a SentencePiece model");
        if (size > kMaxModelBytes)
            throw Error(source_, "is " + std::to_string(size) +
                                     " bytes, larger than any SentencePiece model (limit 1 GiB)");
        if (const auto status = processor_.Load(source_); !status.ok())
            throw Error(source_, "not a valid SentencePiece model: " + status.ToString());
    }

    std::vector<std::int32_t> encode(std::string_view text) const override {
        std::vector<int> ids;
        if (const auto status = processor_.Encode(text, &ids); !status.ok())
            throw Error(source_, "cannot encode text: " + status.ToString());
        return {ids.begin(), ids.end()};
    }

    std::string decode(std::span<const std::int32_t> ids) const override {
        for (const std::int32_t id : ids)
            if (id < 0 || id >= vocabSize())
                throw Error(source_, "cannot decode token id " + std::to_string(id) +
                                         ": the vocabulary has ids 0 to " +
                                         std::to_string(vocabSize() - 1));
        std::string text;
        if (const auto status = processor_.Decode(std::vector<int>(ids.begin(), ids.end()), &text);
            !status.ok())
            throw Error(source_, "cannot decode ids: " + status.ToString());
        return text;
    }

    int vocabSize() const override { return processor_.GetPieceSize(); }

private:
    std::string source_;
    sentencepiece::SentencePieceProcessor processor_;
};

} // namespace

std::unique_ptr<Tokenizer> loadSentencePieceTokenizer(const std::filesystem::path& path) {
    return std::make_unique<SentencePieceTokenizer>(path);
}

} // namespace quantlens
