#include "commands.h"

#include "quantlens/formats/model_export.h"

#include <nlohmann/json.hpp>

#include <chrono>
#include <cstdio>
#include <iostream>

namespace {

struct ExportOptions {
    std::string input;
    std::string format;
    std::string out;
    bool json = false;
};

void run(const ExportOptions& options) {
    const auto started = std::chrono::steady_clock::now();
    const quantlens::ExportFormat format = quantlens::parseExportFormat(options.format);
    const quantlens::ExportResult result =
        quantlens::exportModel(options.input, format, options.out, quantlens::JobContext{});
    const double seconds =
        std::chrono::duration<double>(std::chrono::steady_clock::now() - started).count();
    if (options.json) {
        std::cout << nlohmann::json{{"input", options.input},
                                    {"format", options.format},
                                    {"out", options.out},
                                    {"layers", result.layers},
                                    {"bytes", result.fileBytes},
                                    {"gptq_checkpoint_format", result.gptqFormat},
                                    {"seconds", seconds}}
                         .dump()
                  << '\n';
        return;
    }
    std::printf("wrote %s (%s, %lld linear layers, model.safetensors %llu bytes, %.2f s)\n",
                options.out.c_str(), options.format.c_str(), static_cast<long long>(result.layers),
                static_cast<unsigned long long>(result.fileBytes), seconds);
    if (result.gptqFormat == "gptq_v2")
        std::printf("note: some group has zero point 0 next to its largest code, which AutoGPTQ's "
                    "v1 qzeros (zero − 1) cannot hold; wrote checkpoint_format \"gptq_v2\" "
                    "(qzeros hold the zero itself), which GPTQModel reads\n");
}

} // namespace

Command addExportCommand(CLI::App& app) {
    auto options = std::make_shared<ExportOptions>();
    CLI::App* sub = app.add_subcommand(
        "export", "Convert a quantlens checkpoint: re-write it, dequantize it to a dense "
                  "checkpoint, or write the GPTQ layout (rtn/gptq models)");
    sub->add_option("input", options->input, "quantlens checkpoint directory")
        ->required()
        ->check(CLI::ExistingDirectory);
    sub->add_option("--format", options->format,
                    "quantlens, dense-f32, dense-f16, dense-bf16 or gptq")
        ->required()
        ->check(CLI::IsMember({"quantlens", "dense-f32", "dense-f16", "dense-bf16", "gptq"}));
    sub->add_option("--out", options->out, "Output directory (replaced atomically)")->required();
    sub->add_flag("--json", options->json, "Print one JSON object");
    return {sub, [options] { run(*options); }};
}
