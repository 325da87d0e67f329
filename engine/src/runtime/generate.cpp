#include "quantlens/runtime/generate.h"

#include "quantlens/core/error.h"

#include <algorithm>

namespace quantlens {

std::vector<std::int32_t> generateGreedy(const Transformer& transformer,
                                         const std::vector<std::int32_t>& prompt, int maxNewTokens,
                                         const std::function<void(std::int32_t)>& onToken,
                                         const JobContext& job) {
    const ModelConfig& config = transformer.model().config;
    if (prompt.empty()) throw Error("", "the prompt has no tokens");
    if (static_cast<int>(prompt.size()) >= config.maxPositions)
        throw Error("", "the prompt has " + std::to_string(prompt.size()) +
                            " tokens; the model reads at most " +
                            std::to_string(config.maxPositions));
    const int capacity = std::min<std::int64_t>(
        config.maxPositions, static_cast<std::int64_t>(prompt.size()) + maxNewTokens);
    KvCache cache(config, capacity);
    RowMatrix logits = transformer.forward(prompt, cache, &job);
    std::vector<std::int32_t> generated;
    while (static_cast<int>(generated.size()) < maxNewTokens) {
        job.checkpoint();
        Eigen::Index next = 0;
        logits.row(logits.rows() - 1).maxCoeff(&next);
        const auto token = static_cast<std::int32_t>(next);
        if (token == config.bosToken || std::find(config.eosTokens.begin(), config.eosTokens.end(),
                                                  token) != config.eosTokens.end())
            break;
        generated.push_back(token);
        if (onToken) onToken(token);
        if (cache.length >= capacity) break;
        logits = transformer.forward(std::span(&generated.back(), 1), cache, &job);
    }
    return generated;
}

} // namespace quantlens
