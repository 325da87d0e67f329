#include "quant_config_json.h"

#include "quantlens/error.h"

#include <QString>

#include <type_traits>

namespace {

// Visits each setting of a config with its JSON name; one list for writing and reading.
template <typename Config, typename Visit> void forEachSetting(Config& c, Visit visit) {
    using C = std::remove_const_t<Config>;
    visit("wbits", c.wbits);
    if constexpr (std::is_same_v<C, quantlens::SqueezeConfig>) {
        visit("sparse_percent", c.sparsePercent);
        visit("sensitive_percent", c.sensitivePercent);
        visit("kmeans_iterations", c.kmeansIterations);
    } else {
        visit("groupsize", c.groupsize);
    }
    if constexpr (std::is_same_v<C, quantlens::GptqConfig> ||
                  std::is_same_v<C, quantlens::SpqrConfig>) {
        visit("blocksize", c.blocksize);
        visit("percdamp", c.percdamp);
        visit("act_order", c.actOrder);
    }
    if constexpr (std::is_same_v<C, quantlens::SpqrConfig>) {
        visit("qq_bits", c.qqBits);
        visit("stats_groupsize", c.statsGroupsize);
        visit("outlier_threshold", c.outlierThreshold);
    }
}

} // namespace

QJsonObject toJson(const quantlens::QuantConfig& config) {
    QJsonObject json{{"method", QString::fromStdString(quantlens::methodName(config))}};
    std::visit(
        [&](const auto& c) {
            forEachSetting(c, [&](const char* name, const auto& value) { json[name] = value; });
        },
        config);
    return json;
}

std::optional<quantlens::QuantConfig> quantConfigFromJson(const QJsonObject& json) {
    const QString method = json["method"].toString();
    quantlens::QuantConfig config;
    if (method == "rtn")
        config = quantlens::RtnConfig{};
    else if (method == "gptq")
        config = quantlens::GptqConfig{};
    else if (method == "spqr")
        config = quantlens::SpqrConfig{};
    else if (method == "squeezellm")
        config = quantlens::SqueezeConfig{};
    else
        return std::nullopt;
    std::visit(
        [&](auto& c) {
            forEachSetting(c, [&](const char* name, auto& value) {
                using T = std::decay_t<decltype(value)>;
                const QJsonValue v = json[name];
                if (v.isUndefined()) return;
                if constexpr (std::is_same_v<T, bool>)
                    value = v.toBool(value);
                else if constexpr (std::is_same_v<T, int>)
                    value = v.toInt(value);
                else
                    value = v.toDouble(value);
            });
        },
        config);
    try {
        quantlens::validate(config);
    } catch (const quantlens::Error&) {
        return std::nullopt;
    }
    return config;
}
