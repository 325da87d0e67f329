#pragma once

#include "quantlens/core/job.h"
#include "quantlens/formats/gguf_writer.h"
#include "quantlens/formats/hf_spqr_writer.h"
#include "quantlens/quantization/model_quantizer.h"

#include <cstdint>
#include <filesystem>
#include <map>
#include <optional>
#include <span>
#include <string>
#include <string_view>

namespace quantlens {

// What `quantlens-cli quantize` and `export` and the studio write (docs/DESIGN.md, Export formats).
enum class ExportFormat {
    Quantlens, // the compressed checkpoint, validated and re-written array for array
    DenseF32,  // the dequantized weights, for any Hugging Face runtime
    DenseF16,
    DenseBf16,
    Gptq,   // AutoGPTQ / transformers' GPTQ checkpoint layout (rtn and gptq layers)
    HfSpqr, // transformers' SpQR format (spqr w3, β1 = β2 = 16, qq 3; docs/HF_SPQR.md)
};

// "quantlens", "dense-f32", "dense-f16", "dense-bf16", "gptq", "hf-spqr"; throws Error for
// anything else.
ExportFormat parseExportFormat(std::string_view name);
std::string exportFormatName(ExportFormat format);

struct ExportResult {
    std::uintmax_t fileBytes = 0; // of the written model.safetensors
    std::int64_t layers = 0;      // linear layers converted
    // GPTQ exports: the checkpoint_format written, "gptq" (zero − 1 in qzeros, AutoGPTQ's v1) or
    // "gptq_v2" (the zero itself) when some group has a zero point of 0 next to its largest code.
    std::string gptqFormat;
    // hf-spqr exports: which linear layers the kernels run and which stay fp16, and the bits.
    std::optional<HfSpqrResult> hfSpqr;
};

// Why `format` cannot hold layers quantized with `plan`, as a sentence naming the method or the
// setting, or "" when it can: the GPTQ layout holds RTN and GPTQ layers with one setting for all,
// the Hugging Face SpQR format SpQR with wbits 3, groupsize 16, qq_bits 3 and stats_groupsize 16
// only.
std::string formatUnavailable(ExportFormat format, const QuantPlan& plan);
bool formatHolds(ExportFormat format, const QuantPlan& plan);

// What an interrupted quantization leaves for the next run: nothing (Restart), or a journal
// beside the output from which a run of the same quantization continues after the last complete
// block (Resume; formats/run_journal.h).
enum class Interruption { Restart, Resume };

// The one job behind every quantized output (`quantlens-cli quantize`, the studio's export):
// quantizes `model` with `plan` (quantizeModel) and writes it into `output` in `format`, each
// layer streamed as it is final (GPTQ and hf-spqr: through a staged quantlens checkpoint, as
// `export` converts it). `metadata` goes into the safetensors header. The directory appears whole
// or not at all: a failure, a cancel or a full disk leaves no trace and an existing output
// untouched. With Interruption::Resume the journal of an interrupted run is continued (or one is
// started) and removed once the output is committed; the output is byte for byte what an
// uninterrupted run writes. Throws Error naming `output` for a format that cannot hold `method`
// (formatUnavailable), before quantizing, and naming the journal when it belongs to another run.
QuantizeResult quantizeToDirectory(const Model& model, std::span<const std::int32_t> calibration,
                                   const QuantPlan& plan, const CalibrationConfig& config,
                                   ExportFormat format, const std::filesystem::path& output,
                                   const std::map<std::string, std::string>& metadata,
                                   const JobContext& job,
                                   Interruption interruption = Interruption::Restart);

// Reads the quantlens checkpoint `input` (every array validated) and writes `output` in `format`.
// The output directory appears whole or not at all: a failure, a cancel or a full disk leaves no
// trace and an existing output untouched (AtomicDirectory). `job` is checked between layers.
ExportResult exportModel(const std::filesystem::path& input, ExportFormat format,
                         const std::filesystem::path& output, const JobContext& job);

// `export --format gguf`: GGUF is one file, not a directory, so it has its own entry point. Loads
// `input` (a quantlens checkpoint, kept compressed so that its grids can be moved exactly, or any
// model loadModel reads) and writes the GGUF file `output` (writeGguf, docs/GGUF.md), which
// appears whole or not at all.
GgufResult exportGguf(const std::filesystem::path& input, const std::filesystem::path& output,
                      const GgufOptions& options, const JobContext& job);

// Quantizes `model` with `plan` and writes the GGUF file `file` (the studio's GGUF export):
// through a quantlens checkpoint staged beside the file and never committed, as exportGguf reads
// one. The file appears whole or not at all; an exact export whose grids are no GGUF block type
// is refused after quantizing, with the layer and the reason.
GgufResult quantizeToGguf(const Model& model, std::span<const std::int32_t> calibration,
                          const QuantPlan& plan, const CalibrationConfig& config,
                          const std::filesystem::path& file, const GgufOptions& options,
                          const std::map<std::string, std::string>& metadata,
                          const JobContext& job);

} // namespace quantlens
