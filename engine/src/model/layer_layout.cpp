#include "quantlens/model/layer_layout.h"

#include "quantlens/core/error.h"
#include "quantlens/model/model_config.h"

namespace quantlens {

std::array<const TensorView*, 7> BlockWeights::linearLayers() const {
    std::array<const TensorView*, 7> layers{};
    for (int i = 0; i < kLinearLayerCount; ++i)
        layers[std::size_t(i)] = &(this->*kLinearLayers[std::size_t(i)].weights);
    return layers;
}

std::string blockPrefix(int block) {
    return "model.layers." + std::to_string(block) + ".";
}

std::string linearLayerPrefix(int block, int layer) {
    return blockPrefix(block) + kLinearLayers.at(std::size_t(layer)).path;
}

int linearLayerIndex(std::string_view name) {
    for (int i = 0; i < kLinearLayerCount; ++i)
        if (name == kLinearLayers[std::size_t(i)].name) return i;
    throw Error("", "unknown linear layer \"" + std::string(name) + "\"");
}

std::vector<std::int64_t> linearLayerShape(const LinearLayerSpec& layer,
                                           const ModelConfig& config) {
    const auto width = [&](LayerWidth w) -> std::int64_t {
        switch (w) {
        case LayerWidth::Hidden:
            return config.hiddenSize;
        case LayerWidth::Query:
            return config.queryDim();
        case LayerWidth::KeyValue:
            return config.kvDim();
        case LayerWidth::Intermediate:
            return config.intermediateSize;
        }
        return 0;
    };
    return {width(layer.out), width(layer.in)};
}

bool hasBlockTensor(const BlockTensorSpec& tensor, const ModelConfig& config) {
    switch (tensor.kind) {
    case BlockTensorKind::Bias:
        return config.attentionBias;
    case BlockTensorKind::HeadNorm:
        return config.qkNorm;
    case BlockTensorKind::Norm:
    case BlockTensorKind::Weight:
        break;
    }
    return true;
}

std::vector<std::int64_t> blockTensorShape(const BlockTensorSpec& tensor,
                                           const ModelConfig& config) {
    if (tensor.kind == BlockTensorKind::Norm) return {config.hiddenSize};
    if (tensor.kind == BlockTensorKind::HeadNorm) return {config.headDim};
    const std::vector<std::int64_t> weight =
        linearLayerShape(kLinearLayers[static_cast<std::size_t>(tensor.linear)], config);
    if (tensor.kind == BlockTensorKind::Bias) return {weight[0]};
    return weight;
}

} // namespace quantlens
