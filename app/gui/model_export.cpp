#include "model_export.h"

#include "quantlens/dense_checkpoint_writer.h"
#include "quantlens/error.h"
#include "quantlens/quantlens_checkpoint.h"

#include <QObject>

QList<ExportFormat> exportFormats() {
    return {{"quantlens", QObject::tr("Quantlens checkpoint (compressed, as quantized)")},
            {"dense-f16", QObject::tr("Dense safetensors, F16 (dequantized; any HF runtime)")},
            {"dense-bf16", QObject::tr("Dense safetensors, BF16 (dequantized)")},
            {"dense-f32", QObject::tr("Dense safetensors, F32 (dequantized)")}};
}

void exportModel(const quantlens::Model& model, std::span<const std::int32_t> calibration,
                 const quantlens::QuantConfig& method, const quantlens::CalibrationConfig& config,
                 const QString& format, const QString& directory,
                 const quantlens::JobContext& job) {
    const std::map<std::string, std::string> metadata{
        {"quantlens.method", quantlens::describe(method)},
        {"quantlens.source", model.path.string()}};
    const std::string path = directory.toStdString();
    if (format == "quantlens") {
        quantlens::QuantlensWriter writer(model, path, metadata);
        quantlens::quantizeModel(
            model, calibration, method, config,
            [&](int block, const std::string& name, const quantlens::QuantizedLayer& layer,
                const quantlens::RowMatrix&) { writer.writeLayer(block, name, layer); },
            job);
        writer.commit();
        return;
    }
    const auto dtype = format.startsWith("dense-")
                           ? quantlens::parseDType(format.mid(6).toUpper().toStdString())
                           : std::nullopt;
    if (!dtype)
        throw quantlens::Error(path, "unknown export format \"" + format.toStdString() + "\"");
    quantlens::DenseCheckpointWriter writer(model, path, *dtype, metadata);
    quantlens::quantizeModel(
        model, calibration, method, config,
        [&](int block, const std::string& name, const quantlens::QuantizedLayer&,
            const quantlens::RowMatrix& weights) { writer.writeLayer(block, name, weights); },
        job);
    writer.commit();
}
