#pragma once

#include "quantlens/job.h"
#include "quantlens/tokenizer.h"
#include "quantlens/transformer.h"

#include <cstdint>
#include <span>
#include <string>
#include <string_view>
#include <vector>

namespace quantlens {

// The two protocols of shared/data/README.md.
enum class PerplexityProtocol {
    // Each non-empty line is a document: BOS + its ids, concatenated; windows of ctx + 1 tokens
    // at stride ctx (sharing their boundary token), the last one partial; mean NLL over all tokens.
    Documents,
    // The GPTQ/SpQR papers': BOS + the whole text, floor(n / ctx) windows of ctx tokens, each
    // scored alone on its last ctx - 1 tokens; ppl = exp(mean over windows of the window mean).
    Gptq,
};

PerplexityProtocol parsePerplexityProtocol(std::string_view name);
std::string_view protocolName(PerplexityProtocol protocol);

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

// The token stream a protocol scores, built from text; `source` names the text in errors.
std::vector<std::int32_t> tokenizeForProtocol(const Tokenizer& tokenizer, std::string_view text,
                                              PerplexityProtocol protocol, int bosToken,
                                              const std::string& source);

// With `reference` (e.g. the unquantized model), also measures how far the evaluated model's
// next-token distributions are from the reference's on the same windows.
PerplexityResult evaluatePerplexity(const Transformer& transformer,
                                    std::span<const std::int32_t> stream,
                                    const PerplexityConfig& config, const JobContext& job,
                                    const Transformer* reference = nullptr);

} // namespace quantlens
