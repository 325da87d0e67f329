#pragma once

#include "export_dialog.h"

#include "quantlens/job.h"
#include "quantlens/model.h"
#include "quantlens/model_quantizer.h"

#include <QList>
#include <QString>

#include <cstdint>
#include <span>

// The formats the studio exports to, by key: the engine's `quantlens` checkpoint (compressed
// layers as stored) and dense safetensors of the dequantized weights.
QList<ExportFormat> exportFormats();

// Quantizes `model` with `method` and streams every layer into a new directory in `format`; the
// directory appears whole or not at all. Throws quantlens::Error for an unknown format.
void exportModel(const quantlens::Model& model, std::span<const std::int32_t> calibration,
                 const quantlens::QuantConfig& method, const quantlens::CalibrationConfig& config,
                 const QString& format, const QString& directory, const quantlens::JobContext& job);
