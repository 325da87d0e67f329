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

// The Hugging Face classes Quantlens reads. Mistral is LLaMA with a sliding attention window;
// Qwen2 (Qwen2 and Qwen2.5) is LLaMA with biases on q, k and v; Qwen3 is LLaMA with an RMSNorm on
// each query and key head before RoPE, and heads wider than hidden / heads.
enum class Architecture { Llama, Mistral, Qwen2, Qwen3 };
std::string architectureName(Architecture architecture); // "LlamaForCausalLM", …

// Hugging Face's rope_scaling: how RoPE's inverse frequencies are stretched beyond the context a
// model was pretrained at. Linear divides every one by `factor`; Llama3 (Llama 3.1–3.3) divides the
// low frequencies, keeps the high ones and blends the band between (HF's
// _compute_llama3_parameters).
enum class RopeScaling { None, Linear, Llama3 };
struct RopeScalingConfig {
    RopeScaling type = RopeScaling::None;
    float factor = 1.0f;
    float lowFreqFactor = 1.0f;   // Llama3
    float highFreqFactor = 4.0f;  // Llama3
    int originalMaxPositions = 0; // Llama3: the pretraining context
};

struct ModelConfig {
    Architecture architecture = Architecture::Llama;
    int hiddenSize = 0;       // dim
    int intermediateSize = 0; // FFN width
    int layerCount = 0;
    int headCount = 0;
    int kvHeadCount = 0;
    int headDim = 0; // hidden / heads unless the config says otherwise (Qwen3)
    int vocabSize = 0;
    int maxPositions = 0;
    float rmsNormEps = 1e-5f;
    float ropeTheta = 10000.0f;
    RopeScalingConfig ropeScaling;
    RopeLayout ropeLayout = RopeLayout::RotateHalf;
    // Mistral: a query at position t sees the keys at t − W < s ≤ t; 0 sees every earlier key.
    int slidingWindow = 0;
    bool attentionBias = false; // Qwen2: q, k and v add a bias
    bool qkNorm = false;        // Qwen3: q_norm and k_norm [headDim] on every head before RoPE

    bool tiedEmbeddings = false;
    int bosToken = 1;
    std::vector<int> eosTokens{2}; // generation stops at any of them (Llama 3 lists several)

    int queryDim() const { return headCount * headDim; } // q_proj's output, o_proj's input
    int kvDim() const { return kvHeadCount * headDim; }
    // What the architecture changes in the math, for people: "rope llama3 ×8 (low 1, high 4,
    // original context 64)", "sliding window 32"; "" for plain LLaMA.
    std::string features() const;
    // Throws Error(source, …) naming the first inconsistent field.
    void validate(const std::string& source) const;
};

// hidden / heads, the head width when a config gives none; throws Error(source, …) when the heads
// do not divide the hidden size.
int defaultHeadDim(int hiddenSize, int headCount, const std::string& source);

// Parses a Hugging Face config.json of a LlamaForCausalLM (Llama 1/2/3.x), MistralForCausalLM,
// Qwen2ForCausalLM (Qwen2, Qwen2.5) or Qwen3ForCausalLM (dense Qwen3) model. Every key the math
// depends on is checked; one that would change it in a way Quantlens does not implement (biases,
// another rope_scaling type, other architectures) is refused by name.
ModelConfig readHfConfig(const std::filesystem::path& configJson);

// A Hugging Face config.json (text) describing `config` with weights stored as `dtype`; for
// checkpoints Quantlens writes (converted llama2.c models, synthetic models).
std::string hfConfigJson(const ModelConfig& config, DType dtype);
// The name config.json gives a dtype ("float32", "float16", "bfloat16").
std::string torchDtypeName(DType dtype);

} // namespace quantlens
