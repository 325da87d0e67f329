#include "quantlens/model_export.h"

#include "quantlens/atomic_directory.h"
#include "quantlens/compressed_linear.h"
#include "quantlens/dense_checkpoint_writer.h"
#include "quantlens/error.h"
#include "quantlens/gptq_checkpoint.h"
#include "quantlens/model.h"
#include "quantlens/model_quantizer.h"
#include "quantlens/quantlens_checkpoint.h"

namespace quantlens {

namespace {

// One progress report per block, so a caller can show progress and a time left.
void reportBlock(const JobContext& job, int block, int blocks) {
    job.checkpoint();
    job.report(static_cast<double>(block) / blocks, "export block " + std::to_string(block));
}

// A dense or GPTQ checkpoint of `model` written into `directory`.
void writeConverted(const Model& model, ExportFormat format, const std::filesystem::path& directory,
                    const std::map<std::string, std::string>& metadata, const JobContext& job,
                    ExportResult& result) {
    const int blocks = model.config.layerCount;
    const auto layer = [&](int b, int i) {
        return model.compressedLayers[static_cast<std::size_t>(b)][static_cast<std::size_t>(i)]
            ->quantizedLayer();
    };
    if (format == ExportFormat::Gptq) {
        result.gptqFormat =
            writeGptqCheckpoint(model, directory, job) == GptqZeros::V1 ? "gptq" : "gptq_v2";
        return;
    }
    const DType dtype = format == ExportFormat::DenseF32   ? DType::F32
                        : format == ExportFormat::DenseF16 ? DType::F16
                                                           : DType::BF16;
    DenseCheckpointWriter writer(model, directory, dtype, metadata);
    for (int b = 0; b < blocks; ++b) {
        reportBlock(job, b, blocks);
        for (int i = 0; i < 7; ++i)
            writer.writeLayer(b, kLinearLayerNames[i], layer(b, i).dequantize());
    }
    writer.commit();
}

} // namespace

ExportFormat parseExportFormat(std::string_view name) {
    for (const ExportFormat format :
         {ExportFormat::Quantlens, ExportFormat::DenseF32, ExportFormat::DenseF16,
          ExportFormat::DenseBf16, ExportFormat::Gptq})
        if (exportFormatName(format) == name) return format;
    throw Error("", "unknown export format '" + std::string(name) +
                        "' (quantlens, dense-f32, dense-f16, dense-bf16 or gptq)");
}

std::string exportFormatName(ExportFormat format) {
    switch (format) {
    case ExportFormat::Quantlens:
        return "quantlens";
    case ExportFormat::DenseF32:
        return "dense-f32";
    case ExportFormat::DenseF16:
        return "dense-f16";
    case ExportFormat::DenseBf16:
        return "dense-bf16";
    case ExportFormat::Gptq:
        return "gptq";
    }
    return "?";
}

ExportResult exportModel(const std::filesystem::path& input, ExportFormat format,
                         const std::filesystem::path& output, const JobContext& job) {
    if (!isQuantlensCheckpoint(input))
        throw Error(input.string(), "is not a quantlens checkpoint (export reads the directories "
                                    "`quantize --format quantlens` writes)");
    const auto model = loadQuantlensModel(input, CompressedLayers::Keep);
    const int blocks = model->config.layerCount;
    const auto layer = [&](int b, int i) {
        return model->compressedLayers[static_cast<std::size_t>(b)][static_cast<std::size_t>(i)]
            ->quantizedLayer();
    };
    const std::map<std::string, std::string> metadata = {
        {"quantlens.exported_from", input.string()}};
    ExportResult result;
    result.layers = static_cast<std::int64_t>(blocks) * 7;

    if (format == ExportFormat::Quantlens) {
        QuantlensWriter writer(*model, output, metadata);
        for (int b = 0; b < blocks; ++b) {
            reportBlock(job, b, blocks);
            for (int i = 0; i < 7; ++i)
                writer.writeLayer(b, kLinearLayerNames[i], layer(b, i));
        }
        job.checkpoint();
        writer.commit();
    } else {
        AtomicDirectory directory(output);
        try {
            writeConverted(*model, format, directory.path(), metadata, job, result);
        } catch (const Cancelled&) {
            throw;
        } catch (const Error& e) {
            throw directory.attributed(e);
        }
        job.checkpoint(); // a cancel during the last block still leaves nothing
        directory.commit();
    }
    result.fileBytes = std::filesystem::file_size(output / "model.safetensors");
    return result;
}

} // namespace quantlens
