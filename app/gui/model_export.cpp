#include "model_export.h"

#include "run_description.h"

#include "quantlens/core/error.h"
#include "quantlens/formats/model_export.h"

#include <QObject>

#include <cstring>
#include <optional>

namespace {

// The engine's formats; ExportFormat is the dialog's key and label.
using EngineFormat = quantlens::ExportFormat;

QString keyOf(EngineFormat format) {
    return QString::fromStdString(quantlens::exportFormatName(format));
}

// GGUF is a file, not a directory, so it is no EngineFormat: "gguf" is the exact export,
// "gguf-q8_0" and the like ask for that type (an approximation with its error measured).
constexpr const char* kGgufKey = "gguf";

std::optional<quantlens::GgufOptions> ggufOptions(const QString& format) {
    if (format == kGgufKey) return quantlens::GgufOptions{};
    if (!format.startsWith(QString(kGgufKey) + "-")) return std::nullopt;
    quantlens::GgufOptions options;
    options.type =
        quantlens::parseGgufType(format.mid(int(std::strlen(kGgufKey)) + 1).toStdString());
    return options;
}

QString ggufKey(quantlens::GgufType type) {
    return QString(kGgufKey) + "-" + QString::fromStdString(quantlens::ggufTypeName(type));
}

} // namespace

QList<ExportFormat> exportFormats() {
    QList<ExportFormat> formats{
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
        {kGgufKey, QObject::tr("GGUF file for llama.cpp, exact (RTN/GPTQ grids as Q4_1/Q5_1/Q8_0 "
                               "blocks; refused where a grid is no block type)")},
    };
    // Every type `export --gguf-type` takes, as approximations whose error is reported.
    for (const quantlens::GgufType type :
         {quantlens::GgufType::Q8_0, quantlens::GgufType::Q5_1, quantlens::GgufType::Q4_1,
          quantlens::GgufType::F16, quantlens::GgufType::BF16, quantlens::GgufType::F32})
        formats.push_back(
            {ggufKey(type),
             QObject::tr("GGUF file for llama.cpp, %1 (from the run's weights; exact "
                         "where a layer's grid is that type, else its error is "
                         "reported)")
                 .arg(QString::fromStdString(quantlens::ggufTypeName(type)).toUpper())});
    return formats;
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
    if (format == kGgufKey && !std::holds_alternative<quantlens::RtnConfig>(method) &&
        !std::holds_alternative<quantlens::GptqConfig>(method))
        return QObject::tr("An exact GGUF holds RTN and GPTQ grids only; this run is %1. Export "
                           "it as GGUF Q8_0 or F16 (an approximation, its error reported).")
            .arg(methodLabel(method));
    return {};
}

void exportModel(const quantlens::Model& model, std::span<const std::int32_t> calibration,
                 const quantlens::QuantPlan& plan, const quantlens::CalibrationConfig& config,
                 const QString& format, const QString& directory,
                 quantlens::Interruption interruption, const quantlens::JobContext& job) {
    const std::string path = directory.toStdString();
    const quantlens::QuantConfig& method = plan.method();
    const std::map<std::string, std::string> metadata = {
        {"quantlens.method", quantlens::describe(method)},
        {"quantlens.source", model.path.string()}};
    if (const auto gguf = ggufOptions(format)) {
        if (const QString why = exportUnavailable(method, format); !why.isEmpty())
            throw quantlens::Error(path, why.toStdString());
        quantlens::quantizeToGguf(model, calibration, plan, config, path, *gguf, metadata, job);
        return;
    }
    const EngineFormat kind = [&] {
        try {
            return quantlens::parseExportFormat(format.toStdString());
        } catch (const quantlens::Error& error) {
            throw quantlens::Error(path, error.message());
        }
    }();
    if (const QString why = exportUnavailable(method, format); !why.isEmpty())
        throw quantlens::Error(path, why.toStdString());
    quantlens::quantizeToDirectory(model, calibration, plan, config, kind, path, metadata, job,
                                   interruption);
}
