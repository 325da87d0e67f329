#pragma once

#include "quantlens/core/job.h"
#include "quantlens/model/token_streams.h"
#include "quantlens/runtime/transformer.h"

#include <cstdint>
#include <span>
#include <string>
#include <string_view>
#include <vector>

namespace quantlens {

struct PerplexityConfig {
    int context = 256;
    PerplexityProtocol protocol = PerplexityProtocol::Documents;
};

struct PerplexityResult {
    // As the reference tables count them: predicted tokens (Documents) or stream length (Gptq).
    std::int64_t tokens = 0;
    std::int64_t scoredTokens = 0;
    std::int64_t windows = 0;
    double meanNll = 0.0;
    double perplexity = 0.0;
    // Mean over scored tokens of KL(reference ‖ evaluated) in nats; NaN without a reference.
    double meanKlDivergence = 0.0;
};

// With `reference` (e.g. the unquantized model), also measures how far the evaluated model's
// next-token distributions are from the reference's on the same windows.
PerplexityResult evaluatePerplexity(const Transformer& transformer,
                                    std::span<const std::int32_t> stream,
                                    const PerplexityConfig& config, const JobContext& job,
                                    const Transformer* reference = nullptr);

} // namespace quantlens
