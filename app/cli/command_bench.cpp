#include "commands.h"

#include "quantlens/runtime/backend.h"

#include "quantlens/core/parallel.h"
#include "quantlens/model/synthetic_model.h"
#include "quantlens/quantization/hessian.h"
#include "quantlens/quantization/layer_quantizer.h"

#include <nlohmann/json.hpp>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <functional>
#include <iostream>
#include <optional>
#include <vector>

// `quantlens-cli bench …`: speed benchmarks that print tables and never assert a time (STYLE.md).
// Set the thread count with the global flag: `quantlens-cli --threads 2 bench quantize-layer`.

namespace {

using Clock = std::chrono::steady_clock;

double secondsSince(Clock::time_point start) {
    return std::chrono::duration<double>(Clock::now() - start).count();
}

double median(std::vector<double> values) {
    std::sort(values.begin(), values.end());
    const std::size_t n = values.size();
    return n % 2 ? values[n / 2] : 0.5 * (values[n / 2 - 1] + values[n / 2]);
}

struct LayerBenchOptions {
    int rows = 4096;
    int cols = 4096;
    int samples = 0; // calibration rows of X; 0: 2·cols
    int repeat = 3;
    std::uint64_t seed = 1;
    std::vector<std::string> methods; // empty: all
    bool json = false;
};

// Shared structure across input channels: a rank-8 component, so H is far from diagonal as real
// activations' Hessians are.
constexpr int kSharedRank = 8;

// H = 2·XᵀX/n for synthetic activations X [n, cols]: the seeded generator's heavy-tailed values,
// whose few outlier columns (×10–20) are high-variance input channels and outlier rows (×4–8)
// high-norm tokens, plus a shared low-rank component of the same spread.
Eigen::MatrixXf syntheticHessian(int samples, int cols, std::uint64_t seed) {
    using quantlens::RowMatrix, quantlens::syntheticMatrix;
    RowMatrix x = syntheticMatrix(samples, cols, seed, "bench.activations");
    const RowMatrix g = syntheticMatrix(samples, kSharedRank, seed, "bench.shared");
    const RowMatrix m = syntheticMatrix(cols, kSharedRank, seed, "bench.mixing");
    // Entries of g·mᵀ have std ≈ 0.02²·√rank; rescale to the weights' std of 0.02.
    x.noalias() += (g * m.transpose()) * (1.0f / (0.02f * std::sqrt(float(kSharedRank))));
    Eigen::MatrixXf h = Eigen::MatrixXf::Zero(cols, cols);
    h.selfadjointView<Eigen::Lower>().rankUpdate(x.transpose(), 2.0f / static_cast<float>(samples));
    return h.selfadjointView<Eigen::Lower>();
}

struct BenchRow {
    std::string method;
    std::string settings;
    double seconds = 0.0;
    std::optional<double> bits;
    std::optional<double> outlierFraction;
    std::optional<double> ratio; // SpQR / GPTQ at the same wbits and groupsize
};

void runQuantizeLayer(const LayerBenchOptions& o,
                      const std::shared_ptr<const quantlens::Backend>& backend) {
    using namespace quantlens;
    const int samples = o.samples > 0 ? o.samples : 2 * o.cols;
    const auto setupStart = Clock::now();
    const RowMatrix weights = syntheticMatrix(o.rows, o.cols, o.seed, "bench.weights");
    const Eigen::MatrixXf hessian = syntheticHessian(samples, o.cols, o.seed);
    // Squared heavy-tailed values: a Fisher diagonal's spread (squared gradients).
    const RowMatrix fisher = syntheticMatrix(o.rows, o.cols, o.seed, "bench.fisher").cwiseAbs2();
    const double setupSeconds = secondsSince(setupStart);

    RtnConfig rtn;
    rtn.wbits = 3;
    rtn.groupsize = 16;
    GptqConfig gptq3;
    gptq3.wbits = 3;
    gptq3.groupsize = 16;
    GptqConfig gptq3Act = gptq3;
    gptq3Act.actOrder = true;
    GptqConfig gptq4;      // w4 g128, the GPTQ paper's setting
    const SpqrConfig spqr; // w3 β1=16 β2=16 qq3 τ=0.2 act-order, the SpQR paper's LLaMA setting
    // SqueezeLLM 3-bit with the paper's 0.45% sparse.
    const SqueezeConfig squeeze{.wbits = 3, .sparsePercent = 0.40, .sensitivePercent = 0.05};
    std::vector<QuantConfig> configs;
    for (const QuantConfig& config : {QuantConfig(rtn), QuantConfig(gptq3), QuantConfig(gptq3Act),
                                      QuantConfig(gptq4), QuantConfig(spqr), QuantConfig(squeeze)})
        if (o.methods.empty() || std::ranges::count(o.methods, methodName(config)))
            configs.push_back(config);

    const JobContext job(backend);
    const auto timeIt = [&](const std::function<void()>& body) {
        std::vector<double> times;
        for (int i = 0; i < o.repeat; ++i) {
            const auto start = Clock::now();
            body();
            times.push_back(secondsSince(start));
        }
        return median(times);
    };
    // The Hessian inversion that GPTQ and SpQR both pay, on its own.
    const BenchRow prepare{"hessian",
                           "prepare (damp 0.01, act-order)",
                           timeIt([&] { prepareHessian(*backend, hessian, 0.01, true, "bench"); }),
                           std::nullopt,
                           std::nullopt,
                           std::nullopt};
    std::vector<BenchRow> methods; // one per config
    for (const QuantConfig& config : configs) {
        QuantizedLayer layer;
        const double seconds = timeIt([&] {
            layer = quantizeLayer(weights, {.hessian = &hessian, .fisher = &fisher}, config, job,
                                  "bench");
        });
        methods.push_back({methodName(config), describe(config), seconds, layer.bitsPerParameter(),
                           layer.outlierFraction(), std::nullopt});
        if (!o.json) std::fprintf(stderr, "  %-45s %8.3f s\n", describe(config).c_str(), seconds);
    }
    // SpQR against plain GPTQ (no act-order) with the same wbits and groupsize.
    for (std::size_t i = 0; i < configs.size(); ++i) {
        const auto* s = std::get_if<SpqrConfig>(&configs[i]);
        for (std::size_t k = 0; s && k < configs.size(); ++k) {
            const auto* g = std::get_if<GptqConfig>(&configs[k]);
            if (g && g->wbits == s->wbits && g->groupsize == s->groupsize && !g->actOrder)
                methods[i].ratio = methods[i].seconds / methods[k].seconds;
        }
    }
    std::vector<BenchRow> rows{prepare};
    rows.insert(rows.end(), methods.begin(), methods.end());

    if (o.json) {
        nlohmann::json results = nlohmann::json::array();
        for (const BenchRow& r : rows) {
            nlohmann::json row = {
                {"method", r.method}, {"settings", r.settings}, {"seconds", r.seconds}};
            if (r.bits) row["bits_per_param"] = *r.bits;
            if (r.outlierFraction) row["outlier_fraction"] = *r.outlierFraction;
            if (r.ratio) row["spqr_gptq_ratio"] = *r.ratio;
            results.push_back(row);
        }
        std::cout << nlohmann::json{{"benchmark", "quantize-layer"},
                                    {"device", backend->name()},
                                    {"rows", o.rows},
                                    {"cols", o.cols},
                                    {"samples", samples},
                                    {"threads", threadCount()},
                                    {"repeat", o.repeat},
                                    {"seed", o.seed},
                                    {"setup_seconds", setupSeconds},
                                    {"results", results}}
                         .dump()
                  << '\n';
        return;
    }
    std::printf("quantize-layer on %s: %d×%d synthetic layer, H from %d synthetic activations, "
                "seed %llu, %d threads, median of %d (setup %.1f s)\n\n",
                backend->name().c_str(), o.rows, o.cols, samples,
                static_cast<unsigned long long>(o.seed), threadCount(), o.repeat, setupSeconds);
    std::printf("%-8s %-46s %9s %10s %10s %10s\n", "method", "settings", "seconds", "bits/param",
                "outliers", "spqr/gptq");
    const auto optional = [](const std::optional<double>& v, const char* format) {
        char text[32] = "-";
        if (v) std::snprintf(text, sizeof text, format, *v);
        return std::string(text);
    };
    for (const BenchRow& r : rows)
        std::printf("%-8s %-46s %9.3f %10s %10s %10s\n", r.method.c_str(), r.settings.c_str(),
                    r.seconds, optional(r.bits, "%.4f").c_str(),
                    optional(r.outlierFraction, "%.5f").c_str(),
                    optional(r.ratio, "%.2f×").c_str());
}

} // namespace

