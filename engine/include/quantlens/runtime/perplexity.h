#pragma once

#include "quantlens/core/job.h"
#include "quantlens/model/token_streams.h"
#include "quantlens/runtime/base_comparison.h"
#include "quantlens/runtime/transformer.h"

#include <cstdint>
#include <optional>
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
    // With a reference: how far the evaluated model is from it on the same windows.
    std::optional<BaseComparison> comparison;
};

// With `reference` (e.g. the unquantized model), also compares the evaluated model's next-token
// distributions with the reference's, position by position: both models run side by side on each
// window, so only one window's logits per model and thread are held, plus 32 bytes per scored
// position for the statistics (never the base's logits, which llama.cpp writes to a file).
PerplexityResult evaluatePerplexity(const Transformer& transformer,
                                    std::span<const std::int32_t> stream,
                                    const PerplexityConfig& config, const JobContext& job,
                                    const Transformer* reference = nullptr);

} // namespace quantlens
