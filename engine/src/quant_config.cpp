#include "quantlens/quant_config.h"

#include "quantlens/error.h"

#include <algorithm>
#include <cmath>
#include <limits>
#include <sstream>

namespace quantlens {
namespace {

template <class... Ts> struct Overloaded : Ts... { using Ts::operator()...; };
template <class... Ts> Overloaded(Ts...) -> Overloaded<Ts...>; // clang 14 needs the guide

void requireRange(const char* name, double value, double low, double high) {
    if (!(value >= low && value <= high)) {
        std::ostringstream text;
        text << name << " = " << value << " is outside [" << low << ", " << high << "]";
        throw Error("", text.str());
    }
}

} // namespace

std::string methodName(const QuantConfig& config) {
    return std::visit(Overloaded{[](const RtnConfig&) { return "rtn"; },
                                 [](const GptqConfig&) { return "gptq"; },
                                 [](const SpqrConfig&) { return "spqr"; },
                                 [](const SqueezeConfig&) { return "squeezellm"; }},
                      config);
}

std::string describe(const QuantConfig& config) {
    std::ostringstream text;
    std::visit(
        Overloaded{[&](const RtnConfig& c) { text << "rtn w" << c.wbits << " g" << c.groupsize; },
                   [&](const GptqConfig& c) {
                       text << "gptq w" << c.wbits << " g" << c.groupsize << " damp" << c.percdamp
                            << (c.actOrder ? " act-order" : "");
                   },
                   [&](const SpqrConfig& c) {
                       text << "spqr w" << c.wbits << " g" << c.groupsize << " qq" << c.qqBits
                            << " b2=" << c.statsGroupsize << " tau=" << c.outlierThreshold
                            << " damp" << c.percdamp << (c.actOrder ? " act-order" : "");
                   },
                   [&](const SqueezeConfig& c) {
                       text << "squeezellm w" << c.wbits << " sparse" << c.sparsePercent
                            << "% sensitive" << c.sensitivePercent << "%"
                            << (c.optimalKMeans ? ""
                                                : " lloyd" + std::to_string(c.kmeansIterations));
                   }},
        config);
    return text.str();
}

int weightBits(const QuantConfig& config) {
    return std::visit([](const auto& c) { return c.wbits; }, config);
}

int statisticsGroupsize(const QuantConfig& config, int cols) {
    return std::visit(
        Overloaded{[&](const SqueezeConfig&) { return cols; },
                   [&](const auto& c) { return effectiveGroupsize(c.groupsize, cols); }},
        config);
}

SqueezeSparseCounts squeezeSparseCounts(const SqueezeConfig& config, std::int64_t parameters) {
    const auto share = [parameters](double percent) {
        return std::clamp<std::int64_t>(
            std::llround(percent / 100.0 * static_cast<double>(parameters)), 0, parameters);
    };
    SqueezeSparseCounts counts;
    counts.byMagnitude = share(config.sparsePercent);
    counts.byFisher = std::min(share(config.sensitivePercent), parameters - counts.byMagnitude);
    return counts;
}

bool needsHessian(const QuantConfig& config) {
    return std::holds_alternative<GptqConfig>(config) || std::holds_alternative<SpqrConfig>(config);
}

bool needsFisher(const QuantConfig& config) {
    return std::holds_alternative<SqueezeConfig>(config);
}

std::optional<QuantConfig> defaultConfig(std::string_view method) {
    if (method == "rtn") return RtnConfig{};
    if (method == "gptq") return GptqConfig{};
    if (method == "spqr") return SpqrConfig{};
    if (method == "squeezellm") return SqueezeConfig{};
    return std::nullopt;
}

void validate(const QuantConfig& config) {
    std::visit(Overloaded{[](const RtnConfig& c) {
                              requireRange("wbits", c.wbits, 1, 8);
                              requireRange("groupsize", c.groupsize, 0, 1 << 20);
                          },
                          [](const GptqConfig& c) {
                              requireRange("wbits", c.wbits, 1, 8);
                              requireRange("groupsize", c.groupsize, 0, 1 << 20);
                              requireRange("blocksize", c.blocksize, 1, 1 << 16);
                              requireRange("percdamp", c.percdamp, 0, 100);
                          },
                          [](const SpqrConfig& c) {
                              requireRange("wbits", c.wbits, 1, 8);
                              requireRange("groupsize", c.groupsize, 0, 1 << 20);
                              requireRange("qq-bits", c.qqBits, 1, 8);
                              requireRange("stats-groupsize", c.statsGroupsize, 1, 1 << 20);
                              requireRange("outlier-threshold", c.outlierThreshold, 0,
                                           std::numeric_limits<double>::infinity());
                              requireRange("blocksize", c.blocksize, 1, 1 << 16);
                              requireRange("percdamp", c.percdamp, 0, 100);
                          },
                          [](const SqueezeConfig& c) {
                              requireRange("wbits", c.wbits, 1, 8);
                              requireRange("sparse-percent", c.sparsePercent, 0, 100);
                              requireRange("sensitive-percent", c.sensitivePercent, 0, 100);
                              requireRange("sparse-percent + sensitive-percent",
                                           c.sparsePercent + c.sensitivePercent, 0, 100);
                              requireRange("kmeans-iterations", c.kmeansIterations, 0, 10000);
                          }},
               config);
}

} // namespace quantlens
