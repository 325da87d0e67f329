#pragma once

#include "quantlens/core/float_tensor.h"
#include "quantlens/core/job.h"
#include "quantlens/model/model_config.h"

#include <cstdint>
#include <filesystem>
#include <string>
#include <string_view>

namespace quantlens {

// The shape of a synthetic LLaMA checkpoint: for speed and memory work at realistic sizes, where no
// real multi-billion-parameter model can be fetched. Its weights carry no knowledge; quality claims
// are made on real models only.
struct SyntheticModelSpec {
    // Mistral gets a 4096-key window, Qwen2 q/k/v biases, Qwen3 q/k norms (and `headDim`).
    Architecture architecture = Architecture::Llama;
    int hiddenSize = 4096;
    int intermediateSize = 11008;
    int layers = 32;
    int heads = 32;
    int kvHeads = 32;
    int headDim = 0; // 0: hiddenSize / heads
    int vocab = 32000;
    int maxPositions = 4096;
    std::string dtype = "F16"; // F16, BF16 or F32
    std::uint64_t seed = 1;
};

// "7b" (the LLaMA-7B shape) or "tiny" (dim 256, FFN 688, 4 layers, vocabulary 512, for tests).
SyntheticModelSpec syntheticModelPreset(std::string_view name);

// Writes `directory`/config.json (the spec's class, untied lm_head) and model.safetensors, one
// tensor at a time so memory holds at most one tensor. Weights are heavy-tailed (tails like
// Student-t with 4 degrees of freedom, std ≈ 0.02) with a few outlier input columns (×10–20) and
// output rows (×4–8), as real LLMs have; norm weights are ≈ 1, biases heavy-tailed with std 0.02.
// The bytes depend only on the spec, identical on every platform and thread count; a tensor depends
// only on its name, shape and the seed, so a smaller layer count gives a prefix of the same model.
// Cancelled or failed, it leaves no file.
void writeSyntheticModel(const SyntheticModelSpec& spec, const std::filesystem::path& directory,
                         const JobContext& job);

// The fp32 values writeSyntheticModel() draws for a matrix tensor `name` of shape [rows, cols]
// (before rounding to the stored dtype): a realistic layer without a checkpoint, for benchmarks.
RowMatrix syntheticMatrix(std::int64_t rows, std::int64_t cols, std::uint64_t seed,
                          const std::string& name);

} // namespace quantlens
