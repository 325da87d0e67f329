#include "quantlens/quantization/quant_plan.h"

#include "quantlens/core/error.h"
#include "quantlens/model/layer_layout.h"

namespace quantlens {

const QuantConfig& QuantPlan::layer(int block, int layer) const {
    return layers_.empty()
               ? method_
               : layers_.at(static_cast<std::size_t>(block * kLinearLayerCount + layer));
}

void QuantPlan::validateFor(int blocks, const std::string& source) const {
    validate(method_);
    if (layers_.empty()) return;
    const std::size_t expected = static_cast<std::size_t>(blocks) * kLinearLayerCount;
    if (layers_.size() != expected)
        throw Error(source, "the plan has settings for " + std::to_string(layers_.size()) +
                                " layers, the model " + std::to_string(expected));
    for (const QuantConfig& config : layers_) {
        if (config.index() != method_.index())
            throw Error(source,
                        "the plan mixes " + methodName(config) + " with " + methodName(method_));
        validate(config);
    }
}

} // namespace quantlens
