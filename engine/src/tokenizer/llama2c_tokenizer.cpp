#include "quantlens/core/error.h"
#include "quantlens/io/mapped_file.h"
#include "quantlens/tokenizer/tokenizer.h"

#include <cmath>
#include <cstring>
#include <limits>
#include <queue>
#include <unordered_map>

namespace quantlens {
namespace {

// llama2.c's conventions (run.c): ids 0..2 are <unk>, <s>, </s>, and the 256 byte-fallback pieces
// "<0x00>".."<0xFF>" follow them, so byte b is id b + 3.
constexpr std::int32_t kUnknownId = 0;
constexpr std::int32_t kBosId = 1;
constexpr std::int32_t kEosId = 2;
constexpr std::int32_t kFirstByteId = 3;
// SentencePiece's default surface for <unk>: " ⁇ ".
constexpr std::string_view kUnknownSurface = " \xE2\x81\x87 ";
constexpr std::uint32_t kNone = std::numeric_limits<std::uint32_t>::max();

std::string bytePiece(int byte) {
    static constexpr char kHex[] = "0123456789ABCDEF";
    return std::string("<0x") + kHex[byte >> 4] + kHex[byte & 15] + ">";
}

class Llama2cTokenizer final : public Tokenizer {
public:
    Llama2cTokenizer(std::string source, std::vector<std::string> pieces, std::vector<float> scores)
        : source_(std::move(source)), pieces_(std::move(pieces)), scores_(std::move(scores)) {
        hasByteTokens_ = pieces_.size() >= static_cast<std::size_t>(kFirstByteId + 256);
        for (int b = 0; hasByteTokens_ && b < 256; ++b)
            hasByteTokens_ = pieces_[kFirstByteId + b] == bytePiece(b);
        // Only normal pieces take part in matching, as in SentencePiece: control and byte pieces
        // are never produced from text. A duplicated piece resolves to its lowest id.
        const std::int32_t firstNormal = hasByteTokens_ ? kFirstByteId + 256 : kFirstByteId;
        for (std::int32_t id = firstNormal; id < vocabSize(); ++id) {
            ids_.emplace(pieces_[id], id);
            maxPieceLength_ = std::max(maxPieceLength_, pieces_[id].size());
        }
    }
    // ids_ views the strings in pieces_, so a copy would dangle.
    Llama2cTokenizer(const Llama2cTokenizer&) = delete;
    Llama2cTokenizer& operator=(const Llama2cTokenizer&) = delete;

    std::vector<std::int32_t> encode(std::string_view text) const override;
    std::string decode(std::span<const std::int32_t> ids) const override;
    int vocabSize() const override { return static_cast<int>(pieces_.size()); }

private:
    struct Symbol {
        std::uint32_t begin, end; // byte range in the normalised text
        std::uint32_t prev, next; // neighbours in the list; kNone at the ends or once merged away
        std::int32_t id;
        bool mergeable; // false for byte-fallback symbols, which SentencePiece never merges
    };
    struct Candidate {
        float score;
        std::uint32_t left, right, length;
        std::int32_t id;
    };

    std::int32_t lookup(std::string_view piece) const {
        if (piece.size() > maxPieceLength_) return -1;
        const auto found = ids_.find(piece);
        return found == ids_.end() ? -1 : found->second;
    }

