#pragma once

#include "quantlens/core/job.h"
#include "quantlens/runtime/transformer.h"

#include <cstdint>
#include <functional>
#include <vector>

namespace quantlens {

// Greedy decoding (temperature 0) from `prompt` (BOS included by the caller). Stops after
// `maxNewTokens` or at EOS/BOS; `onToken` sees each new id as it is chosen.
std::vector<std::int32_t> generateGreedy(const Transformer& transformer,
                                         const std::vector<std::int32_t>& prompt, int maxNewTokens,
                                         const std::function<void(std::int32_t)>& onToken,
                                         const JobContext& job);

} // namespace quantlens
