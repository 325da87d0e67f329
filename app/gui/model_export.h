#pragma once

#include "export_dialog.h"

#include "quantlens/core/job.h"
#include "quantlens/formats/model_export.h"
#include "quantlens/model/model.h"
#include "quantlens/quantization/model_quantizer.h"

#include <QList>
#include <QString>

#include <cstdint>
#include <span>

// Every format the engine exports to (quantlens::ExportFormat), keyed by the engine's names: the
// compressed `quantlens` checkpoint, dense safetensors (F16/BF16/F32) of the dequantized weights,
// the GPTQ checkpoint layout and Hugging Face's SpQR format.
QList<ExportFormat> exportFormats();

// Why a run quantized with `method` cannot be exported as `format`, as a sentence for the user, or
// empty when it can: the GPTQ layout holds only RTN and GPTQ layers, Hugging Face's SpQR format
// only SpQR w3 with β1 = β2 = 16 and 3-bit statistics.
QString exportUnavailable(const quantlens::QuantConfig& method, const QString& format);

// Quantizes `model` with `plan` (one setting, or a bit budget's per layer) into a new directory in
// `format` through the engine's one export job (quantlens::quantizeToDirectory), which
// `quantlens-cli quantize` runs too: the directory appears whole or not at all; with
// Interruption::Resume an interrupted export's journal is kept and continued. Throws
// quantlens::Error for an unknown format or one the method cannot be written in (before
// quantizing), with the dialog's sentence.
void exportModel(const quantlens::Model& model, std::span<const std::int32_t> calibration,
                 const quantlens::QuantPlan& plan, const quantlens::CalibrationConfig& config,
                 const QString& format, const QString& directory,
                 quantlens::Interruption interruption, const quantlens::JobContext& job);