    std::string source_;
    std::vector<std::string> pieces_; // pieces spell SentencePiece's U+2581 as a plain space
    std::vector<float> scores_;
    std::unordered_map<std::string_view, std::int32_t> ids_; // views into pieces_
    std::size_t maxPieceLength_ = 0;
    bool hasByteTokens_ = false;
};

// SentencePiece BPE as llama2.c's run.c `encode` does it: a dummy-prefix space, one symbol per
// UTF-8 character (byte fallback for characters not in the vocabulary), then repeatedly merge the
// adjacent pair whose concatenation is the highest-scoring piece, leftmost on ties. run.c rescans
// the whole sequence per merge (O(n²)); a max-heap of candidate pairs over a linked list of
// symbols, with stale entries skipped when popped, gives the same merges in O(n log n).
std::vector<std::int32_t> Llama2cTokenizer::encode(std::string_view text) const {
    if (text.empty()) return {};
    if (text.size() >= kNone - 1)
        throw Error(source_, "cannot encode " + std::to_string(text.size()) +
                                 " bytes at once; split the text");
    std::string normalized;
    normalized.reserve(text.size() + 1);
    normalized += ' ';
    normalized += text;
    const std::string_view view = normalized;
    const auto size = static_cast<std::uint32_t>(view.size());

    std::vector<Symbol> symbols;
    symbols.reserve(size);
    const auto append = [&](std::uint32_t begin, std::uint32_t end, std::int32_t id,
                            bool mergeable) {
        const auto index = static_cast<std::uint32_t>(symbols.size());
        symbols.push_back({begin, end, index == 0 ? kNone : index - 1, kNone, id, mergeable});
        if (index > 0) symbols[index - 1].next = index;
    };
    for (std::uint32_t i = 0; i < size;) {
        // A character is a byte and the continuation bytes after it, at most 4 (as run.c groups).
        std::uint32_t length = 1;
        while (length < 4 && i + length < size &&
               (static_cast<unsigned char>(view[i + length]) & 0xC0) == 0x80)
            ++length;
        if (const std::int32_t id = lookup(view.substr(i, length)); id >= 0)
            append(i, i + length, id, true);
        else if (!hasByteTokens_)
            append(i, i + length, kUnknownId, false);
        else
            for (std::uint32_t b = i; b < i + length; ++b)
                append(b, b + 1, kFirstByteId + static_cast<unsigned char>(view[b]), false);
        i += length;
    }

    const auto ranksBelow = [](const Candidate& a, const Candidate& b) {
        return a.score != b.score ? a.score < b.score : a.left > b.left;
    };
    std::priority_queue<Candidate, std::vector<Candidate>, decltype(ranksBelow)> queue(ranksBelow);
    const auto propose = [&](std::uint32_t left) {
        if (left == kNone) return;
        const std::uint32_t right = symbols[left].next;
        if (right == kNone || !symbols[left].mergeable || !symbols[right].mergeable) return;
        const std::uint32_t begin = symbols[left].begin, end = symbols[right].end;
        if (const std::int32_t id = lookup(view.substr(begin, end - begin)); id >= 0)
            queue.push({scores_[id], left, right, end - begin, id});
    };
    for (std::uint32_t i = 0; i + 1 < symbols.size(); ++i)
        propose(i);

    while (!queue.empty()) {
        const Candidate top = queue.top();
        queue.pop();
        Symbol& left = symbols[top.left];
        // Stale when either side has merged since: a merged-away symbol is unlinked, and a symbol
        // that absorbed its right neighbour has grown.
        if (left.next != top.right || symbols[top.right].end - left.begin != top.length) continue;
        Symbol& right = symbols[top.right];
        left.end = right.end;
        left.id = top.id;
        left.next = right.next;
        if (right.next != kNone) symbols[right.next].prev = top.left;
        right.prev = right.next = kNone;
        propose(left.prev);
        propose(top.left);
    }

    std::vector<std::int32_t> ids;
    for (std::uint32_t i = 0; i != kNone; i = symbols[i].next)
        ids.push_back(symbols[i].id);
    return ids;
}

// Matches SentencePiece's decode: control pieces are invisible, <unk> reads " ⁇ ", byte pieces are
// their raw byte, and the dummy-prefix space of the first visible piece is dropped.
std::string Llama2cTokenizer::decode(std::span<const std::int32_t> ids) const {
    std::string text;
    for (const std::int32_t id : ids) {
        if (id < 0 || id >= vocabSize())
            throw Error(source_, "cannot decode token id " + std::to_string(id) +
                                     ": the vocabulary has ids 0 to " +
                                     std::to_string(vocabSize() - 1));
        if (id == kBosId || id == kEosId) continue;
        if (id == kUnknownId) {
            text += kUnknownSurface;
        } else if (hasByteTokens_ && id < kFirstByteId + 256) {
            text += static_cast<char>(id - kFirstByteId);
        } else {
            std::string_view piece = pieces_[id];
            // SentencePiece drops the leading space while nothing visible has been decoded yet.
            if (text.empty() && piece.starts_with(' ')) piece.remove_prefix(1);
            text += piece;
        }
    }
    return text;
}

} // namespace

// Layout (llama2.c `tokenizer.py` export): int32 max_token_length, then per token a float32 score,
// an int32 byte length and the piece's bytes, until the end of the file; the vocabulary size is
// not stored.
std::unique_ptr<Tokenizer> loadLlama2cTokenizer(const std::filesystem::path& path) {
    const std::string source = path.string();
    std::error_code error;
    if (!std::filesystem::exists(path, error)) throw Error(source, "no such file");
    const MappedFile file(path);
    const std::span<const std::byte> bytes = file.bytes();
    if (bytes.empty()) throw Error(source, "empty file: expected a llama2.c tokenizer");
    if (bytes.size() < sizeof(std::int32_t))
        throw Error(source, "truncated: " + std::to_string(bytes.size()) +
                                " bytes is too short for the 4-byte max_token_length header");
    std::int32_t maxTokenLength = 0;
    std::memcpy(&maxTokenLength, bytes.data(), sizeof(maxTokenLength));
    if (maxTokenLength <= 0)
        throw Error(source, "max_token_length is " + std::to_string(maxTokenLength) +
                                "; a llama2.c tokenizer stores a positive length");

    std::vector<std::string> pieces;
    std::vector<float> scores;
    std::size_t offset = sizeof(std::int32_t);
    while (offset < bytes.size()) {
        const std::size_t token = pieces.size();
        const std::size_t remaining = bytes.size() - offset;
        if (remaining < 8)
            throw Error(source, "truncated: token " + std::to_string(token) + " at byte " +
                                    std::to_string(offset) +
                                    " needs 8 bytes for its score and length but the file ends at "
                                    "byte " +
                                    std::to_string(bytes.size()));
        float score = 0;
        std::int32_t length = 0;
        std::memcpy(&score, bytes.data() + offset, sizeof(score));
        std::memcpy(&length, bytes.data() + offset + 4, sizeof(length));
        offset += 8;
        if (!std::isfinite(score))
            throw Error(source, "token " + std::to_string(token) + " has a score that is not a " +
                                    "finite number");
        if (length < 0)
            throw Error(source, "token " + std::to_string(token) + " has a negative length (" +
                                    std::to_string(length) + ")");
        if (length > maxTokenLength)
            throw Error(source, "token " + std::to_string(token) + " has length " +
                                    std::to_string(length) + ", longer than max_token_length " +
                                    std::to_string(maxTokenLength));
        if (static_cast<std::size_t>(length) > bytes.size() - offset)
            throw Error(source, "truncated: token " + std::to_string(token) + " needs " +
                                    std::to_string(length) + " bytes but the file ends at byte " +
                                    std::to_string(bytes.size()));
        pieces.emplace_back(reinterpret_cast<const char*>(bytes.data() + offset),
                            static_cast<std::size_t>(length));
        scores.push_back(score);
        offset += static_cast<std::size_t>(length);
    }
    if (pieces.empty()) throw Error(source, "contains no tokens after its header");
    if (pieces.size() > static_cast<std::size_t>(std::numeric_limits<std::int32_t>::max()))
        throw Error(source, "has more tokens than int32 ids can address");
    return std::make_unique<Llama2cTokenizer>(source, std::move(pieces), std::move(scores));
}

} // namespace quantlens
