#pragma once

#include "quantlens/core/float_tensor.h"
#include "quantlens/model/model_config.h"

#include <vector>

namespace quantlens {

// Keys and values (after RoPE) of every position seen so far, per block: [capacity, kvDim].
struct KvCache {
    KvCache(const ModelConfig& config, int capacity);

    std::vector<RowMatrix> keys;
    std::vector<RowMatrix> values;
    int length = 0;
    int capacity = 0;
};

} // namespace quantlens
