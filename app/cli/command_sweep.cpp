#include "commands.h"
#include "progress_bar.h"
#include "quant_settings.h"
#include "sweep_csv.h"

#include "quantlens/formats/model_loading.h"
#include "quantlens/model/token_streams.h"
#include "quantlens/quantization/bit_budget.h"
#include "quantlens/quantization/model_quantizer.h"
#include "quantlens/runtime/perplexity.h"

#include <nlohmann/json.hpp>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <iostream>
#include <map>
#include <optional>
#include <sstream>

namespace {

struct SweepOptions {
    std::string model;
    std::string calibration;
    std::string evaluation;
    std::vector<std::string> grid;
    std::string out;
    std::string tokenizer;
    quantlens::CalibrationConfig calibrationConfig;
    int context = 256;
    std::string protocol = "documents";
    std::string shard = "1/1";
    std::vector<double> targetBits;
    bool json = false;
};

// One run of the sweep: a grid combination, or a bit budget over the grid's settings of a method.
struct PlannedRun {
    std::string method;
    QuantSettings settings;
    std::optional<double> targetBits;
};

// The CSV's columns as JSON, null for what was not measured.
nlohmann::json rowJson(const SweepRow& r) {
    nlohmann::json row{{"method", r.method},
                       {"settings", r.settings},
                       {"wbits", r.wbits},
                       {"bits_per_param", r.bitsPerParameter},
                       {"paper_bits_per_param", r.paperBitsPerParameter},
                       {"outlier_fraction", r.outlierFraction},
                       {"ppl", r.perplexity}};
    for (const quantlens::ComparisonFigure& figure : quantlens::kComparisonFigures) {
        const double value = r.comparison.*figure.value;
        row[figure.key] = std::isfinite(value) ? nlohmann::json(value) : nlohmann::json(nullptr);
    }
    row["target_bits"] = r.targetBits ? nlohmann::json(*r.targetBits) : nlohmann::json(nullptr);
    row["seconds"] = r.seconds;
    row["run"] = r.run;
    return row;
}

// A comparison figure for the table: "–" where it was not measured (the baseline).
std::string figure(double value, int decimals) {
    if (!std::isfinite(value)) return "–";
    char text[32];
    std::snprintf(text, sizeof text, "%.*f", decimals, value);
    return text;
}

void run(const SweepOptions& options, const Session& session) {
    const auto [shard, shards] = parseShard(options.shard);
    // The grid in its stable order; this shard runs every shards-th combination from its own,
    // so each part gets a share of every method, and shard 1 also scores the baseline.
    std::vector<PlannedRun> grid;
    for (const std::string& entry : options.grid) {
        std::istringstream words(entry); // entries may also be separated by spaces
        for (std::string spec; words >> spec;)
            for (auto& [method, settings] : expandGrid(spec))
                grid.push_back({method, std::move(settings), std::nullopt});
    }
    // Budget runs follow the grid: per method (in the grid's order) and target, each choosing
    // among that method's grid settings, so it competes with exactly the uniform runs beside it.
    std::vector<std::string> methods;
    for (const PlannedRun& run : grid)
        if (std::find(methods.begin(), methods.end(), run.method) == methods.end())
            methods.push_back(run.method);
    for (const std::string& method : methods)
        for (const double target : options.targetBits)
            grid.push_back({method, {}, target});
    std::vector<std::size_t> runs; // indices into grid
    for (std::size_t i = static_cast<std::size_t>(shard - 1); i < grid.size();
         i += static_cast<std::size_t>(shards))
        runs.push_back(i);
    const auto model = quantlens::loadModel(options.model);
    const quantlens::PerplexityConfig evalConfig{
        options.context, quantlens::parsePerplexityProtocol(options.protocol)};
    const auto calibration = quantlens::readTokenStream(
        options.calibration, *model, options.tokenizer, quantlens::PerplexityProtocol::Documents);
    const auto evaluation = quantlens::readTokenStream(options.evaluation, *model,
                                                       options.tokenizer, evalConfig.protocol);
    const quantlens::Transformer reference(*model);

    ProgressBar progress;
    std::vector<SweepRow> rows;
    const auto started = std::chrono::steady_clock::now();
    const auto finish = [&](SweepRow row, const std::chrono::steady_clock::time_point& since) {
        row.seconds =
            std::chrono::duration<double>(std::chrono::steady_clock::now() - since).count();
        if (!options.json)
            std::printf("%-6s %-46s %8.4f %8.4f %9.6f %10.5f %9s %9s %7s %7.1f\n",
                        row.method.c_str(), row.settings.c_str(), row.bitsPerParameter,
                        row.paperBitsPerParameter, row.outlierFraction, row.perplexity,
                        figure(row.comparison.klMean, 6).c_str(),
                        figure(row.comparison.klP99, 6).c_str(),
                        figure(row.comparison.top1Agreement, 4).c_str(), row.seconds);
        rows.push_back(std::move(row));
        // After every run, so a long sweep keeps what it has done.
        writeFileAtomically(options.out, sweepCsv(rows));
    };
    if (!options.json)
        std::printf("%-6s %-46s %8s %8s %9s %10s %9s %9s %7s %7s\n", "method", "settings", "bits",
                    "paper", "outliers", "ppl", "kl", "kl p99", "top-1", "seconds");

    if (shard == 1) {
        const quantlens::JobContext baselineJob = session.job();
        const quantlens::PerplexityResult baseline =
            quantlens::evaluatePerplexity(reference, evaluation, evalConfig, baselineJob);
        const double storedBits = 8.0 * static_cast<double>(model->storedBytes()) /
                                  static_cast<double>(model->parameterCount());
        finish({"none",
                "unquantized",
                0,
                storedBits,
                storedBits,
                0.0,
                baseline.perplexity,
                {},
                std::nullopt,
                0.0,
                0},
               started);
    }

    // Each method's measurement, made once for all its targets.
    std::map<std::string, quantlens::BudgetMeasurement> measured;
    const auto planFor = [&](const PlannedRun& run, const quantlens::JobContext& job) {
        if (!run.targetBits) return quantlens::QuantPlan(makeQuantConfig(run.method, run.settings));
        auto found = measured.find(run.method);
        if (found == measured.end()) {
            std::vector<quantlens::QuantConfig> candidates;
            for (const PlannedRun& other : grid)
                if (other.method == run.method && !other.targetBits)
                    candidates.push_back(makeQuantConfig(other.method, other.settings));
            found = measured
                        .emplace(run.method, quantlens::measureLayerCurves(
                                                 *model, calibration, options.calibrationConfig,
                                                 candidates.front(), candidates, job))
                        .first;
        }
        return quantlens::allocateBits(found->second, *run.targetBits).plan;
    };

    for (std::size_t i = 0; i < runs.size(); ++i) {
        const auto runStarted = std::chrono::steady_clock::now();
        const PlannedRun& planned = grid[runs[i]];
        const std::string stage =
            "run " + std::to_string(i + 1) + "/" + std::to_string(runs.size());
        // The bar and its time left are for the whole sweep.
        const quantlens::JobContext job = session.job([&](double fraction, const std::string&) {
            progress.update((static_cast<double>(i) + fraction) / static_cast<double>(runs.size()),
                            stage);
        });
        // A budget's measurement (the first of its method's runs only) is most of its work.
        const double planShare = planned.targetBits ? 0.8 : 0.0;
        const quantlens::QuantPlan plan =
            planFor(planned, quantlens::JobContext(job, 0.0, planShare));
        const quantlens::QuantConfig& method = plan.method();
        std::vector<std::array<quantlens::RowMatrix, 7>> layers(model->blocks.size());
        const quantlens::QuantizeResult result = quantlens::quantizeModel(
            *model, calibration, plan, options.calibrationConfig,
            [&](int block, const std::string& name, const quantlens::QuantizedLayer&,
                const quantlens::RowMatrix& weights) {
                for (std::size_t l = 0; l < 7; ++l)
                    if (name == quantlens::kLinearLayers[l].name)
                        layers[static_cast<std::size_t>(block)][l] = weights;
            },
            quantlens::JobContext(job, planShare, 1.0));
        const auto quantized = quantlens::withLinearLayers(*model, std::move(layers));
        const quantlens::PerplexityResult scored = quantlens::evaluatePerplexity(
            quantlens::Transformer(*quantized), evaluation, evalConfig, job, &reference);
        // A budget row's settings say its target; its wbits vary by layer (0).
        const std::string settings =
            planned.targetBits
                ? "budget " + std::to_string(*planned.targetBits).substr(0, 4) + " bits over " +
                      std::to_string(measured.at(planned.method).settings.size()) + " settings"
                : quantlens::describe(method);
        finish({quantlens::methodName(method), settings,
                planned.targetBits ? 0 : quantlens::weightBits(method), result.bitsPerParameter,
                result.paperBitsPerParameter, result.outlierFraction, scored.perplexity,
                *scored.comparison, planned.targetBits, 0.0, static_cast<int>(runs[i]) + 1},
               runStarted);
    }
    if (options.json) {
        nlohmann::json all = nlohmann::json::array();
        for (const SweepRow& r : rows)
            all.push_back(rowJson(r));
        std::cout << all.dump() << '\n';
    } else {
        std::printf("wrote %s (%zu rows)\n", options.out.c_str(), rows.size());
    }
}

} // namespace

