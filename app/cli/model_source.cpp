#include "model_source.h"

#include "quantlens/error.h"
#include "quantlens/text_file.h"
#include "quantlens/token_file.h"

std::unique_ptr<quantlens::Tokenizer> openTokenizer(const quantlens::Model& model,
                                                    const std::string& overridePath) {
    const std::filesystem::path path =
        overridePath.empty() ? model.defaultTokenizer : std::filesystem::path(overridePath);
    if (path.empty())
        throw quantlens::Error(model.path.string(),
                               "no tokenizer found beside the checkpoint; pass --tokenizer FILE "
                               "(tokenizer.model or a llama2.c tok*.bin)");
    auto tokenizer = quantlens::loadTokenizer(path);
    if (tokenizer->vocabSize() > model.config.vocabSize)
        throw quantlens::Error(path.string(), "tokenizer has " +
                                                  std::to_string(tokenizer->vocabSize()) +
                                                  " pieces but the model's vocabulary has " +
                                                  std::to_string(model.config.vocabSize));
    return tokenizer;
}

std::vector<std::int32_t> readTokenStream(const std::string& file, const quantlens::Model& model,
                                          const std::string& tokenizerOverride,
                                          quantlens::PerplexityProtocol protocol) {
    const std::filesystem::path path = file;
    if (path.extension() == ".u16" || path.extension() == ".u32") {
        std::vector<std::int32_t> ids =
            quantlens::readTokenFile(path, quantlens::tokenWidthFromExtension(path));
        for (std::size_t i = 0; i < ids.size(); ++i)
            if (ids[i] >= model.config.vocabSize)
                throw quantlens::Error(file, "token id " + std::to_string(ids[i]) +
                                                 " at position " + std::to_string(i) +
                                                 " is outside the model's vocabulary of " +
                                                 std::to_string(model.config.vocabSize));
        return ids;
    }
    const auto tokenizer = openTokenizer(model, tokenizerOverride);
    return quantlens::tokenizeForProtocol(*tokenizer, quantlens::readTextFile(path), protocol,
                                          model.config.bosToken, file);
}
