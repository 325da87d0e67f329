#include "commands.h"
#include "progress_bar.h"
#include "quant_settings.h"

#include "quantlens/core/error.h"
#include "quantlens/formats/model_export.h"
#include "quantlens/formats/model_loading.h"
#include "quantlens/model/token_streams.h"
#include "quantlens/quantization/bit_budget.h"
#include "quantlens/quantization/model_quantizer.h"

#include <nlohmann/json.hpp>

#include <chrono>
#include <cstdio>
#include <iostream>
#include <map>
#include <optional>
#include <span>

namespace {

struct QuantizeOptions {
    std::string model;
    std::string method;
    std::string calibration;
    std::string out;
    std::string tokenizer;
    std::string dtype = "F32";
    std::string format = "dense";
    quantlens::CalibrationConfig calibrationConfig;
    bool json = false;
    bool resume = false;
    double targetBits = 0.0; // 0: one setting for every layer
    std::string budgetGrid;
};

nlohmann::json layerJson(const quantlens::LayerReport& layer) {
    return {{"block", layer.block},
            {"layer", layer.name},
            {"rows", layer.rows},
            {"cols", layer.cols},
            {"bytes", layer.storedBytes},
            {"bits_per_param", layer.bitsPerParameter},
            {"paper_bits_per_param", layer.paperBitsPerParameter},
            {"outliers", layer.outliers},
            {"relative_output_error", layer.relativeOutputError},
            {"settings", quantlens::describe(layer.config)}};
}

// The plan to quantize with: the settings given, or with --target-bits the allocation of a
// measurement over the budget's candidates (the first part of the job).
struct ChosenPlan {
    quantlens::QuantPlan plan;
    std::optional<quantlens::BitAllocation> allocation;
};

ChosenPlan choosePlan(const QuantizeOptions& options, const QuantSettings& settings,
                      const quantlens::Model& model, std::span<const std::int32_t> calibration,
                      const quantlens::JobContext& job) {
    const quantlens::QuantConfig method = makeQuantConfig(options.method, settings);
    if (options.targetBits == 0.0) return {method, std::nullopt};
    if (calibration.empty())
        throw quantlens::Error(options.model, "--target-bits measures the layers on calibration "
                                              "text: give --calib");
    const std::vector<quantlens::QuantConfig> candidates =
        budgetCandidatesFor(options.method, settings, options.budgetGrid);
    const quantlens::BudgetMeasurement measured = quantlens::measureLayerCurves(
        model, calibration, options.calibrationConfig, method, candidates, job);
    quantlens::BitAllocation allocation = quantlens::allocateBits(measured, options.targetBits);
    return {allocation.plan, std::move(allocation)};
}

// The engine's format for --format and --dtype.
quantlens::ExportFormat outputFormat(const QuantizeOptions& options) {
    if (options.format != "dense") return quantlens::parseExportFormat(options.format);
    return options.dtype == "F16"    ? quantlens::ExportFormat::DenseF16
           : options.dtype == "BF16" ? quantlens::ExportFormat::DenseBf16
                                     : quantlens::ExportFormat::DenseF32;
}

// For the summary line.
std::string outputDescription(const QuantizeOptions& options) {
    if (options.format == "quantlens")
        return "quantlens, runs compressed with `quantlens-cli eval`";
    if (options.format == "gptq") return "gptq, loads in AutoGPTQ and transformers";
    if (options.format == "hf-spqr") return "hf-spqr, loads in transformers with spqr_quant";
    return "dense " + options.dtype + ", loads with `quantlens-cli eval`";
}

void run(const QuantizeOptions& options, const QuantSettings& settings, const Session& session) {
    const auto started = std::chrono::steady_clock::now();
    const auto model = quantlens::loadModel(options.model);
    const std::vector<std::int32_t> calibration =
        options.calibration.empty()
            ? std::vector<std::int32_t>{}
            : quantlens::readTokenStream(options.calibration, *model, options.tokenizer,
                                         quantlens::PerplexityProtocol::Documents);

    ProgressBar progress;
    const quantlens::JobContext job = session.job(
        [&](double fraction, const std::string& stage) { progress.update(fraction, stage); });
    // Measuring costs about one quantization per candidate: most of a budget run.
    const double measuredShare = options.targetBits == 0.0 ? 0.0 : 0.8;
    const ChosenPlan chosen = choosePlan(options, settings, *model, calibration,
                                         quantlens::JobContext(job, 0.0, measuredShare));
    const quantlens::QuantConfig& method = chosen.plan.method();
    std::map<std::string, std::string> metadata{{"quantlens.method", quantlens::describe(method)},
                                                {"quantlens.source", options.model}};
    if (chosen.allocation)
        metadata["quantlens.target_bits"] = std::to_string(chosen.allocation->targetBits);
    const quantlens::QuantizeResult result = quantlens::quantizeToDirectory(
        *model, calibration, chosen.plan, options.calibrationConfig, outputFormat(options),
        options.out, metadata, quantlens::JobContext(job, measuredShare, 1.0),
        options.resume ? quantlens::Interruption::Resume : quantlens::Interruption::Restart);
    const double seconds =
        std::chrono::duration<double>(std::chrono::steady_clock::now() - started).count();

    if (options.json) {
        nlohmann::json layers = nlohmann::json::array();
        for (const auto& layer : result.layers)
            layers.push_back(layerJson(layer));
        nlohmann::json out{{"method", quantlens::methodName(method)},
                           {"settings", quantlens::describe(method)},
                           {"bits_per_param", result.bitsPerParameter},
                           {"paper_bits_per_param", result.paperBitsPerParameter},
                           {"outlier_fraction", result.outlierFraction},
                           {"parameters", result.parameters},
                           {"stored_bytes", result.storedBytes},
                           {"seconds", seconds},
                           {"out", options.out},
                           {"layers", layers}};
        if (chosen.allocation) {
            out["target_bits"] = chosen.allocation->targetBits;
            out["planned_paper_bits_per_param"] = chosen.allocation->paperBits;
            out["predicted_loss"] = chosen.allocation->predictedLoss;
        }
        std::cout << out.dump() << '\n';
        return;
    }
    std::printf("%-5s %-10s %11s %8s %8s %9s %12s%s\n", "block", "layer", "shape", "bits", "paper",
                "outliers", "rel. error", chosen.allocation ? "  settings" : "");
    for (const auto& l : result.layers)
        std::printf("%-5d %-10s %5dx%-5d %8.4f %8.4f %9lld %12.3e%s\n", l.block, l.name.c_str(),
                    l.rows, l.cols, l.bitsPerParameter, l.paperBitsPerParameter,
                    static_cast<long long>(l.outliers), l.relativeOutputError,
                    chosen.allocation ? ("  " + quantlens::describe(l.config)).c_str() : "");
    std::printf("\nmethod               %s\n", quantlens::describe(method).c_str());
    if (chosen.allocation)
        std::printf("target_bits          %.4f (planned %.4f, predicted loss %.4g nats/token)\n",
                    chosen.allocation->targetBits, chosen.allocation->paperBits,
                    chosen.allocation->predictedLoss);
    std::printf("bits_per_param       %.4f (stored bytes of %lld linear-layer parameters)\n",
                result.bitsPerParameter, static_cast<long long>(result.parameters));
    std::printf("paper_bits_per_param %.4f\n", result.paperBitsPerParameter);
    std::printf("outlier_fraction     %.6f\n", result.outlierFraction);
    std::printf("seconds              %.2f\n", seconds);
    std::printf("wrote                %s (%s)\n", options.out.c_str(),
                outputDescription(options).c_str());
}

} // namespace

