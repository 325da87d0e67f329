#include "calibration_text.h"

#include "test_data.h"

#include "quantlens/io/text_file.h"
#include "quantlens/model/token_streams.h"
#include "quantlens/tokenizer/tokenizer.h"

namespace quantlens::test {

std::vector<std::int32_t> wikitextStream(const Model& model) {
    std::string text = readTextFile(dataPath("text/wikitext2-test.txt"));
    text.resize(text.rfind('\n', 20000));
    const auto tokenizer = loadTokenizer(model.defaultTokenizer);
    return tokenizeForProtocol(*tokenizer, text, PerplexityProtocol::Documents,
                               model.config.bosToken, "wikitext");
}

std::vector<std::int32_t> tinystoriesStream(const Model& model) {
    const auto tokenizer = loadTokenizer(model.defaultTokenizer);
    return tokenizeForProtocol(*tokenizer,
                               readTextFile(dataPath("text/tinystories-valid-excerpt.txt")),
                               PerplexityProtocol::Documents, model.config.bosToken, "excerpt");
}

} // namespace quantlens::test
