#include "quantlens/core/error.h"
#include "quantlens/io/mapped_file.h"
#include "quantlens/tokenizer/tokenizer.h"

#include <sentencepiece_processor.h>

#include <optional>
#include <string_view>

namespace quantlens {
namespace {

// SentencePiece reads the whole file into memory; real models are a few MB.
constexpr std::uintmax_t kMaxModelBytes = std::uintmax_t{1} << 30;

// Protocol-buffer wire format, just enough to reach the pieces of a ModelProto.
bool readVarint(std::string_view data, std::size_t& pos, std::uint64_t& value) {
    value = 0;
    for (int shift = 0; shift < 64 && pos < data.size(); shift += 7) {
        const auto byte = static_cast<unsigned char>(data[pos++]);
        value |= std::uint64_t{byte & 0x7fu} << shift;
        if (!(byte & 0x80u)) return true;
    }
    return false;
}

// Calls onField(number, bytes) for each length-delimited field of a message; false when the
// message is not well formed.
template <typename OnField> bool forEachBytesField(std::string_view message, OnField onField) {
    for (std::size_t pos = 0; pos < message.size();) {
        std::uint64_t key = 0, value = 0;
        if (!readVarint(message, pos, key)) return false;
        switch (key & 7) {
        case 0:
            if (!readVarint(message, pos, value)) return false;
            break;
        case 1:
            pos += 8;
            break;
        case 5:
            pos += 4;
            break;
        case 2:
            if (!readVarint(message, pos, value) || value > message.size() - pos) return false;
            onField(key >> 3, message.substr(pos, value));
            pos += value;
            break;
        default:
            return false; // groups: not in a ModelProto
        }
        if (pos > message.size()) return false;
    }
    return true;
}

// The index of the first piece holding a NUL byte. SentencePiece indexes pieces as C strings
// and aborts the process on one (an exception it cannot pass through its own frames), so such a
// model must be refused before it is loaded. Malformed bytes are left to SentencePiece, which
// reports them.
std::optional<std::size_t> pieceWithNul(std::string_view model) {
    std::optional<std::size_t> found;
    std::size_t index = 0;
    forEachBytesField(model, [&](std::uint64_t field, std::string_view piece) {
        if (field != 1) return; // ModelProto.pieces
        forEachBytesField(piece, [&](std::uint64_t pieceField, std::string_view text) {
            if (pieceField == 1 && !found && text.find('\0') != std::string_view::npos)
                found = index; // SentencePiece.piece
        });
        ++index;
    });
    return found;
}

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
        const MappedFile file(path);
        const std::string_view bytes(reinterpret_cast<const char*>(file.bytes().data()),
                                     file.bytes().size());
        if (const auto piece = pieceWithNul(bytes))
            throw Error(source_, "not a valid SentencePiece model: piece " +
                                     std::to_string(*piece) + " contains a NUL byte");
        if (const auto status = processor_.LoadFromSerializedProto(bytes); !status.ok())
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
