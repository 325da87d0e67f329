#include "quantlens/formats/model_export.h"

#include "quantlens/core/error.h"
#include "quantlens/formats/dense_checkpoint_writer.h"
#include "quantlens/formats/gptq_checkpoint.h"
#include "quantlens/formats/hf_spqr_writer.h"
#include "quantlens/formats/model_loading.h"
#include "quantlens/formats/quantlens_checkpoint.h"
#include "quantlens/formats/run_journal.h"
#include "quantlens/io/atomic_directory.h"
#include "quantlens/model/model.h"
#include "quantlens/runtime/compressed_linear.h"

namespace quantlens {

namespace {

// One progress report per block, so a caller can show progress and a time left.
void reportBlock(const JobContext& job, int block, int blocks) {
    job.checkpoint();
    job.report(static_cast<double>(block) / blocks, "export block " + std::to_string(block));
}

DType denseDType(ExportFormat format) {
    return format == ExportFormat::DenseF32   ? DType::F32
           : format == ExportFormat::DenseF16 ? DType::F16
                                              : DType::BF16;
}

// Runs `body` with a staging directory for `output` and commits it, errors from inside it
// attributed to the files the user named; a cancel or an error leaves nothing.
template <class Body>
void intoAtomicDirectory(const std::filesystem::path& output, const JobContext& job, Body&& body) {
    AtomicDirectory directory(output);
    try {
        body(directory.path());
    } catch (const Cancelled&) {
        throw;
    } catch (const Error& e) {
        throw directory.attributed(e);
    }
    job.checkpoint(); // a cancel during the last layer still leaves nothing
    directory.commit();
}

// Linear layer `layer` of block `block` of a model loaded with CompressedLayers::Keep.
QuantizedLayer layerOf(const Model& model, int block, int layer) {
    return model.compressedLayers[static_cast<std::size_t>(block)][static_cast<std::size_t>(layer)]
        ->quantizedLayer();
}

// A dense, GPTQ or Hugging Face SpQR checkpoint of `model` written into `directory`.
void writeConverted(const Model& model, ExportFormat format, const std::filesystem::path& directory,
                    const std::map<std::string, std::string>& metadata, const JobContext& job,
                    ExportResult& result) {
    const int blocks = model.config.layerCount;
    if (format == ExportFormat::Gptq) {
        result.gptqFormat =
            writeGptqCheckpoint(model, directory, job) == GptqZeros::V1 ? "gptq" : "gptq_v2";
        return;
    }
    if (format == ExportFormat::HfSpqr) {
        result.hfSpqr = writeHfSpqrCheckpoint(model, directory, job);
        return;
    }
    DenseCheckpointWriter writer(model, directory, denseDType(format), metadata);
    for (int b = 0; b < blocks; ++b) {
        reportBlock(job, b, blocks);
        for (int i = 0; i < 7; ++i)
            writer.writeLayer(b, kLinearLayers[i].name, layerOf(model, b, i).dequantize());
    }
    writer.commit();
}

} // namespace

ExportFormat parseExportFormat(std::string_view name) {
    for (const ExportFormat format :
         {ExportFormat::Quantlens, ExportFormat::DenseF32, ExportFormat::DenseF16,
          ExportFormat::DenseBf16, ExportFormat::Gptq, ExportFormat::HfSpqr})
        if (exportFormatName(format) == name) return format;
    throw Error("", "unknown export format '" + std::string(name) +
                        "' (quantlens, dense-f32, dense-f16, dense-bf16, gptq or hf-spqr)");
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
    case ExportFormat::HfSpqr:
        return "hf-spqr";
    }
    return "?";
}

std::string formatUnavailable(ExportFormat format, const QuantPlan& plan) {
    const QuantConfig& method = plan.method();
    if (format == ExportFormat::Gptq && !std::holds_alternative<RtnConfig>(method) &&
        !std::holds_alternative<GptqConfig>(method))
        return "the GPTQ layout holds only rtn and gptq layers; a " + methodName(method) +
               " run is written as quantlens or dense";
    // Its quantization_config has one bits and group size for the whole model.
    if (format == ExportFormat::Gptq && !plan.isUniform())
        return "the GPTQ layout has one setting for every layer; a run with per-layer settings "
               "is written as quantlens, gguf or dense";
    if (format == ExportFormat::HfSpqr) {
        std::vector<QuantConfig> layers = plan.layers();
        layers.push_back(method);
        for (const QuantConfig& layer : layers)
            if (const std::string why = hfSpqrSettingMismatch(layer); !why.empty())
                return "the Hugging Face SpQR format cannot hold this run: " + why;
    }
    return "";
}

