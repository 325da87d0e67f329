#pragma once

#include "quantlens/core/job.h"
#include "quantlens/encoding/quantized_layer.h"

#include <string>

namespace quantlens {

// SqueezeLLM on one layer (Kim et al. 2023): the dense-and-sparse split of §4.1, then per output
// row a Fisher-weighted k-means (§3.2) whose centroids become the row's fp16 lookup table. Fills
// `layer` with the arrays of docs/FORMAT.md §SqueezeLLM. `fisher` is the diagonal Fisher of W,
// same shape, finite and ≥ 0.
void squeezeQuantize(const RowMatrix& weights, const RowMatrix& fisher, const SqueezeConfig& config,
                     const JobContext& job, const std::string& source, QuantizedLayer& layer);

} // namespace quantlens