Command addSweepCommand(CLI::App& app) {
    auto options = std::make_shared<SweepOptions>();
    CLI::App* sub = app.add_subcommand(
        "sweep",
        "Quantize with a grid of methods and settings; perplexity, KL and bits of each run to CSV");
    sub->add_option("model", options->model, "HF model directory or llama2.c .bin")->required();
    sub->add_option("--calib", options->calibration, "Calibration text or token file (.u16/.u32)")
        ->required()
        ->check(CLI::ExistingFile);
    sub->add_option("--eval", options->evaluation, "Evaluation text or token file (.u16/.u32)")
        ->required()
        ->check(CLI::ExistingFile);
    sub->add_option(
           "--grid", options->grid,
           "Runs: METHOD[:setting=v1,v2…]… e.g. \"rtn:wbits=3,4 gptq:wbits=3,4:groupsize=16 "
           "spqr:outlier-threshold=0.1,0.2\"; every combination is run")
        ->required();
    sub->add_option("--out", options->out, "CSV file, rewritten after every run")->required();
    sub->add_option("--nsamples", options->calibrationConfig.sequences, "Calibration sequences")
        ->capture_default_str();
    sub->add_option("--seqlen", options->calibrationConfig.sequenceLength,
                    "Tokens per calibration sequence (0: min(2048, model context))")
        ->capture_default_str();
    sub->add_option("--ctx", options->context, "Evaluation context")->capture_default_str();
    sub->add_option("--protocol", options->protocol, "Evaluation protocol: documents or gptq")
        ->check(CLI::IsMember({"documents", "gptq"}))
        ->capture_default_str();
    sub->add_option("--tokenizer", options->tokenizer,
                    "Tokenizer file (tokenizer.model or tok*.bin)");
    sub->add_option("--shard", options->shard,
                    "Run only part K of N of the grid (K/N; every N-th combination from the K-th, "
                    "the baseline in part 1); merge the parts' CSVs with sweep-merge")
        ->capture_default_str();
    sub->add_option("--target-bits", options->targetBits,
                    "Also a bit-budget run per method of the grid and target (comma-separated), "
                    "each choosing per layer among that method's grid settings")
        ->delimiter(',')
        ->check(CLI::PositiveNumber);
    sub->add_flag("--json", options->json, "Print the rows as one JSON array");
    return {sub, [options](const Session& session) { run(*options, session); }};
}

Command addSweepMergeCommand(CLI::App& app) {
    struct MergeOptions {
        std::vector<std::string> parts;
        std::string out;
    };
    auto options = std::make_shared<MergeOptions>();
    CLI::App* sub = app.add_subcommand(
        "sweep-merge", "Merge the CSVs of a sharded sweep (sweep --shard K/N) into the whole "
                       "sweep's CSV, rows in run order");
    sub->add_option("parts", options->parts, "The shards' CSV files")
        ->required()
        ->check(CLI::ExistingFile);
    sub->add_option("--out", options->out, "The merged CSV (written atomically)")->required();
    return {sub, [options](const Session&) {
                const std::string merged = mergeSweepCsvs(options->parts);
                writeFileAtomically(options->out, merged);
                std::printf("wrote %s (%lld rows)\n", options->out.c_str(),
                            static_cast<long long>(std::count(merged.begin(), merged.end(), '\n')) -
                                1);
            }};
}
