#include "quant_config_json.h"

#include "quantlens/error.h"

#include <QString>

QJsonObject toJson(const quantlens::QuantConfig& config) {
    QJsonObject json{{"method", QString::fromStdString(quantlens::methodName(config))}};
    std::visit(
        [&](const auto& c) {
            quantlens::forEachSetting(
                c, [&](const char* name, const auto& value) { json[name] = value; });
        },
        config);
    return json;
}

std::optional<quantlens::QuantConfig> quantConfigFromJson(const QJsonObject& json) {
    std::optional<quantlens::QuantConfig> config =
        quantlens::defaultConfig(json["method"].toString().toStdString());
    if (!config) return std::nullopt;
    std::visit(
        [&](auto& c) {
            quantlens::forEachSetting(c, [&](const char* name, auto& value) {
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
        *config);
    try {
        quantlens::validate(*config);
    } catch (const quantlens::Error&) {
        return std::nullopt;
    }
    return config;
}
