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

// The widths a linear layer maps between: Query is the heads' total width (hidden unless a config
// sets head_dim, as Qwen3 does).
enum class LayerWidth { Hidden, Query, KeyValue, Intermediate };

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

struct BlockWeights {
    TensorView attnNorm, wq, wk, wv, wo;
    TensorView ffnNorm, gate, up, down;
    TensorView qBias, kBias, vBias; // Qwen2's; empty (no data) elsewhere
    TensorView qNorm, kNorm;        // Qwen3's; empty elsewhere

    // The seven linear layers in kLinearLayers order.
    std::array<const TensorView*, 7> linearLayers() const;
};

inline constexpr int kLinearLayerCount = 7;

// The order in which the linear layers are quantized, stored and reported.
inline constexpr std::array<LinearLayerSpec, kLinearLayerCount> kLinearLayers{{
    {"q_proj", "self_attn.q_proj", LinearStage::Attention, HeadAxis::Rows, true, LayerWidth::Query,
     LayerWidth::Hidden, &BlockWeights::wq},
    {"k_proj", "self_attn.k_proj", LinearStage::Attention, HeadAxis::Rows, true,
     LayerWidth::KeyValue, LayerWidth::Hidden, &BlockWeights::wk},
    {"v_proj", "self_attn.v_proj", LinearStage::Attention, HeadAxis::Rows, false,
     LayerWidth::KeyValue, LayerWidth::Hidden, &BlockWeights::wv},
    {"o_proj", "self_attn.o_proj", LinearStage::AttentionOutput, HeadAxis::Columns, false,
     LayerWidth::Hidden, LayerWidth::Query, &BlockWeights::wo},
    {"gate_proj", "mlp.gate_proj", LinearStage::Mlp, HeadAxis::None, false,
     LayerWidth::Intermediate, LayerWidth::Hidden, &BlockWeights::gate},
    {"up_proj", "mlp.up_proj", LinearStage::Mlp, HeadAxis::None, false, LayerWidth::Intermediate,
     LayerWidth::Hidden, &BlockWeights::up},
    {"down_proj", "mlp.down_proj", LinearStage::MlpOutput, HeadAxis::None, false,
     LayerWidth::Hidden, LayerWidth::Intermediate, &BlockWeights::down},
}};

// A block's tensors in Hugging Face's order: the attention norm, q, k, v (each with its bias where
// the architecture has one), o, the per-head q/k norms where it has them, the MLP norm, gate, up,
// down. `linear` is the kLinearLayers index of the layer a weight, bias or head norm belongs to,
// −1 for a block norm.
enum class BlockTensorKind { Norm, HeadNorm, Weight, Bias };
struct BlockTensorSpec {
    const char* name;  // under the block's prefix, "self_attn.q_proj.weight"
    const char* label; // for people: "input_layernorm", "q_proj", "q_proj.bias", "q_norm"
    BlockTensorKind kind;
    TensorView BlockWeights::*weights;
    int linear;
};
inline constexpr std::array<BlockTensorSpec, 14> kBlockTensors{{
    {"input_layernorm.weight", "input_layernorm", BlockTensorKind::Norm, &BlockWeights::attnNorm,
     -1},
    {"self_attn.q_proj.weight", "q_proj", BlockTensorKind::Weight, &BlockWeights::wq, 0},
    {"self_attn.q_proj.bias", "q_proj.bias", BlockTensorKind::Bias, &BlockWeights::qBias, 0},
    {"self_attn.k_proj.weight", "k_proj", BlockTensorKind::Weight, &BlockWeights::wk, 1},
    {"self_attn.k_proj.bias", "k_proj.bias", BlockTensorKind::Bias, &BlockWeights::kBias, 1},
    {"self_attn.v_proj.weight", "v_proj", BlockTensorKind::Weight, &BlockWeights::wv, 2},
    {"self_attn.v_proj.bias", "v_proj.bias", BlockTensorKind::Bias, &BlockWeights::vBias, 2},
    {"self_attn.o_proj.weight", "o_proj", BlockTensorKind::Weight, &BlockWeights::wo, 3},
    {"self_attn.q_norm.weight", "q_norm", BlockTensorKind::HeadNorm, &BlockWeights::qNorm, 0},
    {"self_attn.k_norm.weight", "k_norm", BlockTensorKind::HeadNorm, &BlockWeights::kNorm, 1},
    {"post_attention_layernorm.weight", "post_attention_layernorm", BlockTensorKind::Norm,
     &BlockWeights::ffnNorm, -1},
    {"mlp.gate_proj.weight", "gate_proj", BlockTensorKind::Weight, &BlockWeights::gate, 4},
    {"mlp.up_proj.weight", "up_proj", BlockTensorKind::Weight, &BlockWeights::up, 5},
    {"mlp.down_proj.weight", "down_proj", BlockTensorKind::Weight, &BlockWeights::down, 6},
}};

// Whether `config`'s architecture has the tensor (biases: Qwen2's q/k/v; head norms: Qwen3's).
bool hasBlockTensor(const BlockTensorSpec& tensor, const ModelConfig& config);
// Its shape in `config`: [hidden] for a norm, [headDim] for a head norm, [out, in] for a weight,
// [out] for a bias.
std::vector<std::int64_t> blockTensorShape(const BlockTensorSpec& tensor,
                                           const ModelConfig& config);

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
