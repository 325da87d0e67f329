#include "model_export.h"

#include "run_description.h"

#include "quantlens/core/error.h"
#include "quantlens/formats/model_export.h"

#include <QObject>

namespace {

// The engine's formats; ExportFormat is the dialog's key and label.
using EngineFormat = quantlens::ExportFormat;

QString keyOf(EngineFormat format) {
    return QString::fromStdString(quantlens::exportFormatName(format));
}

} // namespace

QList<ExportFormat> exportFormats() {
    return {
        {keyOf(EngineFormat::Quantlens),
         QObject::tr("Quantlens checkpoint (compressed, as quantized)")},
        {keyOf(EngineFormat::DenseF16),
         QObject::tr("Dense safetensors, F16 (dequantized; any HF runtime)")},
        {keyOf(EngineFormat::DenseBf16), QObject::tr("Dense safetensors, BF16 (dequantized)")},
        {keyOf(EngineFormat::DenseF32), QObject::tr("Dense safetensors, F32 (dequantized)")},
        {keyOf(EngineFormat::Gptq),
         QObject::tr("GPTQ checkpoint (AutoGPTQ/transformers layout; RTN and GPTQ runs)")},
        {keyOf(EngineFormat::HfSpqr),
         QObject::tr("Hugging Face SpQR (transformers' spqr_quant kernels; SpQR w3, β1 = β2 = 16, "
                     "3-bit statistics)")},
    };
}

QString exportUnavailable(const quantlens::QuantConfig& method, const QString& format) {
    if (format == keyOf(EngineFormat::Gptq) && !quantlens::formatHolds(EngineFormat::Gptq, method))
        return QObject::tr("The GPTQ checkpoint layout holds RTN and GPTQ runs only; this run is "
                           "%1. Export it as a Quantlens checkpoint or as dense safetensors.")
            .arg(methodLabel(method));
    if (format == keyOf(EngineFormat::HfSpqr) &&
        !quantlens::formatHolds(EngineFormat::HfSpqr, method)) {
        if (!std::holds_alternative<quantlens::SpqrConfig>(method))
            return QObject::tr("The Hugging Face SpQR format holds SpQR runs only (3-bit weights "
                               "and statistics, β1 = β2 = 16); this run is %1. Export it as a "
                               "Quantlens checkpoint or as dense safetensors.")
                .arg(methodLabel(method));
        return QObject::tr("The Hugging Face SpQR format holds SpQR runs with 3-bit weights and "
                           "statistics and β1 = β2 = 16 only: %1. Export it as a Quantlens "
                           "checkpoint or as dense safetensors.")
            .arg(QString::fromStdString(quantlens::hfSpqrSettingMismatch(method)));
    }
    return {};
}

void exportModel(const quantlens::Model& model, std::span<const std::int32_t> calibration,
                 const quantlens::QuantConfig& method, const quantlens::CalibrationConfig& config,
                 const QString& format, const QString& directory,
                 quantlens::Interruption interruption, const quantlens::JobContext& job) {
    const std::string path = directory.toStdString();
    const EngineFormat kind = [&] {
        try {
            return quantlens::parseExportFormat(format.toStdString());
        } catch (const quantlens::Error& error) {
            throw quantlens::Error(path, error.message());
        }
    }();
    if (const QString why = exportUnavailable(method, format); !why.isEmpty())
        throw quantlens::Error(path, why.toStdString());
    quantlens::quantizeToDirectory(model, calibration, method, config, kind, path,
                                   {{"quantlens.method", quantlens::describe(method)},
                                    {"quantlens.source", model.path.string()}},
                                   job, interruption);
}
