#include "commands.h"

#include "quantlens/formats/model_loading.h"
#include "quantlens/model/token_streams.h"
#include "quantlens/runtime/compressed_kernels.h"
#include "quantlens/runtime/compressed_linear.h"
#include "quantlens/runtime/generate.h"

#include <nlohmann/json.hpp>

#include <chrono>
#include <cstdio>
#include <iostream>

namespace {

struct GenerateOptions {
    std::string model;
    std::string prompt;
    std::string tokenizer;
    int count = 40;
    bool exact = false;
    bool json = false;
};

// What one decoding step reads: every tensor once — a linear layer's compressed arrays where it is
// kept compressed — but of an untied embedding only the token's row.
double bytesPerToken(const quantlens::Model& model) {
    double bytes = 0.0;
    quantlens::forEachModelTensor(
        model,
        [&](const std::string& name, const quantlens::TensorView& tensor) {
            if (name != quantlens::kEmbeddingTensor || model.config.tiedEmbeddings)
                bytes += static_cast<double>(tensor.byteSize());
        },
        [&](int block, int layer) {
            const auto b = static_cast<std::size_t>(block), l = static_cast<std::size_t>(layer);
            const auto& compressed =
                model.compressedLayers.empty() ? nullptr : model.compressedLayers[b][l];
            bytes += compressed
                         ? static_cast<double>(compressed->storedBytes())
                         : static_cast<double>(
                               (model.blocks[b].*quantlens::kLinearLayers[l].weights).byteSize());
        });
    return bytes;
}

// Compressed layers whose one-token products take an int8 kernel with int8 activations; the
// others decode exactly either way (no kernel for their layout, or an exact one that is faster).
int int8Layers(const quantlens::Model& model) {
    int count = 0;
    for (const auto& block : model.compressedLayers)
        for (const auto& layer : block)
            count += layer && quantlens::int8ActivationsApply(layer->matrix()) ? 1 : 0;
    return count;
}

void run(const GenerateOptions& options, const Session& session) {
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
    quantlens::Transformer transformer(*model);
    transformer.setDecodeActivations(options.exact ? quantlens::Activations::Exact
                                                   : quantlens::Activations::Int8);
    // Decoding speed from the first new token on (the prompt's pass is not decoding).
    using Clock = std::chrono::steady_clock;
    Clock::time_point first, last;
    int decoded = 0;
    const std::vector<std::int32_t> generated = quantlens::generateGreedy(
        transformer, prompt, options.count,
        [&](std::int32_t token) {
            (decoded++ == 0 ? first : last) = Clock::now();
            textIds.push_back(token);
            if (!options.json) emit();
        },
        session.job());
    const double seconds = decoded > 1 ? std::chrono::duration<double>(last - first).count() : 0.0;
    const double tokensPerSecond = seconds > 0 ? (decoded - 1) / seconds : 0.0;
    const double bytes = bytesPerToken(*model);
    const int quantized = options.exact ? 0 : int8Layers(*model);
    if (options.json) {
        std::cout << nlohmann::json{{"prompt", options.prompt},
                                    {"activations", options.exact ? "exact" : "int8"},
                                    {"int8_layers", quantized},
                                    {"tokens", generated},
                                    {"text", tokenizer->decode(textIds)},
                                    {"decode_tokens_per_s", tokensPerSecond},
                                    {"bytes_per_token", bytes},
                                    {"decode_gb_per_s", tokensPerSecond * bytes / 1e9}}
                         .dump()
                  << '\n';
    } else {
        std::cout << '\n';
        if (tokensPerSecond > 0)
            std::fprintf(stderr,
                         "%.2f tokens/s decoding, %.1f MB of weights a token: %.2f GB/s; int8 "
                         "activations in %d compressed layers\n",
                         tokensPerSecond, bytes / 1e6, tokensPerSecond * bytes / 1e9, quantized);
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
    sub->add_flag("--exact", options->exact,
                  "Decode compressed layers with exact fp32 activations (the dense "
                  "reconstruction's tokens), not int8 ones (faster; docs/FORMAT.md)");
    sub->add_flag("--json", options->json, "Print one JSON object");
    return {sub, [options](const Session& session) { run(*options, session); }};
}
