#pragma once

#include "quantlens/encoding/quant_config.h"

#include <QJsonObject>

// A method and all its settings as JSON ({"method": "spqr", "wbits": 3, …}), for project files and
// saved preferences, walked through quantlens::forEachSetting. Reading fills missing settings with
// the paper defaults; it throws quantlens::Error saying what is wrong for a missing or unknown
// method, a setting of the wrong type, or settings the engine rejects.
QJsonObject toJson(const quantlens::QuantConfig& config);
quantlens::QuantConfig quantConfigFromJson(const QJsonObject& json);
