#include "quant_settings.h"

#include "quantlens/core/error.h"
#include "quantlens/quantization/bit_budget.h"

#include <algorithm>
#include <set>
#include <sstream>

namespace {

int toInt(const std::string& name, const std::string& text) {
    try {
        std::size_t used = 0;
        const int value = std::stoi(text, &used);
        if (used == text.size()) return value;
    } catch (const std::exception&) {
    }
    throw quantlens::Error("", name + " must be an integer, not '" + text + "'");
}

double toDouble(const std::string& name, const std::string& text) {
    try {
        std::size_t used = 0;
        const double value = std::stod(text, &used);
        if (used == text.size()) return value;
    } catch (const std::exception&) {
    }
    throw quantlens::Error("", name + " must be a number, not '" + text + "'");
}

bool toBool(const std::string& name, const std::string& text) {
    if (text == "1" || text == "true" || text == "on") return true;
    if (text == "0" || text == "false" || text == "off") return false;
    throw quantlens::Error("", name + " must be true or false, not '" + text + "'");
}

std::vector<std::string> split(const std::string& text, char separator) {
    std::vector<std::string> parts;
    std::stringstream stream(text);
    for (std::string part; std::getline(stream, part, separator);)
        parts.push_back(part);
    return parts;
}

} // namespace

quantlens::QuantConfig makeQuantConfig(const std::string& method, const QuantSettings& settings) {
    std::optional<quantlens::QuantConfig> config = quantlens::defaultConfig(method);
    if (!config)
        throw quantlens::Error("",
                               "unknown method '" + method + "' (rtn, gptq, spqr or squeezellm)");
    std::set<std::string> allowed;
    std::visit(
        [&](auto& c) {
            quantlens::forEachSetting(c, [&](std::string name, auto& field) {
                std::replace(name.begin(), name.end(), '_', '-'); // the flags' spelling
                allowed.insert(name);
                const auto it = settings.find(name);
                if (it == settings.end()) return;
                using Field = std::decay_t<decltype(field)>;
                if constexpr (std::is_same_v<Field, bool>)
                    field = toBool(name, it->second);
                else if constexpr (std::is_same_v<Field, int>)
                    field = toInt(name, it->second);
                else
                    field = toDouble(name, it->second);
            });
        },
        *config);
    for (const auto& [name, value] : settings)
        if (!allowed.count(name))
            throw quantlens::Error("", "setting '" + name + "' does not apply to " + method);
    quantlens::validate(*config);
    return *config;
}

QuantSettingFlags::QuantSettingFlags(CLI::App& command) {
    for (std::string name : quantlens::allSettingNames()) {
        const char* help = quantlens::settingInfo(name).help;
        std::replace(name.begin(), name.end(), '_', '-'); // the flags' spelling
        if (name == "act-order")
            actOrderOption_ = command.add_flag("--act-order,!--no-act-order", actOrder_, help);
        else
            options_[name] = command.add_option("--" + name, values_[name], help);
    }
}

QuantSettings QuantSettingFlags::collect() const {
    QuantSettings settings;
    for (const auto& [name, option] : options_)
        if (option->count() > 0) settings[name] = values_.at(name);
    if (actOrderOption_->count() > 0) settings["act-order"] = actOrder_ ? "true" : "false";
    return settings;
}

std::vector<quantlens::QuantConfig> budgetCandidatesFor(const std::string& method,
                                                        const QuantSettings& settings,
                                                        const std::string& grid) {
    if (grid.empty()) return quantlens::budgetCandidates(makeQuantConfig(method, settings));
    std::vector<quantlens::QuantConfig> candidates;
    for (auto& [name, varied] : expandGrid(method + ":" + grid)) {
        varied.insert(settings.begin(), settings.end()); // the grid's values win
        candidates.push_back(makeQuantConfig(name, varied));
    }
    return candidates;
}

std::vector<std::pair<std::string, QuantSettings>> expandGrid(const std::string& spec) {
    const std::vector<std::string> parts = split(spec, ':');
    if (parts.empty() || parts.front().empty()) throw quantlens::Error("", "empty grid entry");
    std::vector<std::pair<std::string, QuantSettings>> runs{{parts.front(), {}}};
    for (std::size_t i = 1; i < parts.size(); ++i) {
        const std::size_t equals = parts[i].find('=');
        if (equals == std::string::npos)
            throw quantlens::Error("",
                                   "grid entry '" + parts[i] + "' must read name=value[,value…]");
        const std::string name = parts[i].substr(0, equals);
        std::vector<std::pair<std::string, QuantSettings>> expanded;
        for (const auto& run : runs)
            for (const std::string& value : split(parts[i].substr(equals + 1), ',')) {
                auto next = run;
                next.second[name] = value;
                expanded.push_back(std::move(next));
            }
        runs = std::move(expanded);
    }
    for (const auto& [method, settings] : runs)
        makeQuantConfig(method, settings); // fail before any work
    return runs;
}