Command addQuantizeCommand(CLI::App& app) {
    auto options = std::make_shared<QuantizeOptions>();
    CLI::App* sub = app.add_subcommand(
        "quantize", "Quantize a model's linear layers (RTN, GPTQ, SpQR, SqueezeLLM)");
    sub->add_option("model", options->model, "HF model directory or llama2.c .bin")->required();
    sub->add_option("--method", options->method, "rtn, gptq, spqr or squeezellm")
        ->required()
        ->check(CLI::IsMember({"rtn", "gptq", "spqr", "squeezellm"}));
    sub->add_option("--calib", options->calibration,
                    "Calibration text (one document per line) or token file (.u16/.u32)")
        ->check(CLI::ExistingFile);
    sub->add_option("--out", options->out, "Output directory (appears whole or not at all)")
        ->required();
    sub->add_option("--nsamples", options->calibrationConfig.sequences, "Calibration sequences")
        ->capture_default_str();
    sub->add_option("--seqlen", options->calibrationConfig.sequenceLength,
                    "Tokens per calibration sequence (0: min(2048, model context))")
        ->capture_default_str();
    sub->add_option("--format", options->format,
                    "dense (dequantized weights in --dtype), quantlens (compressed), gptq "
                    "(AutoGPTQ layout; rtn and gptq) or hf-spqr (transformers; spqr w3 β1=β2=16)")
        ->check(CLI::IsMember({"dense", "quantlens", "gptq", "hf-spqr"}))
        ->capture_default_str();
    sub->add_option("--dtype", options->dtype, "Output dtype")
        ->check(CLI::IsMember({"F32", "F16", "BF16"}))
        ->capture_default_str();
    sub->add_option("--tokenizer", options->tokenizer,
                    "Tokenizer file (tokenizer.model or tok*.bin)");
    sub->add_flag("--json", options->json, "Print one JSON object");
    sub->add_flag("--resume", options->resume,
                  "Keep a journal beside --out (OUT.resume) after every block and continue an "
                  "interrupted run of the same quantization from it");
    sub->add_option("--target-bits", options->targetBits,
                    "Choose each layer's settings to minimise the predicted loss with at most "
                    "this many paper bits per parameter in all (needs --calib)")
        ->check(CLI::PositiveNumber);
    sub->add_option("--budget-grid", options->budgetGrid,
                    "The settings --target-bits chooses from, e.g. wbits=2,3,4:groupsize=32,128 "
                    "(default: the method's own grid, docs/DESIGN.md)");
    auto flags = std::make_shared<QuantSettingFlags>(*sub);
    return {sub,
            [options, flags](const Session& session) { run(*options, flags->collect(), session); }};
}
