#include "commands.h"
#include "progress_bar.h"

#include "quantlens/model/synthetic_model.h"

#include <chrono>
#include <cstdio>
#include <optional>

namespace {

struct SynthOptions {
    std::string preset;
    std::string architecture = "llama";
    std::optional<int> layers;
    std::string dtype = "F16";
    std::uint64_t seed = 1;
    std::string out;
};

void run(const SynthOptions& options) {
    const auto started = std::chrono::steady_clock::now();
    quantlens::SyntheticModelSpec spec = quantlens::syntheticModelPreset(options.preset);
    if (options.layers) spec.layers = *options.layers;
    spec.architecture = options.architecture == "mistral" ? quantlens::Architecture::Mistral
                        : options.architecture == "qwen2" ? quantlens::Architecture::Qwen2
                        : options.architecture == "qwen3" ? quantlens::Architecture::Qwen3
                                                          : quantlens::Architecture::Llama;
    spec.dtype = options.dtype;
    spec.seed = options.seed;
    {
        ProgressBar progress;
        const quantlens::JobContext job(
            [&](double fraction, const std::string& stage) { progress.update(fraction, stage); });
        quantlens::writeSyntheticModel(spec, options.out, job);
    }
    const double seconds =
        std::chrono::duration<double>(std::chrono::steady_clock::now() - started).count();
    const std::filesystem::path weights = std::filesystem::path(options.out) / "model.safetensors";
    std::printf("wrote %s: %s, %d layers, dim %d, ffn %d, vocab %d, %s, seed %llu\n",
                options.out.c_str(), quantlens::architectureName(spec.architecture).c_str(),
                spec.layers, spec.hiddenSize, spec.intermediateSize, spec.vocab, spec.dtype.c_str(),
                static_cast<unsigned long long>(spec.seed));
    std::printf("bytes    %llu\n",
                static_cast<unsigned long long>(std::filesystem::file_size(weights)));
    std::printf("seconds  %.2f\n", seconds);
}

} // namespace

Command addSynthCommand(CLI::App& app) {
    auto options = std::make_shared<SynthOptions>();
    CLI::App* sub = app.add_subcommand(
        "synth", "Write a seeded synthetic LLaMA checkpoint (for speed and memory benchmarks)");
    sub->add_option("--preset", options->preset, "Shape: 7b (LLaMA-7B) or tiny")
        ->required()
        ->check(CLI::IsMember({"7b", "tiny"}));
    sub->add_option("--arch", options->architecture,
                    "Class: llama, mistral (window 4096), qwen2 (q/k/v biases) or qwen3 (q/k "
                    "norms)")
        ->check(CLI::IsMember({"llama", "mistral", "qwen2", "qwen3"}))
        ->capture_default_str();
    sub->add_option("--layers", options->layers, "Number of blocks (default: the preset's)")
        ->check(CLI::PositiveNumber);
    sub->add_option("--dtype", options->dtype, "Stored dtype")
        ->check(CLI::IsMember({"F16", "BF16", "F32"}))
        ->capture_default_str();
    sub->add_option("--seed", options->seed, "Random seed; the same seed gives the same bytes")
        ->capture_default_str();
    sub->add_option("--out", options->out, "Output model directory (created)")->required();
    return {sub, [options](const Session&) { run(*options); }};
}
