#include "quantlens/model/token_streams.h"

#include "quantlens/core/error.h"
#include "quantlens/io/text_file.h"
#include "quantlens/io/token_file.h"

#include <algorithm>

namespace quantlens {
namespace {

// Python's universal newlines, which the reference implementations read text with: CRLF and lone
// CR become LF.
std::string withUnixNewlines(std::string_view text) {
    std::string result;
    result.reserve(text.size());
    for (std::size_t i = 0; i < text.size(); ++i) {
        if (text[i] != '\r') {
            result += text[i];
        } else {
            result += '\n';
            if (i + 1 < text.size() && text[i + 1] == '\n') ++i;
        }
    }
    return result;
}

bool isBlank(std::string_view line) {
    return std::all_of(line.begin(), line.end(),
                       [](unsigned char ch) { return ch == ' ' || (ch >= '\t' && ch <= '\r'); });
}

} // namespace

PerplexityProtocol parsePerplexityProtocol(std::string_view name) {
    if (name == "documents") return PerplexityProtocol::Documents;
    if (name == "gptq") return PerplexityProtocol::Gptq;
    throw Error("", "unknown perplexity protocol '" + std::string(name) +
                        "' (expected \"documents\" or \"gptq\")");
}

std::string_view protocolName(PerplexityProtocol protocol) {
    return protocol == PerplexityProtocol::Documents ? "documents" : "gptq";
}

std::vector<std::int32_t> tokenizeForProtocol(const Tokenizer& tokenizer, std::string_view text,
                                              PerplexityProtocol protocol, int bosToken,
                                              const std::string& source) {
    std::vector<std::int32_t> stream;
    const auto appendDocument = [&](std::string_view document) {
        stream.push_back(bosToken);
        const std::vector<std::int32_t> ids = tokenizer.encode(document);
        stream.insert(stream.end(), ids.begin(), ids.end());
    };
    const std::string unixText = withUnixNewlines(text);
    if (protocol == PerplexityProtocol::Gptq) {
        if (!isBlank(unixText)) appendDocument(unixText);
    } else {
        const std::string_view all = unixText;
        for (std::size_t begin = 0; begin < all.size();) {
            const std::size_t end = std::min(all.find('\n', begin), all.size());
            const std::string_view line = all.substr(begin, end - begin);
            if (!isBlank(line)) appendDocument(line);
            begin = end + 1;
        }
    }
    if (stream.size() < 2) throw Error(source, "no text to evaluate (the file is empty or blank)");
    return stream;
}

std::unique_ptr<Tokenizer> openTokenizer(const Model& model,
                                         const std::filesystem::path& overridePath) {
    const std::filesystem::path& path =
        overridePath.empty() ? model.defaultTokenizer : overridePath;
    if (path.empty())
        throw Error(model.path.string(),
                    "no tokenizer found beside the checkpoint; pass --tokenizer FILE "
                    "(tokenizer.model or a llama2.c tok*.bin)");
    auto tokenizer = loadTokenizer(path);
    if (tokenizer->vocabSize() > model.config.vocabSize)
        throw Error(path.string(), "tokenizer has " + std::to_string(tokenizer->vocabSize()) +
                                       " pieces but the model's vocabulary has " +
                                       std::to_string(model.config.vocabSize));
    return tokenizer;
}

std::vector<std::int32_t> readTokenStream(const std::filesystem::path& path, const Model& model,
                                          const std::filesystem::path& tokenizerOverride,
                                          PerplexityProtocol protocol) {
    const std::string file = path.string();
    if (path.extension() == ".u16" || path.extension() == ".u32") {
        std::vector<std::int32_t> ids = readTokenFile(path, tokenWidthFromExtension(path));
        for (std::size_t i = 0; i < ids.size(); ++i)
            if (ids[i] >= model.config.vocabSize)
                throw Error(file, "token id " + std::to_string(ids[i]) + " at position " +
                                      std::to_string(i) + " is outside the model's vocabulary of " +
                                      std::to_string(model.config.vocabSize));
        return ids;
    }
    const auto tokenizer = openTokenizer(model, tokenizerOverride);
    return tokenizeForProtocol(*tokenizer, readTextFile(path), protocol, model.config.bosToken,
                               file);
}

std::vector<std::vector<std::int32_t>> calibrationSequences(std::span<const std::int32_t> stream,
                                                            const CalibrationConfig& config,
                                                            const ModelConfig& model,
                                                            const std::string& source) {
    const std::size_t length = static_cast<std::size_t>(
        config.sequenceLength > 0 ? config.sequenceLength : std::min(2048, model.maxPositions));
    if (config.sequences <= 0)
        throw Error(source, "the number of calibration sequences must be positive");
    if (length > static_cast<std::size_t>(model.maxPositions))
        throw Error(source, "calibration sequences of " + std::to_string(length) +
                                " tokens exceed the model's " + std::to_string(model.maxPositions) +
                                " positions");
    if (stream.size() < length)
        throw Error(source, "calibration text has " + std::to_string(stream.size()) +
                                " tokens, fewer than one sequence of " + std::to_string(length));
    std::vector<std::vector<std::int32_t>> sequences;
    for (std::size_t begin = 0;
         begin + length <= stream.size() && sequences.size() < std::size_t(config.sequences);
         begin += length) {
        sequences.emplace_back(stream.begin() + static_cast<std::ptrdiff_t>(begin),
                               stream.begin() + static_cast<std::ptrdiff_t>(begin + length));
        for (std::int32_t id : sequences.back())
            if (id < 0 || id >= model.vocabSize)
                throw Error(source, "calibration token id " + std::to_string(id) +
                                        " is outside the vocabulary");
    }
    return sequences;
}

} // namespace quantlens
