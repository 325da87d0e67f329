#pragma once

#include "export_dialog.h"

#include "quantlens/job.h"
#include "quantlens/model.h"
#include "quantlens/model_quantizer.h"

#include <QList>
#include <QString>

#include <cstdint>
#include <span>

// Every format the engine exports to (quantlens::ExportFormat), keyed by the engine's names: the
// compressed `quantlens` checkpoint, dense safetensors (F16/BF16/F32) of the dequantized weights,
// and the GPTQ checkpoint layout.
QList<ExportFormat> exportFormats();

// Why a run quantized with `method` cannot be exported as `format`, as a sentence for the user, or
// empty when it can: the GPTQ layout holds only RTN and GPTQ layers.
QString exportUnavailable(const quantlens::QuantConfig& method, const QString& format);

// Quantizes `model` with `method` and writes the result into a new directory in `format`: the
// quantlens and dense formats stream each layer as it is quantized; GPTQ converts a quantlens
// checkpoint staged in a temporary directory with the engine's exporter, as `quantlens-cli
// export` does. The directory appears whole or not at all. Throws quantlens::Error for an unknown
// format or one the method cannot be written in (before quantizing).
void exportModel(const quantlens::Model& model, std::span<const std::int32_t> calibration,
                 const quantlens::QuantConfig& method, const quantlens::CalibrationConfig& config,
                 const QString& format, const QString& directory, const quantlens::JobContext& job);
