#include "model_export.h"

#include "run_description.h"

#include "quantlens/dense_checkpoint_writer.h"
#include "quantlens/error.h"
#include "quantlens/model_export.h"
#include "quantlens/quantlens_checkpoint.h"

#include <QDir>
#include <QObject>
#include <QTemporaryDir>

namespace {

// The engine's formats; ExportFormat is the dialog's key and label.
using EngineFormat = quantlens::ExportFormat;

QString keyOf(EngineFormat format) {
    return QString::fromStdString(quantlens::exportFormatName(format));
}

void writeQuantlens(const quantlens::Model& model, std::span<const std::int32_t> calibration,
                    const quantlens::QuantConfig& method,
                    const quantlens::CalibrationConfig& config,
                    const std::map<std::string, std::string>& metadata,
                    const std::filesystem::path& directory, const quantlens::JobContext& job) {
    quantlens::QuantlensWriter writer(model, directory, metadata);
    quantlens::quantizeModel(
        model, calibration, method, config,
        [&](int block, const std::string& name, const quantlens::QuantizedLayer& layer,
            const quantlens::RowMatrix&) { writer.writeLayer(block, name, layer); },
        job);
    writer.commit();
}

void writeDense(const quantlens::Model& model, std::span<const std::int32_t> calibration,
                const quantlens::QuantConfig& method, const quantlens::CalibrationConfig& config,
                const std::map<std::string, std::string>& metadata, quantlens::DType dtype,
                const std::filesystem::path& directory, const quantlens::JobContext& job) {
    quantlens::DenseCheckpointWriter writer(model, directory, dtype, metadata);
    quantlens::quantizeModel(
        model, calibration, method, config,
        [&](int block, const std::string& name, const quantlens::QuantizedLayer&,
            const quantlens::RowMatrix& weights) { writer.writeLayer(block, name, weights); },
        job);
    writer.commit();
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
    };
}

QString exportUnavailable(const quantlens::QuantConfig& method, const QString& format) {
    if (format == keyOf(EngineFormat::Gptq) &&
        !std::holds_alternative<quantlens::RtnConfig>(method) &&
        !std::holds_alternative<quantlens::GptqConfig>(method))
        return QObject::tr("The GPTQ checkpoint layout holds RTN and GPTQ runs only; this run is "
                           "%1. Export it as a Quantlens checkpoint or as dense safetensors.")
            .arg(methodLabel(method));
    return {};
}

void exportModel(const quantlens::Model& model, std::span<const std::int32_t> calibration,
                 const quantlens::QuantConfig& method, const quantlens::CalibrationConfig& config,
                 const QString& format, const QString& directory,
                 const quantlens::JobContext& job) {
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
    const std::map<std::string, std::string> metadata{
        {"quantlens.method", quantlens::describe(method)},
        {"quantlens.source", model.path.string()}};
    switch (kind) {
    case EngineFormat::Quantlens:
        writeQuantlens(model, calibration, method, config, metadata, path, job);
        return;
    case EngineFormat::DenseF32:
        writeDense(model, calibration, method, config, metadata, quantlens::DType::F32, path, job);
        return;
    case EngineFormat::DenseF16:
        writeDense(model, calibration, method, config, metadata, quantlens::DType::F16, path, job);
        return;
    case EngineFormat::DenseBf16:
        writeDense(model, calibration, method, config, metadata, quantlens::DType::BF16, path, job);
        return;
    case EngineFormat::Gptq: {
        // The GPTQ writer reads compressed layers back from a quantlens checkpoint.
        const QTemporaryDir staging;
        if (!staging.isValid())
            throw quantlens::Error(QDir::tempPath().toStdString(),
                                   "cannot create a staging directory: " +
                                       staging.errorString().toStdString());
        const std::filesystem::path compressed = staging.filePath("quantlens").toStdString();
        writeQuantlens(model, calibration, method, config, metadata, compressed, job);
        quantlens::exportModel(compressed, kind, path, job);
        return;
    }
    }
}
