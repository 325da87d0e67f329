// Tokenizers and token files. The llama2.c reader is checked against SentencePiece itself, against
// a literal transcription of llama2.c's O(n²) encoder, and against damaged tok.bin files.
#include "test_data.h"

#include "quantlens/core/error.h"
#include "quantlens/io/text_file.h"
#include "quantlens/io/token_file.h"
#include "quantlens/tokenizer/tokenizer.h"

#include <QTemporaryDir>

#include <cmath>
#include <cstring>
#include <fstream>
#include <limits>
#include <map>
#include <random>

using namespace quantlens;
namespace fs = std::filesystem;

using quantlens::test::readBytes;
using quantlens::test::writeBytes;

namespace {

// The documents of a one-per-line text file: split on '\n', a trailing '\r' dropped, empty lines
// skipped (the excerpt has CRLF line ends).
std::vector<std::string> documents(const std::string& text) {
    std::vector<std::string> lines;
    std::size_t begin = 0;
    while (begin < text.size()) {
        std::size_t end = text.find('\n', begin);
        if (end == std::string::npos) end = text.size();
        std::string line = text.substr(begin, end - begin);
        if (!line.empty() && line.back() == '\r') line.pop_back();
        if (!line.empty()) lines.push_back(std::move(line));
        begin = end + 1;
    }
    return lines;
}

template <typename T> std::string bytesOf(T value) {
    std::string bytes(sizeof(T), '\0');
    std::memcpy(bytes.data(), &value, sizeof(T));
    return bytes;
}

// One llama2.c tok.bin record: float32 score, int32 length, the bytes.
std::string record(float score, const std::string& piece) {
    return bytesOf(score) + bytesOf(static_cast<std::int32_t>(piece.size())) + piece;
}

// The what() of the Error that `action` throws, or "" when it throws none.
template <typename Action> QString errorOf(Action&& action) {
    try {
        action();
    } catch (const Error& e) {
        return QString::fromUtf8(e.what());
    }
    return {};
}

#define QVERIFY_MESSAGE(message, ...)                                                              \
    do {                                                                                           \
        const QString m = (message);                                                               \
        QVERIFY2(!m.isEmpty(), "no quantlens::Error was thrown");                                  \
        for (const char* part : {__VA_ARGS__})                                                     \
            QVERIFY2(m.contains(QString::fromUtf8(part)),                                          \
                     qPrintable(QString("'%1' not in error: %2").arg(part, m)));                   \
    } while (false)

QString idsText(const std::vector<std::int32_t>& ids) {
    QStringList parts;
    for (const std::int32_t id : ids)
        parts << QString::number(id);
    return parts.join(' ');
}

#define QCOMPARE_IDS(actual, expected, what)                                                       \
    QVERIFY2((actual) == (expected),                                                               \
             qPrintable(QString("%1:\n  got      %2\n  expected %3")                               \
                            .arg(what, idsText(actual), idsText(expected))))

// llama2.c run.c's `encode`, transcribed as literally as C++ allows (O(n²) rescans, lookups over
// the whole vocabulary): the independent reference for the heap-based encoder.
class RunCReference {
public:
    explicit RunCReference(const fs::path& tokBin) {
        const std::string bytes = readBytes(tokBin);
        std::size_t offset = 4;
        while (offset + 8 <= bytes.size()) {
            float score;
            std::int32_t length;
            std::memcpy(&score, bytes.data() + offset, 4);
            std::memcpy(&length, bytes.data() + offset + 4, 4);
            offset += 8;
            pieces_.push_back(bytes.substr(offset, static_cast<std::size_t>(length)));
            scores_.push_back(score);
            offset += static_cast<std::size_t>(length);
        }
        for (std::size_t i = 0; i < pieces_.size(); ++i)
            sorted_.emplace(pieces_[i], static_cast<int>(i));
    }

