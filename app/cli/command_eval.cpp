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
#include <optional>

namespace {

// Positions are compared token for token, so both models must share one vocabulary.
void requireSameVocabulary(const quantlens::Model& model, const quantlens::Model& base,
                           const std::string& basePath) {
    if (base.config.vocabSize != model.config.vocabSize)
        throw quantlens::Error(
            basePath, "the base has a vocabulary of " + std::to_string(base.config.vocabSize) +
                          " tokens, the model " + std::to_string(model.config.vocabSize));
}

struct EvalOptions {
    std::string model;
    std::string base;
    std::string textFile;
    std::string tokenFile;
    std::string tokenizer;
    std::string protocol = "documents";
    int context = 256;
    bool json = false;
};

void run(const EvalOptions& options, const Session& session) {
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
    // The base (e.g. the unquantized model) runs beside the model on each window, so neither
    // model's logits are ever held for the whole text.
    const auto baseModel =
        options.base.empty()
            ? nullptr
            : quantlens::loadModel(options.base, quantlens::CompressedLayers::Keep);
    if (baseModel) requireSameVocabulary(*model, *baseModel, options.base);
    const std::optional<quantlens::Transformer> base =
        baseModel ? std::optional<quantlens::Transformer>(std::in_place, *baseModel) : std::nullopt;
    ProgressBar progress;
    const quantlens::JobContext job = session.job(
        [&](double fraction, const std::string& stage) { progress.update(fraction, stage); });
    const quantlens::PerplexityResult result =
        quantlens::evaluatePerplexity(transformer, stream, config, job, base ? &*base : nullptr);
    const double seconds =
        std::chrono::duration<double>(std::chrono::steady_clock::now() - started).count();

    if (options.json) {
        nlohmann::json out{{"model", options.model},
                           {"protocol", quantlens::protocolName(config.protocol)},
                           {"ctx", config.context},
                           {"tokens", result.tokens},
                           {"scored", result.scoredTokens},
                           {"windows", result.windows},
                           {"nll", result.meanNll},
                           {"ppl", result.perplexity},
                           {"seconds", seconds}};
        if (result.comparison) {
            out["base"] = options.base;
            for (const quantlens::ComparisonFigure& figure : quantlens::kComparisonFigures)
                out[figure.key] = result.comparison.value().*figure.value;
        }
        std::cout << out.dump() << '\n';
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
    if (result.comparison) {
        const quantlens::BaseComparison& c = *result.comparison;
        std::printf("base     %s (ppl %.6f)\n", options.base.c_str(), c.basePerplexity);
        std::printf("ppl ratio %.6f ± %.6f\n", c.perplexityRatio, c.perplexityRatioError);
        std::printf("KL       mean %.6f, median %.6f, p99 %.6f, max %.6f\n", c.klMean, c.klMedian,
                    c.klP99, c.klMax);
        std::printf("top-1    %.4f%% agree\n", 100.0 * c.top1Agreement);
        std::printf("Δp       mean %+.6f, p1 %+.6f, p99 %+.6f\n", c.deltaPMean, c.deltaPP1,
                    c.deltaPP99);
    }
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
    sub->add_option("--base", options->base,
                    "Base model (e.g. the unquantized one) to compare with: perplexity ratio, KL, "
                    "top-1 agreement and Δp, as llama.cpp's --kl-divergence")
        ->check(CLI::ExistingPath);
    sub->add_flag("--json", options->json, "Print one JSON object");
    sub->callback([text, tokens] {
        if (text->count() + tokens->count() != 1) throw CLI::RequiredError("--text or --tokens");
    });
    return {sub, [options](const Session& session) { run(*options, session); }};
}