Command addBenchCommand(CLI::App& app) {
    CLI::App* bench = app.add_subcommand(
        "bench", "Speed benchmarks that print tables (set threads with the global --threads)");
    bench->require_subcommand(1);

    auto layer = std::make_shared<LayerBenchOptions>();
    CLI::App* quantizeLayerCommand = bench->add_subcommand(
        "quantize-layer",
        "Time RTN, GPTQ, SpQR and SqueezeLLM on one seeded synthetic layer with a synthetic "
        "Hessian and Fisher");
    quantizeLayerCommand->add_option("--rows", layer->rows, "Output features")
        ->check(CLI::PositiveNumber)
        ->capture_default_str();
    quantizeLayerCommand->add_option("--cols", layer->cols, "Input features")
        ->check(CLI::Range(1, 65536))
        ->capture_default_str();
    quantizeLayerCommand
        ->add_option(
            "--samples", layer->samples,
            "Calibration activations behind H (0: 2·cols; fewer than cols is rank-deficient)")
        ->check(CLI::NonNegativeNumber)
        ->capture_default_str();
    quantizeLayerCommand->add_option("--repeat", layer->repeat, "Runs per method (median)")
        ->check(CLI::PositiveNumber)
        ->capture_default_str();
    quantizeLayerCommand->add_option("--seed", layer->seed, "Generator seed")
        ->capture_default_str();
    quantizeLayerCommand
        ->add_option("--method", layer->methods, "Only these methods (repeatable; default all)")
        ->check(CLI::IsMember({"rtn", "gptq", "spqr", "squeezellm"}));
    quantizeLayerCommand->add_flag("--json", layer->json, "Print one JSON object");

    const Command gemv = addGemvBench(*bench);
    return {bench, [quantizeLayerCommand, layer, gemv](const Session& session) {
                if (quantizeLayerCommand->parsed()) runQuantizeLayer(*layer, session.backend);
                if (gemv.parser->parsed()) gemv.run(session);
            }};
}