    std::vector<std::int32_t> encode(const std::string& text) const {
        std::vector<std::int32_t> tokens;
        if (!text.empty()) tokens.push_back(lookup(" "));
        std::string buffer;
        for (std::size_t c = 0; c < text.size(); ++c) {
            if ((static_cast<unsigned char>(text[c]) & 0xC0) != 0x80) buffer.clear();
            buffer += text[c];
            if (c + 1 < text.size() && (static_cast<unsigned char>(text[c + 1]) & 0xC0) == 0x80 &&
                buffer.size() < 4)
                continue;
            if (const int id = lookup(buffer); id != -1)
                tokens.push_back(id);
            else
                for (const char byte : buffer)
                    tokens.push_back(static_cast<unsigned char>(byte) + 3);
            buffer.clear();
        }
        while (true) {
            float bestScore = -1e10f;
            int bestId = -1, bestIndex = -1;
            for (std::size_t i = 0; i + 1 < tokens.size(); ++i) {
                const int id = lookup(pieces_[tokens[i]] + pieces_[tokens[i + 1]]);
                if (id != -1 && scores_[id] > bestScore) {
                    bestScore = scores_[id];
                    bestId = id;
                    bestIndex = static_cast<int>(i);
                }
            }
            if (bestIndex == -1) break;
            tokens[bestIndex] = bestId;
            tokens.erase(tokens.begin() + bestIndex + 1);
        }
        return tokens;
    }

private:
    int lookup(const std::string& piece) const {
        const auto found = sorted_.find(piece);
        return found == sorted_.end() ? -1 : found->second;
    }

    std::vector<std::string> pieces_;
    std::vector<float> scores_;
    std::map<std::string, int> sorted_;
};

} // namespace

class TestTokenizers : public QObject {
    Q_OBJECT

    QTemporaryDir temp_;

    fs::path tempPath(const std::string& name) const {
        return fs::path(temp_.path().toStdString()) / name;
    }

    // Loads a tok.bin built from `bytes` and returns the error it throws, checking that the error
    // names the file.
    QString llama2cError(const std::string& name, const std::string& bytes) {
        const fs::path file = tempPath(name);
        writeBytes(file, bytes);
        const QString message = errorOf([&] { loadLlama2cTokenizer(file); });
        if (!message.isEmpty() && !message.contains(QString::fromStdString(file.string())))
            return "error does not name the file: " + message;
        return message;
    }

private slots:
    void initTestCase() { QVERIFY(temp_.isValid()); }

    void llama2cMatchesSentencePieceLineByLine() {
        QUANTLENS_REQUIRE_DATA("text/tinystories-valid-excerpt.txt");
        QUANTLENS_REQUIRE_DATA("stories260K/tok512.bin");
        QUANTLENS_REQUIRE_DATA("stories260K/tok512.model");
        QUANTLENS_REQUIRE_DATA("stories260K-hf/tokenizer.model");
        const auto bin = loadLlama2cTokenizer(test::dataPath("stories260K/tok512.bin"));
        const auto model = loadSentencePieceTokenizer(test::dataPath("stories260K/tok512.model"));
        const auto hf =
            loadSentencePieceTokenizer(test::dataPath("stories260K-hf/tokenizer.model"));
        QCOMPARE(bin->vocabSize(), 512);
        QCOMPARE(model->vocabSize(), 512);
        QCOMPARE(hf->vocabSize(), 512);

        const auto lines =
            documents(readTextFile(test::dataPath("text/tinystories-valid-excerpt.txt")));
        QCOMPARE(lines.size(), std::size_t{10});
        for (std::size_t i = 0; i < lines.size(); ++i) {
            const auto expected = model->encode(lines[i]);
            QVERIFY(expected.size() > 100);
            const QString where = QString("line %1").arg(i + 1);
            QCOMPARE_IDS(bin->encode(lines[i]), expected, where + ", tok512.bin vs tok512.model");
            QCOMPARE_IDS(hf->encode(lines[i]), expected, where + ", hf tokenizer vs tok512.model");
        }
        // Repeated letters make equal-score merges ("ll", "oo", "pp" are pieces), which must go
        // leftmost first; the rest exercise byte fallback and digits.
        for (const std::string text : {"llll", "lllll", "Sheee saw a baaall... Ooooh! Aaapppple",
                                       "tab\there\r\n", "naïve café — ✓ 🦙", "1234567 89"})
            QCOMPARE_IDS(bin->encode(text), model->encode(text), QString::fromStdString(text));
    }

