#pragma once

#include "quantlens/quant_config.h"
#include "quantlens/run_record.h"

#include <QColor>
#include <QString>

// How every view names and colours a method and sums up a run, so charts, trees and lists agree.
QString methodLabel(const quantlens::QuantConfig& config); // "RTN", "GPTQ", "SpQR", "SqueezeLLM"
QColor methodColour(const quantlens::QuantConfig& config);
// Settings, bits, perplexity and KL on one line.
QString runSummary(const quantlens::RunRecord& run);
