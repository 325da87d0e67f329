#pragma once

#include "quantlens/encoding/quant_config.h"

#include <string>
#include <type_traits>
#include <utility>
#include <vector>

namespace quantlens {

// The settings every linear layer of a run is quantized with: one method, and either its one
// configuration for every layer or one configuration per layer (a bit-budget run, bit_budget.h).
class QuantPlan {
public:
    // Every layer with `method`'s settings: any config (QuantConfig or one method's) is a plan.
    template <typename Method>
    requires std::is_convertible_v<Method, QuantConfig> QuantPlan(Method method)
        : method_(std::move(method)) {} // NOLINT(google-explicit-constructor)
    // `layers` block-major in kLinearLayers order, all of `method`'s method; `method` is what the
    // run is recorded as (e.g. the settings the budget's candidates vary).
    QuantPlan(QuantConfig method, std::vector<QuantConfig> layers)
        : method_(std::move(method)), layers_(std::move(layers)) {}

    const QuantConfig& method() const { return method_; }
    bool isUniform() const { return layers_.empty(); }
    // Layer `layer` (an index into kLinearLayers) of block `block`.
    const QuantConfig& layer(int block, int layer) const;
    // The per-layer settings, empty for a uniform plan.
    const std::vector<QuantConfig>& layers() const { return layers_; }

    // Throws Error (with `source`) for a setting validate() rejects, a per-layer plan that does
    // not have one configuration per linear layer of `blocks` blocks, or mixes methods.
    void validateFor(int blocks, const std::string& source) const;

private:
    QuantConfig method_;
    std::vector<QuantConfig> layers_;
};

} // namespace quantlens