    void llama2cMatchesSentencePieceOnWholeFile() {
        QUANTLENS_REQUIRE_DATA("text/tinystories-valid-excerpt.txt");
        QUANTLENS_REQUIRE_DATA("stories260K/tok512.bin");
        QUANTLENS_REQUIRE_DATA("stories260K/tok512.model");
        const auto bin = loadLlama2cTokenizer(test::dataPath("stories260K/tok512.bin"));
        const auto model = loadSentencePieceTokenizer(test::dataPath("stories260K/tok512.model"));
        // The raw file, CRLF line ends included: '\r' and '\n' go through byte fallback.
        const std::string text = readTextFile(test::dataPath("text/tinystories-valid-excerpt.txt"));
        const auto expected = model->encode(text);
        QCOMPARE_IDS(bin->encode(text), expected, QString("whole excerpt"));
        QCOMPARE(std::count(expected.begin(), expected.end(), 3 + '\n'), 10);
        QCOMPARE(std::count(expected.begin(), expected.end(), 3 + '\r'), 10);
    }

    // Text where SentencePiece's whitespace normalisation (tok512.model removes extra spaces) makes
    // it no reference: PTB lines open with a space, WikiText headings are " = Title = ", and both
    // hold characters that need byte fallback.
    void llama2cMatchesRunCReference() {
        QUANTLENS_REQUIRE_DATA("stories260K/tok512.bin");
        QUANTLENS_REQUIRE_DATA("text/ptb-valid.txt");
        QUANTLENS_REQUIRE_DATA("text/wikitext2-test.txt");
        const fs::path tokBin = test::dataPath("stories260K/tok512.bin");
        const auto bin = loadLlama2cTokenizer(tokBin);
        const RunCReference reference(tokBin);

        std::vector<std::string> texts = {"",
                                          " ",
                                          "  ",
                                          "a",
                                          "\n",
                                          "héllo wörld — ✓ 🦙",
                                          "llll",
                                          "Once upon a time",
                                          "   leading and trailing   "};
        const auto ptb = documents(readTextFile(test::dataPath("text/ptb-valid.txt")));
        texts.insert(texts.end(), ptb.begin(),
                     ptb.begin() + std::min<std::size_t>(200, ptb.size()));
        int wikiLines = 0;
        for (const std::string& line :
             documents(readTextFile(test::dataPath("text/wikitext2-test.txt"))))
            if (line.size() <= 400 && wikiLines++ < 200) texts.push_back(line);
        QCOMPARE(wikiLines > 200, true);

        for (const std::string& text : texts)
            QCOMPARE_IDS(bin->encode(text), reference.encode(text),
                         QString::fromStdString("'" + text + "'"));
        QVERIFY(bin->encode("").empty());
    }

    void decodeInvertsEncode() {
        QUANTLENS_REQUIRE_DATA("text/tinystories-valid-excerpt.txt");
        QUANTLENS_REQUIRE_DATA("stories260K/tok512.bin");
        QUANTLENS_REQUIRE_DATA("stories260K/tok512.model");
        const auto bin = loadLlama2cTokenizer(test::dataPath("stories260K/tok512.bin"));
        const auto model = loadSentencePieceTokenizer(test::dataPath("stories260K/tok512.model"));
        const auto lines =
            documents(readTextFile(test::dataPath("text/tinystories-valid-excerpt.txt")));
        for (const Tokenizer* tokenizer : {bin.get(), model.get()}) {
            for (const std::string& line : lines) {
                std::vector<std::int32_t> ids = tokenizer->encode(line);
                QCOMPARE(tokenizer->decode(ids), line);
                // BOS and EOS are invisible, and the dummy-prefix space after BOS is dropped.
                ids.insert(ids.begin(), 1);
                ids.push_back(2);
                QCOMPARE(tokenizer->decode(ids), line);
            }
            const std::string unicode = "héllo wörld — ✓ 🦙";
            QCOMPARE(tokenizer->decode(tokenizer->encode(unicode)), unicode);
        }
        // The two decoders agree piece by piece (the tok.bin spells U+2581 as a space), including
        // a lone leading space piece, which SentencePiece drops before the next piece's space.
        // Byte pieces above 0x7F are left out: alone they are not UTF-8, which SentencePiece
        // replaces with U+FFFD while the llama2.c decoder keeps the raw byte.
        for (std::int32_t id = 3; id < 512; ++id)
            if (id < 3 + 0x80 || id >= 3 + 256)
                QCOMPARE(bin->decode(std::vector<std::int32_t>{5, id, 410, id}),
                         model->decode(std::vector<std::int32_t>{5, id, 410, id}));
        QCOMPARE(bin->decode(std::vector<std::int32_t>{410, 274}), std::string("T"));
        QCOMPARE(model->decode(std::vector<std::int32_t>{410, 274}), std::string("T"));

        for (const Tokenizer* tokenizer : {bin.get(), model.get()}) {
            QVERIFY_MESSAGE(errorOf([&] {
                                tokenizer->decode(std::vector<std::int32_t>{5, 512});
                            }),
                            "512", "0 to 511");
            QVERIFY_MESSAGE(errorOf([&] { tokenizer->decode(std::vector<std::int32_t>{-1}); }),
                            "-1", "0 to 511");
        }
    }

