#pragma once

#include "quantlens/job.h"

#include <cstdint>
#include <filesystem>
#include <string>
#include <string_view>

namespace quantlens {

// What `quantlens-cli export` writes (DESIGN.md §Export formats).
enum class ExportFormat {
    Quantlens, // the compressed checkpoint, validated and re-written array for array
    DenseF32,  // the dequantized weights, for any Hugging Face runtime
    DenseF16,
    DenseBf16,
    Gptq, // AutoGPTQ / transformers' GPTQ checkpoint layout (rtn and gptq layers)
};

// "quantlens", "dense-f32", "dense-f16", "dense-bf16", "gptq"; throws Error for anything else.
ExportFormat parseExportFormat(std::string_view name);
std::string exportFormatName(ExportFormat format);

struct ExportResult {
    std::uintmax_t fileBytes = 0; // of the written model.safetensors
    std::int64_t layers = 0;      // linear layers converted
    // GPTQ exports: the checkpoint_format written, "gptq" (zero − 1 in qzeros, AutoGPTQ's v1) or
    // "gptq_v2" (the zero itself) when some group has a zero point of 0 next to its largest code.
    std::string gptqFormat;
};

// Reads the quantlens checkpoint `input` (every array validated) and writes `output` in `format`.
// The output directory appears whole or not at all: a failure, a cancel or a full disk leaves no
// trace and an existing output untouched (AtomicDirectory). `job` is checked between layers.
ExportResult exportModel(const std::filesystem::path& input, ExportFormat format,
                         const std::filesystem::path& output, const JobContext& job);

} // namespace quantlens
