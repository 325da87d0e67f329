#include "commands.h"

#include "quantlens/formats/model_loading.h"
#include "quantlens/model/token_streams.h"
#include "quantlens/runtime/generate.h"

#include <nlohmann/json.hpp>

#include <iostream>

namespace {

struct GenerateOptions {
    std::string model;
    std::string prompt;
    std::string tokenizer;
    int count = 40;
    bool json = false;
};

void run(const GenerateOptions& options) {
    // A quantlens checkpoint runs compressed, through the fused kernels.
    const auto model = quantlens::loadModel(options.model, quantlens::CompressedLayers::Keep);
    const auto tokenizer = quantlens::openTokenizer(*model, options.tokenizer);
    std::vector<std::int32_t> prompt{model->config.bosToken};
    const std::vector<std::int32_t> promptIds = tokenizer->encode(options.prompt);
    prompt.insert(prompt.end(), promptIds.begin(), promptIds.end());

    // Text is printed as it grows: decode everything so far and write what is new, so multi-byte
    // characters split across tokens come out whole.
    std::vector<std::int32_t> textIds = promptIds;
    std::string printed;
    const auto emit = [&] {
        const std::string text = tokenizer->decode(textIds);
        if (text.size() > printed.size() && text.compare(0, printed.size(), printed) == 0)
            std::cout << text.substr(printed.size()) << std::flush;
        printed = text;
    };
    if (!options.json) emit();
    const quantlens::Transformer transformer(*model);
    const std::vector<std::int32_t> generated = quantlens::generateGreedy(
        transformer, prompt, options.count,
        [&](std::int32_t token) {
            textIds.push_back(token);
            if (!options.json) emit();
        },
        quantlens::JobContext{});
    if (options.json) {
        std::cout << nlohmann::json{{"prompt", options.prompt},
                                    {"tokens", generated},
                                    {"text", tokenizer->decode(textIds)}}
                         .dump()
                  << '\n';
    } else {
        std::cout << '\n';
    }
}

} // namespace

Command addGenerateCommand(CLI::App& app) {
    auto options = std::make_shared<GenerateOptions>();
    CLI::App* sub = app.add_subcommand("generate", "Greedy (temperature 0) text generation");
    sub->add_option("model", options->model, "HF model directory or llama2.c .bin")->required();
    sub->add_option("--prompt", options->prompt, "Text to continue (BOS is added in front)");
    sub->add_option("-n,--tokens", options->count, "New tokens to generate")
        ->check(CLI::PositiveNumber)
        ->capture_default_str();
    sub->add_option("--tokenizer", options->tokenizer,
                    "Tokenizer file (tokenizer.model or tok*.bin)");
    sub->add_flag("--json", options->json, "Print one JSON object");
    return {sub, [options] { run(*options); }};
}