    void llama2TokenizerAtFullVocabulary() {
        QUANTLENS_REQUIRE_DATA("llama2-tokenizer/tokenizer.model");
        const auto tokenizer =
            loadSentencePieceTokenizer(test::dataPath("llama2-tokenizer/tokenizer.model"));
        QCOMPARE(tokenizer->vocabSize(), 32000);
        // Published Llama 2 ids ("Hello world" is [1, 15043, 3186] with BOS in the HF docs).
        QCOMPARE_IDS(tokenizer->encode("Hello world"), (std::vector<std::int32_t>{15043, 3186}),
                     QString("Hello world"));
        QCOMPARE(tokenizer->decode(std::vector<std::int32_t>{15043}), std::string("Hello"));
        QCOMPARE(tokenizer->decode(std::vector<std::int32_t>{1, 15043, 3186, 2}),
                 std::string("Hello world"));
        // U+1F999 is not a piece: "▁" (29871) then its UTF-8 bytes F0 9F A6 99 as <0xXX>, id b + 3.
        QCOMPARE_IDS(tokenizer->encode("🦙"),
                     (std::vector<std::int32_t>{29871, 0xF0 + 3, 0x9F + 3, 0xA6 + 3, 0x99 + 3}),
                     QString("llama emoji"));
        QVERIFY(tokenizer->encode("").empty());

        QUANTLENS_REQUIRE_DATA("text/tinystories-valid-excerpt.txt");
        const auto lines =
            documents(readTextFile(test::dataPath("text/tinystories-valid-excerpt.txt")));
        for (const std::string& line : lines) {
            const auto ids = tokenizer->encode(line);
            // A 32000-piece vocabulary covers this text in far fewer pieces than it has bytes.
            QVERIFY(ids.size() * 3 < line.size());
            for (const std::int32_t id : ids)
                QVERIFY(id >= 3 && id < 32000);
            QCOMPARE(tokenizer->decode(ids), line);
        }
    }

    void loadTokenizerChoosesByContent() {
        QUANTLENS_REQUIRE_DATA("stories260K/tok512.bin");
        QUANTLENS_REQUIRE_DATA("llama2-tokenizer/tokenizer.model");
        const std::string text = "Lily and Ben went to the park. They saw a big red ball!";
        const auto bin = loadTokenizer(test::dataPath("stories260K/tok512.bin"));
        QCOMPARE(bin->vocabSize(), 512);
        QCOMPARE_IDS(bin->encode(text),
                     loadLlama2cTokenizer(test::dataPath("stories260K/tok512.bin"))->encode(text),
                     QString("loadTokenizer(tok512.bin)"));
        QCOMPARE(loadTokenizer(test::dataPath("llama2-tokenizer/tokenizer.model"))->vocabSize(),
                 32000);

        // A copy under a misleading name still loads by content.
        const fs::path renamed = tempPath("tokenizer.model");
        fs::copy_file(test::dataPath("stories260K/tok512.bin"), renamed,
                      fs::copy_options::overwrite_existing);
        QCOMPARE(loadTokenizer(renamed)->vocabSize(), 512);

        QVERIFY_MESSAGE(errorOf([&] { loadTokenizer(tempPath("absent.model")); }), "absent.model",
                        "no such file");
        const fs::path garbage = tempPath("garbage.model");
        writeBytes(garbage, std::string("\xff\xff\xff\x7f this is not a tokenizer", 28));
        QVERIFY_MESSAGE(errorOf([&] { loadTokenizer(garbage); }), "garbage.model", "neither",
                        "llama2.c", "SentencePiece");
        // Looks like a tok.bin (max_token_length 7) but is cut short: the llama2.c reason is kept.
        const fs::path cut = tempPath("cut.bin");
        writeBytes(cut, readBytes(test::dataPath("stories260K/tok512.bin")).substr(0, 1001));
        QVERIFY_MESSAGE(errorOf([&] { loadTokenizer(cut); }), "cut.bin", "neither", "truncated");
        QVERIFY_MESSAGE(errorOf([&] { loadSentencePieceTokenizer(garbage); }), "garbage.model",
                        "SentencePiece");
        QVERIFY_MESSAGE(errorOf([&] { loadSentencePieceTokenizer(tempPath("absent.model")); }),
                        "absent.model", "no such file");
    }

