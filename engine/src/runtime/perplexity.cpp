#include "quantlens/runtime/perplexity.h"

#include "quantlens/core/error.h"
#include "quantlens/core/parallel.h"
#include "quantlens/runtime/backend.h"

#include <algorithm>
#include <cmath>
#include <mutex>

namespace quantlens {
namespace {

struct Window {
    std::int64_t begin = 0;
    std::int64_t length = 0; // inputs are the first length - 1 tokens, targets the last length - 1
};

struct WindowScore {
    double nllSum = 0.0;
    std::int64_t count = 0;
    std::vector<TokenComparison> compared; // one per position, with a reference only
};

// log-softmax of one row of logits, in double.
Eigen::VectorXd logProbabilities(const Eigen::Ref<const Eigen::RowVectorXf>& logits) {
    const Eigen::VectorXd row = logits.transpose().cast<double>();
    const double maxLogit = row.maxCoeff();
    return row.array() - (maxLogit + std::log((row.array() - maxLogit).exp().sum()));
}

std::vector<Window> windowsFor(std::int64_t streamLength, const PerplexityConfig& config) {
    const std::int64_t ctx = config.context;
    std::vector<Window> windows;
    if (config.protocol == PerplexityProtocol::Documents) {
        for (std::int64_t begin = 0; begin + 1 < streamLength; begin += ctx)
            windows.push_back({begin, std::min(ctx + 1, streamLength - begin)});
    } else {
        for (std::int64_t i = 0; i < streamLength / ctx; ++i)
            windows.push_back({i * ctx, ctx});
    }
    return windows;
}

WindowScore scoreWindow(const SequenceForward& forward, const SequenceForward* reference,
                        std::span<const std::int32_t> window, const JobContext& job) {
    const std::span<const std::int32_t> inputs = window.first(window.size() - 1);
    const RowMatrix logits = forward.logits(inputs, job);
    const RowMatrix referenceLogits = reference ? reference->logits(inputs, job) : RowMatrix();
    WindowScore score;
    for (Eigen::Index i = 0; i < logits.rows(); ++i) {
        const std::int32_t target = window[static_cast<std::size_t>(i) + 1];
        const Eigen::VectorXd logP = logProbabilities(logits.row(i));
        score.nllSum -= logP(target);
        if (reference) {
            const Eigen::VectorXd logQ = logProbabilities(referenceLogits.row(i));
            Eigen::Index top = 0, referenceTop = 0;
            logP.maxCoeff(&top);
            logQ.maxCoeff(&referenceTop);
            score.compared.push_back({-logP(target), -logQ(target),
                                      (logQ.array().exp() * (logQ - logP).array()).sum(),
                                      top == referenceTop});
        }
        ++score.count;
    }
    return score;
}

} // namespace

PerplexityResult evaluatePerplexity(const Transformer& transformer,
                                    std::span<const std::int32_t> stream,
                                    const PerplexityConfig& config, const JobContext& job,
                                    const Transformer* reference) {
    const ModelConfig& model = transformer.model().config;
    const std::string source = transformer.model().path.string();
    const bool documents = config.protocol == PerplexityProtocol::Documents;
    // Documents feeds ctx tokens per window, Gptq ctx - 1.
    const int maxContext = documents ? model.maxPositions : model.maxPositions + 1;
    if (config.context < 2 || config.context > maxContext)
        throw Error(source, "context " + std::to_string(config.context) + " must lie in [2, " +
                                std::to_string(maxContext) + "] for this model");
    const std::int64_t length = static_cast<std::int64_t>(stream.size());
    const std::vector<Window> windows = windowsFor(length, config);
    if (windows.empty())
        throw Error(source,
                    "the text has " + std::to_string(length) + " tokens, " +
                        (documents ? std::string("fewer than the 2 needed to predict one")
                                   : "fewer than one window of " + std::to_string(config.context)));
    // Every id is checked here, targets included: the forward pass only sees inputs.
    for (std::size_t i = 0; i < stream.size(); ++i)
        if (stream[i] < 0 || stream[i] >= model.vocabSize)
            throw Error(source, "token id " + std::to_string(stream[i]) + " at position " +
                                    std::to_string(i) + " is outside the vocabulary of " +
                                    std::to_string(model.vocabSize));

    const std::unique_ptr<SequenceForward> forward =
        job.backend().sequenceForward(transformer, job);
    const std::unique_ptr<SequenceForward> referenceForward =
        reference ? job.backend().sequenceForward(*reference, job) : nullptr;
    std::vector<WindowScore> scores(windows.size());
    std::mutex progressMutex;
    std::size_t finished = 0;
    parallelFor(static_cast<std::int64_t>(windows.size()), [&](std::int64_t i) {
        job.checkpoint();
        const Window& w = windows[static_cast<std::size_t>(i)];
        scores[static_cast<std::size_t>(i)] = scoreWindow(
            *forward, referenceForward.get(),
            stream.subspan(static_cast<std::size_t>(w.begin), static_cast<std::size_t>(w.length)),
            job);
        std::lock_guard lock(progressMutex);
        job.report(static_cast<double>(++finished) / static_cast<double>(windows.size()),
                   "perplexity");
    });

    PerplexityResult result;
    result.windows = static_cast<std::int64_t>(windows.size());
    double total = 0.0;
    std::vector<TokenComparison> compared;
    std::vector<std::int64_t> windowEnds;
    for (WindowScore& s : scores) {
        result.scoredTokens += s.count;
        total += documents ? s.nllSum : s.nllSum / static_cast<double>(s.count);
        compared.insert(compared.end(), s.compared.begin(), s.compared.end());
        windowEnds.push_back(result.scoredTokens);
        s.compared = {};
    }
    result.meanNll = total / static_cast<double>(documents ? result.scoredTokens : result.windows);
    result.tokens = documents ? result.scoredTokens : length;
    result.perplexity = std::exp(result.meanNll);
    if (reference) result.comparison = summariseComparison(compared, windowEnds, config.protocol);
    return result;
}

} // namespace quantlens
