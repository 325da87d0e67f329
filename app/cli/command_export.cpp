#include "commands.h"

#include "quantlens/core/error.h"
#include "quantlens/formats/model_export.h"

#include <nlohmann/json.hpp>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <iostream>
#include <map>

namespace {

struct ExportOptions {
    std::string input;
    std::string format;
    std::string out;
    std::string ggufType;
    std::string tokenizer;
    bool json = false;
};

double secondsSince(std::chrono::steady_clock::time_point started) {
    return std::chrono::duration<double>(std::chrono::steady_clock::now() - started).count();
}

// `--format gguf`: one file, exact unless --gguf-type asks for an approximation.
void runGguf(const ExportOptions& options, const Session& session) {
    const auto started = std::chrono::steady_clock::now();
    quantlens::GgufOptions gguf;
    if (!options.ggufType.empty()) gguf.type = quantlens::parseGgufType(options.ggufType);
    gguf.tokenizer = options.tokenizer;
    const quantlens::GgufResult result =
        quantlens::exportGguf(options.input, options.out, gguf, session.job());
    const double seconds = secondsSince(started);
    std::map<std::string, int> types;
    for (const auto& tensor : result.tensors)
        ++types[quantlens::ggufTypeName(tensor.type)];
    if (options.json) {
        nlohmann::json tensors = nlohmann::json::array();
        for (const auto& tensor : result.tensors)
            tensors.push_back({{"name", tensor.name},
                               {"model_tensor", tensor.modelTensor},
                               {"type", quantlens::ggufTypeName(tensor.type)},
                               {"method", tensor.method},
                               {"note", tensor.note},
                               {"elements", tensor.elements},
                               {"max_error", tensor.maxError},
                               {"rms_error", tensor.rmsError}});
        std::cout << nlohmann::json{{"input", options.input},
                                    {"format", "gguf"},
                                    {"gguf_type", gguf.type ? options.ggufType : "exact"},
                                    {"out", options.out},
                                    {"bytes", result.fileBytes},
                                    {"file_type", result.fileType},
                                    {"exact", result.exact()},
                                    {"max_error", result.maxError},
                                    {"rms_error", result.rmsError},
                                    {"tensor_types", types},
                                    {"tensors", tensors},
                                    {"seconds", seconds}}
                         .dump()
                  << '\n';
        return;
    }
    std::string counts;
    for (const auto& [type, count] : types)
        counts += (counts.empty() ? "" : ", ") + std::to_string(count) + " " + type;
    std::printf("wrote %s (gguf %s, %zu tensors: %s; general.file_type %u; %llu bytes, %.2f s)\n",
                options.out.c_str(), gguf.type ? options.ggufType.c_str() : "exact",
                result.tensors.size(), counts.c_str(), result.fileType,
                static_cast<unsigned long long>(result.fileBytes), seconds);
    if (result.exact())
        std::printf("every tensor holds the model's weights exactly\n");
    else
        std::printf("approximation: max |error| %.6g, rms %.6g over all weights\n", result.maxError,
                    result.rmsError);
    for (const auto& tensor : result.tensors)
        if (!tensor.exact() || !tensor.note.empty())
            std::printf("  %-28s %-5s %-11s max %.3g rms %.3g%s%s\n", tensor.name.c_str(),
                        quantlens::ggufTypeName(tensor.type).c_str(), tensor.method.c_str(),
                        tensor.maxError, tensor.rmsError, tensor.note.empty() ? "" : "  ",
                        tensor.note.c_str());
}

nlohmann::json hfSpqrJson(const quantlens::HfSpqrResult& result) {
    nlohmann::json layers = nlohmann::json::array();
    for (const auto& layer : result.layers)
        layers.push_back({{"name", layer.name},
                          {"converted", layer.converted},
                          {"reason", layer.reason},
                          {"rows", layer.rows},
                          {"cols", layer.cols},
                          {"outliers", layer.outliers},
                          {"bytes", layer.exportBytes},
                          {"bits_per_param", layer.bitsPerParameter()},
                          {"source_bytes", layer.sourceBytes},
                          {"max_error", layer.maxError}});
    return {{"converted_layers", result.convertedLayers()},
            {"dense_layers", int(result.layers.size()) - result.convertedLayers()},
            {"dense_parameters", result.denseParameters},
            {"parameters", result.parameters},
            {"bits_per_param", result.bitsPerParameter},
            {"source_bits_per_param", result.sourceBitsPerParameter},
            {"modules_to_not_convert", result.modulesToNotConvert},
            {"layers", layers}};
}

// Which layers transformers' SpQR kernels run, which stay fp16 and why, and what that costs.
void printHfSpqr(const quantlens::HfSpqrResult& result) {
    const int converted = result.convertedLayers();
    const int dense = int(result.layers.size()) - converted;
    double maxError = 0.0;
    for (const auto& layer : result.layers)
        maxError = std::max(maxError, layer.maxError);
    std::printf("transformers' SpQR kernels run %d of %zu linear layers (decoded in fp16 within "
                "%.3g of the checkpoint's weights)",
                converted, result.layers.size(), maxError);
    if (dense == 0) {
        std::printf("\n");
    } else {
        std::printf("; %d stay fp16 in modules_to_not_convert (%.1f%% of the parameters):\n", dense,
                    100.0 * double(result.denseParameters) / double(result.parameters));
        for (const auto& layer : result.layers)
            if (!layer.converted)
                std::printf("  %-36s %s\n", layer.name.c_str(), layer.reason.c_str());
    }
    std::printf("linear layers: %.3f bits per parameter exported, %.3f in the checkpoint\n",
                result.bitsPerParameter, result.sourceBitsPerParameter);
}

void run(const ExportOptions& options, const Session& session) {
    if (options.format == "gguf") return runGguf(options, session);
    if (!options.ggufType.empty() || !options.tokenizer.empty())
        throw quantlens::Error("", "--gguf-type and --tokenizer apply to --format gguf only");
    const auto started = std::chrono::steady_clock::now();
    const quantlens::ExportFormat format = quantlens::parseExportFormat(options.format);
    const quantlens::ExportResult result =
        quantlens::exportModel(options.input, format, options.out, session.job());
    const double seconds = secondsSince(started);
    if (options.json) {
        auto out = nlohmann::json{
            {"input", options.input},    {"format", options.format},
            {"out", options.out},        {"layers", result.layers},
            {"bytes", result.fileBytes}, {"gptq_checkpoint_format", result.gptqFormat},
            {"seconds", seconds}};
        if (result.hfSpqr) out["hf_spqr"] = hfSpqrJson(*result.hfSpqr);
        std::cout << out.dump() << '\n';
        return;
    }
    std::printf("wrote %s (%s, %lld linear layers, model.safetensors %llu bytes, %.2f s)\n",
                options.out.c_str(), options.format.c_str(), static_cast<long long>(result.layers),
                static_cast<unsigned long long>(result.fileBytes), seconds);
    if (result.hfSpqr) printHfSpqr(*result.hfSpqr);
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
                  "checkpoint, write the GPTQ layout (rtn/gptq models), transformers' SpQR "
                  "format (spqr w3 g16 qq3 b2=16 models; see docs/HF_SPQR.md) or a GGUF file "
                  "for llama.cpp (any Llama model; see docs/GGUF.md)");
    sub->add_option("input", options->input,
                    "quantlens checkpoint directory (gguf: also a Hugging Face directory or a "
                    "llama2.c .bin)")
        ->required()
        ->check(CLI::ExistingPath);
    sub->add_option("--format", options->format,
                    "quantlens, dense-f32, dense-f16, dense-bf16, gptq, hf-spqr or gguf")
        ->required()
        ->check(CLI::IsMember(
            {"quantlens", "dense-f32", "dense-f16", "dense-bf16", "gptq", "hf-spqr", "gguf"}));
    sub->add_option("--out", options->out,
                    "Output directory, or for gguf the .gguf file (replaced atomically)")
        ->required();
    sub->add_option("--gguf-type", options->ggufType,
                    "gguf: write every weight as this type, an approximation whose error is "
                    "reported (default: exact, refused when the run's grid is no GGUF block type)")
        ->check(CLI::IsMember({"f32", "f16", "bf16", "q8_0", "q4_1", "q5_1"}));
    sub->add_option("--tokenizer", options->tokenizer,
                    "gguf: the SentencePiece tokenizer.model whose vocabulary the file carries "
                    "(default: the one beside the model)");
    sub->add_flag("--json", options->json, "Print one JSON object");
    return {sub, [options](const Session& session) { run(*options, session); }};
}
