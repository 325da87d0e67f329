#include "commands.h"
#include "progress_bar.h"

#include "quantlens/core/error.h"
#include "quantlens/formats/model_loading.h"
#include "quantlens/io/token_file.h"
#include "quantlens/model/token_streams.h"
#include "quantlens/runtime/perplexity.h"

#include <nlohmann/json.hpp>

#include <chrono>
#include <cstdio>
#include <iostream>

namespace {

struct EvalOptions {
    std::string model;
    std::string textFile;
    std::string tokenFile;
    std::string tokenizer;
    std::string protocol = "documents";
    int context = 256;
    bool json = false;
};

void run(const EvalOptions& options) {
    const auto started = std::chrono::steady_clock::now();
    // A quantlens checkpoint runs compressed, through the fused kernels.
    const auto model = quantlens::loadModel(options.model, quantlens::CompressedLayers::Keep);
    const quantlens::PerplexityConfig config{options.context,
                                             quantlens::parsePerplexityProtocol(options.protocol)};
    if (!options.tokenFile.empty())
        quantlens::tokenWidthFromExtension(options.tokenFile); // names bad extensions
    const std::vector<std::int32_t> stream =
        quantlens::readTokenStream(options.tokenFile.empty() ? options.textFile : options.tokenFile,
                                   *model, options.tokenizer, config.protocol);
    const quantlens::Transformer transformer(*model);
    ProgressBar progress;
    const quantlens::JobContext job(
        [&](double fraction, const std::string& stage) { progress.update(fraction, stage); });
    const quantlens::PerplexityResult result =
        quantlens::evaluatePerplexity(transformer, stream, config, job);
    const double seconds =
        std::chrono::duration<double>(std::chrono::steady_clock::now() - started).count();

    if (options.json) {
        std::cout << nlohmann::json{{"model", options.model},
                                    {"protocol", quantlens::protocolName(config.protocol)},
                                    {"ctx", config.context},
                                    {"tokens", result.tokens},
                                    {"scored", result.scoredTokens},
                                    {"windows", result.windows},
                                    {"nll", result.meanNll},
                                    {"ppl", result.perplexity},
                                    {"seconds", seconds}}
                         .dump()
                  << '\n';
        return;
    }
    std::printf("model    %s\n", options.model.c_str());
    std::printf("protocol %s, ctx %d\n",
                std::string(quantlens::protocolName(config.protocol)).c_str(), config.context);
    std::printf("tokens   %lld\n", static_cast<long long>(result.tokens));
    std::printf("scored   %lld in %lld windows\n", static_cast<long long>(result.scoredTokens),
                static_cast<long long>(result.windows));
    std::printf("nll      %.6f\n", result.meanNll);
    std::printf("ppl      %.6f\n", result.perplexity);
    std::printf("seconds  %.2f\n", seconds);
}

} // namespace

Command addEvalCommand(CLI::App& app) {
    auto options = std::make_shared<EvalOptions>();
    CLI::App* sub = app.add_subcommand("eval", "Perplexity of a model on a text or a token file");
    sub->add_option("model", options->model, "HF model directory or llama2.c .bin")->required();
    auto* text = sub->add_option("--text", options->textFile, "Text file (one document per line)")
                     ->check(CLI::ExistingFile);
    auto* tokens = sub->add_option("--tokens", options->tokenFile,
                                   "Pre-tokenised ids (.u16 or .u32), scored as they are")
                       ->check(CLI::ExistingFile);
    text->excludes(tokens);
    sub->add_option("--tokenizer", options->tokenizer,
                    "Tokenizer file (tokenizer.model or tok*.bin)");
    sub->add_option("--ctx", options->context, "Context length of each window")
        ->capture_default_str();
    sub->add_option("--protocol", options->protocol,
                    "documents (per-line windows) or gptq (papers')")
        ->check(CLI::IsMember({"documents", "gptq"}))
        ->capture_default_str();
    sub->add_flag("--json", options->json, "Print one JSON object");
    sub->callback([text, tokens] {
        if (text->count() + tokens->count() != 1) throw CLI::RequiredError("--text or --tokens");
    });
    return {sub, [options] { run(*options); }};
}
