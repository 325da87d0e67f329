#include "quantlens/encoding/quant_config.h"

#include "quantlens/core/error.h"

#include <algorithm>
#include <cmath>
#include <limits>
#include <sstream>
#include <utility>

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

const SettingInfo& settingInfo(std::string_view name) {
    constexpr double kUnbounded = std::numeric_limits<double>::infinity();
    static constexpr SettingInfo kSettings[] = {
        {"wbits", 1, 8, "Bits per weight"},
        {"groupsize", 0, 1 << 20,
         "Columns per statistics group (β1 for SpQR); 0 = one group per row"},
        {"blocksize", 1, 1 << 16, "Columns per lazy-update block (GPTQ, SpQR)"},
        {"percdamp", 0, 100, "Hessian dampening as a fraction of mean(diag H)"},
        {"act_order", 0, 1, "Quantize columns in descending order of diag H (GPTQ, SpQR)"},
        {"qq_bits", 1, 8, "Bits of SpQR's quantized scales and zeros"},
        {"stats_groupsize", 1, 1 << 20, "Rows per second-level statistics group (β2, SpQR)"},
        {"outlier_threshold", 0, kUnbounded, "SpQR outlier threshold τ (relative)"},
        {"sparse_percent", 0, 100, "SqueezeLLM: % of weights kept sparse in fp16 by magnitude"},
        {"sensitive_percent", 0, 100,
         "SqueezeLLM: % of weights kept sparse in fp16 by Fisher sensitivity"},
        {"kmeans_iterations", 0, 10000,
         "SqueezeLLM: Lloyd iterations at most per row (without optimal-kmeans)"},
        {"optimal_kmeans", 0, 1,
         "SqueezeLLM: true (default) clusters each row to the exact optimum; false runs the "
         "paper's k-means++ and Lloyd iterations"},
    };
    for (const SettingInfo& setting : kSettings)
        if (setting.name == name) return setting;
    throw Error("", "unknown setting '" + std::string(name) + "'");
}

std::vector<std::string> allSettingNames() {
    std::vector<std::string> names;
    for (const char* method : {"rtn", "gptq", "spqr", "squeezellm"})
        std::visit(
            [&](const auto& c) {
                forEachSetting(c, [&](const char* name, const auto&) {
                    if (std::find(names.begin(), names.end(), name) == names.end())
                        names.emplace_back(name);
                });
            },
            *defaultConfig(method));
    return names;
}

void validate(const QuantConfig& config) {
    std::visit(
        [](const auto& c) {
            forEachSetting(c, [](const char* name, const auto& value) {
                if constexpr (!std::is_same_v<std::decay_t<decltype(value)>, bool>) {
                    std::string flag = name;
                    std::replace(flag.begin(), flag.end(), '_', '-');
                    const SettingInfo& info = settingInfo(name);
                    requireRange(flag.c_str(), value, info.low, info.high);
                }
            });
        },
        config);
    if (const auto* squeeze = std::get_if<SqueezeConfig>(&config))
        requireRange("sparse-percent + sensitive-percent",
                     squeeze->sparsePercent + squeeze->sensitivePercent, 0, 100);
}

} // namespace quantlens
