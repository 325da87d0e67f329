#include "model_source.h"

#include "quantlens/error.h"

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