    // Found by fuzz_tokenizers: a piece "\0e" made SentencePiece's trie builder throw through
    // frames that cannot pass exceptions, aborting the process. Now refused before loading.
    void sentencePiecePieceWithNulFails() {
        const fs::path model = tempPath("nul-piece.model");
        const unsigned char bytes[] = {
            0x0a, 0x0e, 0x0a, 0x05, '<',  'u',  'n',  'k',  '>',  0x15, 0x00, 0x00, 0x00,
            0x00, 0x18, 0x02, 0x0a, 0x0c, 0x0a, 0x03, '1',  'x',  'F',  0x30, 0x3e, 0x15,
            0x00, 0x00, 0x00, 0x65, 0x15, 0x00, 0x00, 0x81, 0x6b, 0x15, 0x00, 0x00, 0x16,
            0xc3, 0x0a, 0x0a, 0x0a, 0x03, 0xe2, 0x96, 0x81, 0x15, 0x00, 0x00, 0x17, 0xc3,
            0x0a, 0x08, 0x0a, 0x01, 0x00, 0x65, 0x00, 0x15, 0x18, 0x00};
        writeBytes(model, std::string(reinterpret_cast<const char*>(bytes), sizeof bytes));
        QVERIFY_MESSAGE(errorOf([&] { loadSentencePieceTokenizer(model); }), "nul-piece.model",
                        "not a valid SentencePiece model: piece 3 contains a NUL byte");
    }

    void hostileTokBinFails() {
        const std::string header = bytesOf<std::int32_t>(5);
        const std::string good = header + record(0, "<unk>") + record(-1, "ab");
        QVERIFY(llama2cError("good.bin", good).isEmpty());
        QCOMPARE(loadLlama2cTokenizer(tempPath("good.bin"))->vocabSize(), 2);

        QVERIFY_MESSAGE(llama2cError("empty.bin", ""), "empty.bin", "empty");
        QVERIFY_MESSAGE(llama2cError("short.bin", "\x04\x00"), "short.bin", "truncated");
        QVERIFY_MESSAGE(llama2cError("header_only.bin", header), "header_only.bin", "no tokens");
        QVERIFY_MESSAGE(llama2cError("mid_record.bin", good + bytesOf(1.0f) + "\x02"),
                        "mid_record.bin", "truncated", "token 2");
        QVERIFY_MESSAGE(llama2cError("negative.bin",
                                     header + bytesOf(0.0f) + bytesOf<std::int32_t>(-5) + "abcd"),
                        "negative.bin", "negative", "-5");
        QVERIFY_MESSAGE(
            llama2cError("past_end.bin", good + bytesOf(0.0f) + bytesOf<std::int32_t>(4) + "xyz"),
            "past_end.bin", "truncated", "token 2 needs 4 bytes");
        QVERIFY_MESSAGE(
            llama2cError("huge_length.bin", bytesOf(std::numeric_limits<std::int32_t>::max()) +
                                                bytesOf(0.0f) +
                                                bytesOf(std::numeric_limits<std::int32_t>::max())),
            "huge_length.bin", "truncated");
        QVERIFY_MESSAGE(llama2cError("too_long.bin", header + record(0, "abcdefgh")),
                        "too_long.bin", "longer than max_token_length");
        QVERIFY_MESSAGE(llama2cError("zero_max.bin", bytesOf<std::int32_t>(0) + record(0, "")),
                        "zero_max.bin", "max_token_length");
        QVERIFY_MESSAGE(
            llama2cError("nan.bin", header + record(std::numeric_limits<float>::quiet_NaN(), "a")),
            "nan.bin", "finite");
    }

