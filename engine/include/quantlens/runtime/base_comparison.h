#pragma once

#include "quantlens/model/token_streams.h"

#include <cstdint>
#include <limits>
#include <span>
#include <vector>

namespace quantlens {

// One scored position of a model and of its base (e.g. the unquantized model) on the same inputs.
struct TokenComparison {
    double nll = 0.0;      // −log p(correct token), the evaluated model
    double baseNll = 0.0;  // the same for the base
    double kl = 0.0;       // KL(base ‖ evaluated) over the whole vocabulary, nats
    bool sameTop1 = false; // both models' most likely tokens agree
};

// How far a model is from its base, as llama.cpp's perplexity --kl-divergence reports it. NaN
// marks a figure that was not measured (a record written before it existed).
struct BaseComparison {
    static constexpr double kUnmeasured = std::numeric_limits<double>::quiet_NaN();
    std::int64_t positions = 0;
    double basePerplexity = kUnmeasured;
    // PPL(model) / PPL(base) and its ±1σ: exp of the mean NLL difference over the units the
    // protocol averages (tokens for Documents, windows for Gptq), σ from their sample variance.
    double perplexityRatio = kUnmeasured;
    double perplexityRatioError = kUnmeasured;
    double klMean = kUnmeasured, klMedian = kUnmeasured, klP99 = kUnmeasured, klMax = kUnmeasured;
    double top1Agreement = kUnmeasured; // share of positions whose most likely tokens agree
    // Δp = p_model(correct) − p_base(correct): mean and the 1st and 99th percentiles.
    double deltaPMean = kUnmeasured, deltaPP1 = kUnmeasured, deltaPP99 = kUnmeasured;
};

// Every figure of a BaseComparison by the key the CLI's JSON, the sweep CSV and project files
// use (llama.cpp's names where it has one): the one list their writers and readers walk.
struct ComparisonFigure {
    const char* key;
    double BaseComparison::*value;
};
inline constexpr ComparisonFigure kComparisonFigures[] = {
    {"base_ppl", &BaseComparison::basePerplexity},
    {"ppl_ratio", &BaseComparison::perplexityRatio},
    {"ppl_ratio_err", &BaseComparison::perplexityRatioError},
    {"kl_mean", &BaseComparison::klMean},
    {"kl_median", &BaseComparison::klMedian},
    {"kl_p99", &BaseComparison::klP99},
    {"kl_max", &BaseComparison::klMax},
    {"top1_agreement", &BaseComparison::top1Agreement},
    {"dp_mean", &BaseComparison::deltaPMean},
    {"dp_p1", &BaseComparison::deltaPP1},
    {"dp_p99", &BaseComparison::deltaPP99},
};

// The q-th quantile (0 ≤ q ≤ 1) of `values`, interpolated linearly between order statistics
// (numpy's default); reorders `values`. NaN for an empty span.
double quantile(std::span<double> values, double q);

// Summarises the positions of a perplexity run (in window order; window w holds the positions
// [windowEnds[w−1], windowEnds[w])), averaging NLL as `protocol` does. Throws Error for windows
// that do not cover `tokens` or an empty run.
BaseComparison summariseComparison(std::span<const TokenComparison> tokens,
                                   std::span<const std::int64_t> windowEnds,
                                   PerplexityProtocol protocol);

} // namespace quantlens
