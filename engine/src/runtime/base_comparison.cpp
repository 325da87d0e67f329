#include "quantlens/runtime/base_comparison.h"

#include "quantlens/core/error.h"

#include <algorithm>
#include <cmath>

namespace quantlens {
namespace {

struct MeanAndError {
    double mean = 0.0;
    double error = 0.0; // standard error of the mean; 0 for a single value
};

MeanAndError meanAndError(std::span<const double> values) {
    const double n = static_cast<double>(values.size());
    double sum = 0.0;
    for (double v : values)
        sum += v;
    const double mean = sum / n;
    double squares = 0.0;
    for (double v : values)
        squares += (v - mean) * (v - mean);
    return {mean, values.size() > 1 ? std::sqrt(squares / (n - 1.0) / n) : 0.0};
}

} // namespace

double quantile(std::span<double> values, double q) {
    if (values.empty()) return std::numeric_limits<double>::quiet_NaN();
    const double position = q * static_cast<double>(values.size() - 1);
    const auto below = static_cast<std::size_t>(std::floor(position));
    const std::size_t above = std::min(below + 1, values.size() - 1);
    std::nth_element(values.begin(), values.begin() + static_cast<std::ptrdiff_t>(below),
                     values.end());
    const double low = values[below];
    // The next order statistic is the smallest of those after `below`.
    const double high =
        above == below
            ? low
            : *std::min_element(values.begin() + static_cast<std::ptrdiff_t>(above), values.end());
    return low + (position - static_cast<double>(below)) * (high - low);
}

BaseComparison summariseComparison(std::span<const TokenComparison> tokens,
                                   std::span<const std::int64_t> windowEnds,
                                   PerplexityProtocol protocol) {
    if (tokens.empty() || windowEnds.empty() ||
        windowEnds.back() != static_cast<std::int64_t>(tokens.size()))
        throw Error("base comparison", "the windows do not cover the " +
                                           std::to_string(tokens.size()) + " scored positions");
    const std::size_t n = tokens.size();
    std::vector<double> kl(n), deltaP(n);
    std::int64_t agreeing = 0;
    for (std::size_t i = 0; i < n; ++i) {
        kl[i] = tokens[i].kl;
        deltaP[i] = std::exp(-tokens[i].nll) - std::exp(-tokens[i].baseNll);
        agreeing += tokens[i].sameTop1 ? 1 : 0;
    }

    // The NLL differences of the units the protocol's perplexity averages, and the base's NLLs.
    std::vector<double> differences, baseNlls;
    if (protocol == PerplexityProtocol::Documents) {
        for (const TokenComparison& t : tokens) {
            differences.push_back(t.nll - t.baseNll);
            baseNlls.push_back(t.baseNll);
        }
    } else {
        std::int64_t begin = 0;
        for (const std::int64_t end : windowEnds) {
            if (end <= begin) throw Error("base comparison", "an empty or unordered window");
            double difference = 0.0, base = 0.0;
            for (std::int64_t i = begin; i < end; ++i) {
                difference += tokens[std::size_t(i)].nll - tokens[std::size_t(i)].baseNll;
                base += tokens[std::size_t(i)].baseNll;
            }
            differences.push_back(difference / double(end - begin));
            baseNlls.push_back(base / double(end - begin));
            begin = end;
        }
    }

    BaseComparison c;
    c.positions = static_cast<std::int64_t>(n);
    c.basePerplexity = std::exp(meanAndError(baseNlls).mean);
    // d(e^m) = e^m·dm: the ratio's σ from the log-ratio's.
    const MeanAndError logRatio = meanAndError(differences);
    c.perplexityRatio = std::exp(logRatio.mean);
    c.perplexityRatioError = c.perplexityRatio * logRatio.error;
    c.klMean = meanAndError(kl).mean;
    c.klMax = *std::max_element(kl.begin(), kl.end());
    c.klMedian = quantile(kl, 0.5);
    c.klP99 = quantile(kl, 0.99);
    c.top1Agreement = static_cast<double>(agreeing) / static_cast<double>(n);
    c.deltaPMean = meanAndError(deltaP).mean;
    c.deltaPP1 = quantile(deltaP, 0.01);
    c.deltaPP99 = quantile(deltaP, 0.99);
    return c;
}

} // namespace quantlens
