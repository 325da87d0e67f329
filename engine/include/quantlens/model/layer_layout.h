#pragma once

#include "quantlens/core/tensor_view.h"

#include <array>
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

namespace quantlens {

struct ModelConfig;

// The one table of what a transformer block holds and what each linear layer is called, read by
// every loader, writer, analysis and widget (as llama.cpp keeps its tensor names in one place).
// An architecture's extra tensors (biases, q/k norms, fused projections) hang off these rows.

// The inputs of a block's linear layers, in the order they are computed: q/k/v share one input,
// then o_proj's, then gate/up's shared one, then down_proj's.
enum class LinearStage { Attention, AttentionOutput, Mlp, MlpOutput };
inline constexpr LinearStage kLinearStages[] = {
    LinearStage::Attention, LinearStage::AttentionOutput, LinearStage::Mlp, LinearStage::MlpOutput};

// Which axis of a linear layer's weight [rows = out, cols = in] splits into attention heads.
enum class HeadAxis { None, Rows, Columns };

// The widths a linear layer maps between.
enum class LayerWidth { Hidden, KeyValue, Intermediate };

struct BlockWeights;

struct LinearLayerSpec {
    const char* name; // Hugging Face's short name, "q_proj"
    const char* path; // under the block's prefix, "self_attn.q_proj"
    LinearStage stage;
    HeadAxis heads;
    bool rotary; // its output carries RoPE (q and k)
    LayerWidth out, in;
    TensorView BlockWeights::*weights;
};

struct NormSpec {
    const char* path; // under the block's prefix
    TensorView BlockWeights::*weights;
};

struct BlockWeights {
    TensorView attnNorm, wq, wk, wv, wo;
    TensorView ffnNorm, gate, up, down;

    // The seven linear layers in kLinearLayers order.
    std::array<const TensorView*, 7> linearLayers() const;
};

inline constexpr int kLinearLayerCount = 7;

// The order in which the linear layers are quantized, stored and reported.
inline constexpr std::array<LinearLayerSpec, kLinearLayerCount> kLinearLayers{{
    {"q_proj", "self_attn.q_proj", LinearStage::Attention, HeadAxis::Rows, true, LayerWidth::Hidden,
     LayerWidth::Hidden, &BlockWeights::wq},
    {"k_proj", "self_attn.k_proj", LinearStage::Attention, HeadAxis::Rows, true,
     LayerWidth::KeyValue, LayerWidth::Hidden, &BlockWeights::wk},
    {"v_proj", "self_attn.v_proj", LinearStage::Attention, HeadAxis::Rows, false,
     LayerWidth::KeyValue, LayerWidth::Hidden, &BlockWeights::wv},
    {"o_proj", "self_attn.o_proj", LinearStage::AttentionOutput, HeadAxis::Columns, false,
     LayerWidth::Hidden, LayerWidth::Hidden, &BlockWeights::wo},
    {"gate_proj", "mlp.gate_proj", LinearStage::Mlp, HeadAxis::None, false,
     LayerWidth::Intermediate, LayerWidth::Hidden, &BlockWeights::gate},
    {"up_proj", "mlp.up_proj", LinearStage::Mlp, HeadAxis::None, false, LayerWidth::Intermediate,
     LayerWidth::Hidden, &BlockWeights::up},
    {"down_proj", "mlp.down_proj", LinearStage::MlpOutput, HeadAxis::None, false,
     LayerWidth::Hidden, LayerWidth::Intermediate, &BlockWeights::down},
}};

inline constexpr NormSpec kAttentionNorm{"input_layernorm", &BlockWeights::attnNorm};
inline constexpr NormSpec kMlpNorm{"post_attention_layernorm", &BlockWeights::ffnNorm};

// A block's tensors in Hugging Face's order: the attention norm, q, k, v, o, the MLP norm, gate,
// up, down. `linear` indexes kLinearLayers, −1 for a norm.
struct BlockTensorSpec {
    const char* path;
    TensorView BlockWeights::*weights;
    int linear;
};
inline constexpr std::array<BlockTensorSpec, 9> kBlockTensors{{
    {kAttentionNorm.path, kAttentionNorm.weights, -1},
    {kLinearLayers[0].path, kLinearLayers[0].weights, 0},
    {kLinearLayers[1].path, kLinearLayers[1].weights, 1},
    {kLinearLayers[2].path, kLinearLayers[2].weights, 2},
    {kLinearLayers[3].path, kLinearLayers[3].weights, 3},
    {kMlpNorm.path, kMlpNorm.weights, -1},
    {kLinearLayers[4].path, kLinearLayers[4].weights, 4},
    {kLinearLayers[5].path, kLinearLayers[5].weights, 5},
    {kLinearLayers[6].path, kLinearLayers[6].weights, 6},
}};

inline constexpr const char* kEmbeddingTensor = "model.embed_tokens.weight";
inline constexpr const char* kFinalNormTensor = "model.norm.weight";
inline constexpr const char* kLmHeadTensor = "lm_head.weight";

// "model.layers.3."
std::string blockPrefix(int block);
// The Hugging Face name of a block's linear layer, without ".weight":
// linearLayerPrefix(3, 0) is "model.layers.3.self_attn.q_proj".
std::string linearLayerPrefix(int block, int layer);
// The index in kLinearLayers of `name` ("q_proj", …); throws Error for other names.
int linearLayerIndex(std::string_view name);
// A linear layer's weight shape [out, in] in `config`.
std::vector<std::int64_t> linearLayerShape(const LinearLayerSpec& layer, const ModelConfig& config);

} // namespace quantlens
