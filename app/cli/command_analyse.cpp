#include "commands.h"
#include "progress_bar.h"
#include "quant_settings.h"

#include "quantlens/core/error.h"
#include "quantlens/formats/model_loading.h"
#include "quantlens/formats/model_map_file.h"
#include "quantlens/model/token_streams.h"
#include "quantlens/quantization/model_map.h"

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <iostream>
#include <numeric>

namespace {

struct AnalyseOptions {
    std::string model;
    std::string metric = "obs";
    std::string method = "spqr";
    std::string calibration;
    std::string evaluation;
    std::string tokenizer;
    std::string cache;
    std::string protocol = "documents";
    quantlens::ModelMapRequest request;
    bool json = false;
};

// The map as a table, blocks down and layers across, then the layers that stand out.
void printMap(const quantlens::ModelMap& map) {
    std::printf("%s, %s\n\n",
                std::string(quantlens::mapMetricInfo(map.request.metric).label).c_str(),
                quantlens::describe(map.request.config).c_str());
    std::printf("block");
    for (const quantlens::LinearLayerSpec& layer : quantlens::kLinearLayers)
        std::printf(" %11s", layer.name);
    std::printf("\n");
    for (int b = 0; b < map.blocks; ++b) {
        std::printf("%5d", b);
        for (int l = 0; l < quantlens::kLinearLayerCount; ++l)
            std::printf(" %11.4g", map.at(b, l));
        std::printf("\n");
    }
    std::vector<std::size_t> order(map.values.size());
    std::iota(order.begin(), order.end(), std::size_t{0});
    std::erase_if(order, [&](std::size_t i) { return !std::isfinite(map.values[i]); });
    std::sort(order.begin(), order.end(),
              [&](std::size_t a, std::size_t b) { return map.values[a] > map.values[b]; });
    order.resize(std::min<std::size_t>(order.size(), 5));
    std::printf("\nmost sensitive:");
    for (const std::size_t i : order)
        std::printf("  block %zu %s (%.4g)", i / quantlens::kLinearLayerCount,
                    quantlens::kLinearLayers[i % quantlens::kLinearLayerCount].name, map.values[i]);
    std::printf("\n");
}

void run(AnalyseOptions options, const QuantSettings& settings, const Session& session) {
    const auto metric = quantlens::parseMapMetric(options.metric);
    if (!metric) throw quantlens::Error("--metric", "unknown metric '" + options.metric + "'");
    options.request.metric = *metric;
    options.request.config = makeQuantConfig(options.method, settings);
    options.request.scoring.protocol = quantlens::parsePerplexityProtocol(options.protocol);
    if (options.request.metric == quantlens::MapMetric::SoloKl && options.evaluation.empty())
        throw quantlens::Error("--metric solo-kl", "the KL of each layer alone needs --text");

    const auto model = quantlens::loadModel(options.model);
    const auto calibration = quantlens::readTokenStream(
        options.calibration, *model, options.tokenizer, quantlens::PerplexityProtocol::Documents);
    const auto evaluation =
        options.evaluation.empty()
            ? std::vector<std::int32_t>{}
            : quantlens::readTokenStream(options.evaluation, *model, options.tokenizer,
                                         options.request.scoring.protocol);

    ProgressBar progress;
    const quantlens::JobContext job = session.job(
        [&](double fraction, const std::string& stage) { progress.update(fraction, stage); });
    const quantlens::ModelMap map =
        options.cache.empty()
            ? quantlens::computeModelMap(*model, options.request, calibration, evaluation, job)
            : quantlens::ModelMapCache(options.cache)
                  .mapOf(*model, options.request, calibration, evaluation, job);
    if (options.json)
        std::cout << quantlens::modelMapJson(map) << '\n';
    else
        printMap(map);
}

} // namespace

Command addAnalyseCommand(CLI::App& app) {
    auto options = std::make_shared<AnalyseOptions>();
    CLI::App* sub = app.add_subcommand(
        "analyse", "Whole-model map: one sensitivity or error figure per block and linear layer");
    sub->add_option("model", options->model, "HF model directory or llama2.c .bin")->required();
    std::vector<std::string> metrics;
    std::string help = "What each cell measures:";
    for (const quantlens::MapMetricInfo& info : quantlens::kMapMetrics) {
        metrics.emplace_back(info.key);
        help += " " + std::string(info.key) + " (" + std::string(info.label) + ")";
    }
    sub->add_option("--metric", options->metric, help)
        ->check(CLI::IsMember(metrics))
        ->capture_default_str();
    sub->add_option("--method", options->method,
                    "The quantizer the metric applies: rtn, gptq, spqr or squeezellm")
        ->check(CLI::IsMember({"rtn", "gptq", "spqr", "squeezellm"}))
        ->capture_default_str();
    sub->add_option("--calib", options->calibration,
                    "Calibration text (one document per line) or token file (.u16/.u32)")
        ->required()
        ->check(CLI::ExistingFile);
    sub->add_option("--nsamples", options->request.calibration.sequences, "Calibration sequences")
        ->capture_default_str();
    sub->add_option("--seqlen", options->request.calibration.sequenceLength,
                    "Tokens per calibration sequence (0: min(2048, model context))")
        ->capture_default_str();
    sub->add_option("--text", options->evaluation,
                    "Evaluation text for solo-kl (two forward passes of it per layer)")
        ->check(CLI::ExistingFile);
    sub->add_option("--ctx", options->request.scoring.context, "Context length of each window")
        ->capture_default_str();
    sub->add_option("--protocol", options->protocol,
                    "documents (per-line windows) or gptq (papers')")
        ->check(CLI::IsMember({"documents", "gptq"}))
        ->capture_default_str();
    sub->add_option("--tokenizer", options->tokenizer,
                    "Tokenizer file (tokenizer.model or tok*.bin)");
    sub->add_option("--cache", options->cache,
                    "Directory of computed maps: a map computed before for the same model, "
                    "settings and text is read from it, a new one stored");
    sub->add_flag("--json", options->json, "Print one JSON object");
    auto flags = std::make_shared<QuantSettingFlags>(*sub);
    return {sub,
            [options, flags](const Session& session) { run(*options, flags->collect(), session); }};
}
