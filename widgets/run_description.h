#pragma once

#include "quantlens/encoding/quant_config.h"
#include "quantlens/quantization/run_record.h"

#include <QColor>
#include <QString>

#include <array>
#include <variant>

namespace quantlens {
struct LayerAnalysis;
}

// How every view names and colours a method and sums up a run, so charts, trees and lists agree.
// Every method with its papers' defaults, in QuantConfig's order.
std::array<quantlens::QuantConfig, std::variant_size_v<quantlens::QuantConfig>> defaultMethods();
QString methodLabel(const quantlens::QuantConfig& config); // "RTN", "GPTQ", "SpQR", "SqueezeLLM"
QColor methodColour(const quantlens::QuantConfig& config);
// Every method's colour with its name, as rich text, for views without a plot legend.
QString methodColourKey();
// Whether an analysis holds SqueezeLLM's Fisher form rather than the OBS form, and the formula
// of what it holds: "F·(w − q(w))²" or "(w − q(w))² / [H⁻¹]ⱼⱼ".
bool isFisherAnalysis(const quantlens::LayerAnalysis& analysis);
QString sensitivityFormula(const quantlens::LayerAnalysis& analysis);
// A run's settings in words: describe() of them, or "SpQR budget 3.50 bits" for a bit budget.
QString runSettings(const quantlens::RunRecord& run);
// Settings, bits, perplexity with its ratio to the unquantized model, KL (mean and p99), top-1
// agreement, outliers and the device it ran on (when recorded) on one line.
QString runSummary(const quantlens::RunRecord& run);