    // Every prefix of the real tok512.bin either ends on a record boundary (and loads that many
    // tokens) or is reported as truncated.
    void everyTruncationOfTok512IsReported() {
        QUANTLENS_REQUIRE_DATA("stories260K/tok512.bin");
        const std::string bytes = readBytes(test::dataPath("stories260K/tok512.bin"));
        std::vector<std::size_t> boundaries;
        for (std::size_t offset = 4; offset < bytes.size();) {
            std::int32_t length;
            std::memcpy(&length, bytes.data() + offset + 4, 4);
            offset += 8 + static_cast<std::size_t>(length);
            boundaries.push_back(offset);
        }
        QCOMPARE(boundaries.size(), std::size_t{512});
        QCOMPARE(boundaries.back(), bytes.size());

        // Cut from the end down, one byte at a time, in place.
        const fs::path file = tempPath("tok512_cut.bin");
        writeBytes(file, bytes);
        std::size_t next = boundaries.size();
        for (std::size_t size = bytes.size(); size >= 5; --size) {
            fs::resize_file(file, size);
            if (next > 0 && size == boundaries[next - 1]) {
                std::unique_ptr<Tokenizer> tokenizer;
                const QString message = errorOf([&] { tokenizer = loadLlama2cTokenizer(file); });
                QVERIFY2(message.isEmpty(), qPrintable(message));
                QCOMPARE(tokenizer->vocabSize(), static_cast<int>(next--));
            } else {
                QVERIFY_MESSAGE(errorOf([&] { loadLlama2cTokenizer(file); }), "tok512_cut.bin",
                                "truncated");
            }
        }
        QCOMPARE(next, std::size_t{0});
    }

    // Random byte corruption: loading either fails with an Error or gives a tokenizer that encodes
    // and decodes without crashing.
    void corruptedTok512NeverCrashes() {
        QUANTLENS_REQUIRE_DATA("stories260K/tok512.bin");
        const std::string original = readBytes(test::dataPath("stories260K/tok512.bin"));
        const fs::path file = tempPath("tok512_corrupt.bin");
        std::mt19937 random(20240601);
        int loaded = 0, rejected = 0;
        for (int trial = 0; trial < 400; ++trial) {
            std::string bytes = original;
            for (int flips = 1 + static_cast<int>(random() % 4); flips > 0; --flips)
                bytes[random() % bytes.size()] = static_cast<char>(random());
            writeBytes(file, bytes);
            try {
                const auto tokenizer = loadLlama2cTokenizer(file);
                const auto ids = tokenizer->encode("Once upon a time, a cat sat. 🦙");
                for (const std::int32_t id : ids)
                    QVERIFY(id >= 0 && id < tokenizer->vocabSize());
                tokenizer->decode(ids);
                ++loaded;
            } catch (const Error& e) {
                QVERIFY(QString::fromUtf8(e.what()).contains("tok512_corrupt.bin"));
                ++rejected;
            }
        }
        QVERIFY(loaded > 0);
        QVERIFY(rejected > 0);
    }

    void tokenWidthFromExtensionAcceptsU16AndU32() {
        QCOMPARE(tokenWidthFromExtension("eval/wiki.u16"), TokenWidth::U16);
        QCOMPARE(tokenWidthFromExtension("wiki.u32"), TokenWidth::U32);
        QVERIFY_MESSAGE(errorOf([] { tokenWidthFromExtension("wiki.bin"); }), "wiki.bin", "'.bin'",
                        ".u16", ".u32");
        QVERIFY_MESSAGE(errorOf([] { tokenWidthFromExtension("wiki"); }), "no extension", ".u16");
    }

