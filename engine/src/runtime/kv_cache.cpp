#include "quantlens/runtime/kv_cache.h"

namespace quantlens {

KvCache::KvCache(const ModelConfig& config, int capacity_)
    : keys(config.layerCount, RowMatrix(capacity_, config.kvDim())),
      values(config.layerCount, RowMatrix(capacity_, config.kvDim())), capacity(capacity_) {}

} // namespace quantlens
