#pragma once

#include "quantlens/core/dtype.h"

#include <cstdint>
#include <filesystem>
#include <string>
#include <vector>

namespace quantlens {

// How RoPE pairs the dimensions of a head: Hugging Face rotates halves (i, i + d/2); llama2.c
// rotates interleaved pairs (2i, 2i + 1).
enum class RopeLayout { RotateHalf, Interleaved };

struct ModelConfig {
    int hiddenSize = 0;       // dim
    int intermediateSize = 0; // FFN width
    int layerCount = 0;
    int headCount = 0;
    int kvHeadCount = 0;
    int headDim = 0;
    int vocabSize = 0;
    int maxPositions = 0;
    float rmsNormEps = 1e-5f;
    float ropeTheta = 10000.0f;
    RopeLayout ropeLayout = RopeLayout::RotateHalf;
    bool tiedEmbeddings = false;
    int bosToken = 1;
    std::vector<int> eosTokens{2}; // generation stops at any of them (Llama 3 lists several)

    int kvDim() const { return kvHeadCount * headDim; }
    // Throws Error(source, …) naming the first inconsistent field.
    void validate(const std::string& source) const;
};

// Parses a Hugging Face LlamaForCausalLM config.json.
ModelConfig readHfConfig(const std::filesystem::path& configJson);

// A Hugging Face config.json (text) describing `config` with weights stored as `dtype`; for
// checkpoints Quantlens writes (converted llama2.c models, synthetic models).
std::string hfConfigJson(const ModelConfig& config, DType dtype);
// The name config.json gives a dtype ("float32", "float16", "bfloat16").
std::string torchDtypeName(DType dtype);

} // namespace quantlens
