#pragma once

#include "quantlens/quant_config.h"

#include <QJsonObject>

#include <optional>

// A method and all its settings as JSON ({"method": "spqr", "wbits": 3, …}), for project files and
// saved preferences. Reading fills missing settings with the paper defaults and returns nothing
// for an unknown method or settings the engine rejects.
QJsonObject toJson(const quantlens::QuantConfig& config);
std::optional<quantlens::QuantConfig> quantConfigFromJson(const QJsonObject& json);