    void tokenFilesRoundTrip() {
        const std::vector<std::int32_t> small = {1, 0, 258, 65535, 7, 1};
        const fs::path u16 = tempPath("ids.u16");
        writeTokenFile(u16, TokenWidth::U16, small);
        QCOMPARE(readTokenFile(u16, TokenWidth::U16), small);
        // Little-endian uint16, no header.
        QCOMPARE(readBytes(u16),
                 std::string("\x01\x00\x00\x00\x02\x01\xff\xff\x07\x00\x01\x00", 12));

        const std::vector<std::int32_t> large = {1, 70000, std::numeric_limits<std::int32_t>::max(),
                                                 0x01020304};
        const fs::path u32 = tempPath("ids.u32");
        writeTokenFile(u32, TokenWidth::U32, large);
        QCOMPARE(readTokenFile(u32, TokenWidth::U32), large);
        QCOMPARE(readBytes(u32).substr(12), std::string("\x04\x03\x02\x01", 4));

        // Overwriting replaces the file whole.
        writeTokenFile(u32, TokenWidth::U32, {5});
        QCOMPARE(readTokenFile(u32, TokenWidth::U32), std::vector<std::int32_t>{5});

        // The excerpt's stream survives a .u16 round trip (vocab 512 fits).
        QUANTLENS_REQUIRE_DATA("stories260K/tok512.bin");
        const auto tokenizer = loadLlama2cTokenizer(test::dataPath("stories260K/tok512.bin"));
        const auto ids = tokenizer->encode("Once upon a time, there was a little girl named Lily.");
        writeTokenFile(tempPath("story.u16"), TokenWidth::U16, ids);
        QCOMPARE(readTokenFile(tempPath("story.u16"), TokenWidth::U16), ids);
    }

    void badTokenFilesFail() {
        const fs::path odd = tempPath("odd.u16");
        writeBytes(odd, std::string("\x01\x00\x02", 3));
        QVERIFY_MESSAGE(errorOf([&] { readTokenFile(odd, TokenWidth::U16); }), "odd.u16",
                        "not a multiple of 2");
        const fs::path six = tempPath("six.u32");
        writeBytes(six, std::string(6, '\0'));
        QVERIFY_MESSAGE(errorOf([&] { readTokenFile(six, TokenWidth::U32); }), "six.u32",
                        "not a multiple of 4");
        const fs::path empty = tempPath("empty.u16");
        writeBytes(empty, "");
        QVERIFY_MESSAGE(errorOf([&] { readTokenFile(empty, TokenWidth::U16); }), "empty.u16",
                        "contains no tokens");
        QVERIFY_MESSAGE(errorOf([&] { readTokenFile(tempPath("absent.u16"), TokenWidth::U16); }),
                        "absent.u16");
        const fs::path negative = tempPath("negative.u32");
        writeBytes(negative, std::string("\x01\x00\x00\x00\xff\xff\xff\xff", 8));
        QVERIFY_MESSAGE(errorOf([&] { readTokenFile(negative, TokenWidth::U32); }), "negative.u32",
                        "token 1 is 4294967295");

        // Ids that do not fit: an error naming the id, and no file (or temporary) left behind.
        const QDir dir(temp_.path());
        const auto entriesBefore =
            dir.entryList(QDir::AllEntries | QDir::Hidden | QDir::NoDotAndDotDot);
        const fs::path wide = tempPath("wide.u16");
        QVERIFY_MESSAGE(errorOf([&] {
                            writeTokenFile(wide, TokenWidth::U16, {1, 65536});
                        }),
                        "wide.u16", "token 1 is 65536", "0 to 65535");
        QVERIFY_MESSAGE(errorOf([&] { writeTokenFile(wide, TokenWidth::U32, {-3}); }), "wide.u16",
                        "-3");
        QVERIFY_MESSAGE(errorOf([&] { writeTokenFile(wide, TokenWidth::U16, {}); }), "wide.u16",
                        "no tokens");
        QVERIFY(!fs::exists(wide));
        QCOMPARE(dir.entryList(QDir::AllEntries | QDir::Hidden | QDir::NoDotAndDotDot),
                 entriesBefore);

        // An existing file is untouched by a failed write.
        const fs::path kept = tempPath("kept.u16");
        writeTokenFile(kept, TokenWidth::U16, {9, 8});
        QVERIFY(!errorOf([&] { writeTokenFile(kept, TokenWidth::U16, {70000}); }).isEmpty());
        QCOMPARE(readTokenFile(kept, TokenWidth::U16), (std::vector<std::int32_t>{9, 8}));

        QVERIFY_MESSAGE(
            errorOf([&] { writeTokenFile(tempPath("no/such/dir/ids.u16"), TokenWidth::U16, {1}); }),
            "ids.u16", "cannot create");
    }
};

QTEST_GUILESS_MAIN(TestTokenizers)
#include "test_tokenizers.moc"