bool formatHolds(ExportFormat format, const QuantPlan& plan) {
    return formatUnavailable(format, plan).empty();
}

QuantizeResult quantizeToDirectory(const Model& model, std::span<const std::int32_t> calibration,
                                   const QuantPlan& plan, const CalibrationConfig& config,
                                   ExportFormat format, const std::filesystem::path& output,
                                   const std::map<std::string, std::string>& metadata,
                                   const JobContext& job, Interruption interruption) {
    if (const std::string why = formatUnavailable(format, plan); !why.empty())
        throw Error(output.string(), why);
    std::optional<RunJournal> journal;
    if (interruption == Interruption::Resume)
        journal.emplace(output, model, calibration, plan, config, exportFormatName(format));
    const auto quantize = [&](const QuantizedLayerSink& sink) {
        return quantizeModel(model, calibration, plan, config, sink, job,
                             journal ? &*journal : nullptr);
    };
    const auto writeQuantlens = [&](const std::filesystem::path& directory) {
        QuantlensWriter writer(model, directory, metadata);
        const QuantizeResult result =
            quantize([&](int block, const std::string& name, const QuantizedLayer& layer,
                         const RowMatrix&) { writer.writeLayer(block, name, layer); });
        job.checkpoint();
        writer.commit(); // atomic itself
        return result;
    };
    QuantizeResult result;
    switch (format) {
    case ExportFormat::Quantlens:
        result = writeQuantlens(output);
        break;
    case ExportFormat::Gptq:
    case ExportFormat::HfSpqr: {
        // The GPTQ and Hugging Face SpQR writers read the compressed layers back from a quantlens
        // checkpoint, staged beside the output and never committed.
        const AtomicDirectory staging(output.string() + ".quantlens");
        result = writeQuantlens(staging.path() / "quantlens");
        exportModel(staging.path() / "quantlens", format, output, job);
        break;
    }
    default:
        intoAtomicDirectory(output, job, [&](const std::filesystem::path& staging) {
            DenseCheckpointWriter writer(model, staging, denseDType(format), metadata);
            result = quantize(
                [&](int block, const std::string& name, const QuantizedLayer&,
                    const RowMatrix& weights) { writer.writeLayer(block, name, weights); });
            writer.commit();
        });
    }
    if (journal) journal->remove();
    return result;
}

ExportResult exportModel(const std::filesystem::path& input, ExportFormat format,
                         const std::filesystem::path& output, const JobContext& job) {
    if (!isQuantlensCheckpoint(input))
        throw Error(input.string(), "is not a quantlens checkpoint (export reads the directories "
                                    "`quantize --format quantlens` writes)");
    const auto model = loadQuantlensModel(input, CompressedLayers::Keep);
    const int blocks = model->config.layerCount;
    const std::map<std::string, std::string> metadata = {
        {"quantlens.exported_from", input.string()}};
    ExportResult result;
    result.layers = static_cast<std::int64_t>(blocks) * 7;

    if (format == ExportFormat::Quantlens) {
        QuantlensWriter writer(*model, output, metadata);
        for (int b = 0; b < blocks; ++b) {
            reportBlock(job, b, blocks);
            for (int i = 0; i < 7; ++i)
                writer.writeLayer(b, kLinearLayers[i].name, layerOf(*model, b, i));
        }
        job.checkpoint();
        writer.commit();
    } else {
        intoAtomicDirectory(output, job, [&](const std::filesystem::path& staging) {
            writeConverted(*model, format, staging, metadata, job, result);
        });
    }
    result.fileBytes = std::filesystem::file_size(output / "model.safetensors");
    return result;
}

GgufResult exportGguf(const std::filesystem::path& input, const std::filesystem::path& output,
                      const GgufOptions& options, const JobContext& job) {
    const auto model = loadModel(input, CompressedLayers::Keep);
    return writeGguf(*model, output, options, job);
}

GgufResult quantizeToGguf(const Model& model, std::span<const std::int32_t> calibration,
                          const QuantPlan& plan, const CalibrationConfig& config,
                          const std::filesystem::path& file, const GgufOptions& options,
                          const std::map<std::string, std::string>& metadata,
                          const JobContext& job) {
    const AtomicDirectory staging(file.string() + ".quantlens");
    const std::filesystem::path checkpoint = staging.path() / "quantlens";
    quantizeToDirectory(model, calibration, plan, config, ExportFormat::Quantlens, checkpoint,
                        metadata, JobContext(job, 0.0, 0.95));
    return exportGguf(checkpoint, file, options, JobContext(job, 0.95, 1.0));
}

} // namespace quantlens
