#include "commands.h"

#include "quantlens/formats/model_loading.h"
#include "quantlens/io/text_file.h"
#include "quantlens/io/token_file.h"
#include "quantlens/model/token_streams.h"
#include "quantlens/runtime/perplexity.h"

#include <cstdio>

namespace {

struct TokenizeOptions {
    std::string model;
    std::string textFile;
    std::string outFile;
    std::string tokenizer;
    std::string protocol = "documents";
};

void run(const TokenizeOptions& options) {
    const auto model = quantlens::loadModel(options.model);
    const auto tokenizer = quantlens::openTokenizer(*model, options.tokenizer);
    const std::vector<std::int32_t> stream =
        quantlens::tokenizeForProtocol(*tokenizer, quantlens::readTextFile(options.textFile),
                                       quantlens::parsePerplexityProtocol(options.protocol),
                                       model->config.bosToken, options.textFile);
    const std::filesystem::path out = options.outFile;
    quantlens::writeTokenFile(out, quantlens::tokenWidthFromExtension(out), stream);
    std::printf("wrote %zu tokens to %s\n", stream.size(), options.outFile.c_str());
}

} // namespace

Command addTokenizeCommand(CLI::App& app) {
    auto options = std::make_shared<TokenizeOptions>();
    CLI::App* sub = app.add_subcommand(
        "tokenize", "Write the token stream a perplexity protocol scores, as a .u16 or .u32 file");
    sub->add_option("model", options->model, "HF model directory or llama2.c .bin")->required();
    sub->add_option("--text", options->textFile, "Text file")->required()->check(CLI::ExistingFile);
    sub->add_option("--out", options->outFile, "Output file ending in .u16 or .u32")->required();
    sub->add_option("--tokenizer", options->tokenizer,
                    "Tokenizer file (tokenizer.model or tok*.bin)");
    sub->add_option("--protocol", options->protocol, "documents or gptq")
        ->check(CLI::IsMember({"documents", "gptq"}))
        ->capture_default_str();
    return {sub, [options](const Session&) { run(*options); }};
}
