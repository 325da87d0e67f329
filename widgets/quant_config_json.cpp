#include "quant_config_json.h"

#include "quantlens/core/error.h"

#include <QString>

#include <cmath>

namespace {

[[noreturn]] void fail(const std::string& message) {
    throw quantlens::Error("", message);
}

// A setting's JSON value as its C++ type, or an Error naming the setting.
template <typename T> T settingValue(const char* name, const QJsonValue& value) {
    const std::string setting = std::string("setting \"") + name + "\"";
    if constexpr (std::is_same_v<T, bool>) {
        if (!value.isBool()) fail(setting + " must be true or false");
        return value.toBool();
    } else {
        if (!value.isDouble()) fail(setting + " must be a number");
        const double number = value.toDouble();
        if constexpr (std::is_same_v<T, int>) {
            if (number != std::floor(number) || std::abs(number) > 1 << 30)
                fail(setting + " must be a whole number");
            return static_cast<int>(number);
        } else {
            return number;
        }
    }
}

} // namespace

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

quantlens::QuantConfig quantConfigFromJson(const QJsonObject& json) {
    if (!json["method"].isString()) fail("the settings name no \"method\"");
    const std::string method = json["method"].toString().toStdString();
    std::optional<quantlens::QuantConfig> config = quantlens::defaultConfig(method);
    if (!config) fail("unknown method \"" + method + "\" (rtn, gptq, spqr or squeezellm)");
    std::visit(
        [&](auto& c) {
            quantlens::forEachSetting(c, [&](const char* name, auto& value) {
                const QJsonValue v = json[name];
                if (!v.isUndefined()) value = settingValue<std::decay_t<decltype(value)>>(name, v);
            });
        },
        *config);
    quantlens::validate(*config);
    return *config;
}
