#include "quantlens/quantization/weighted_kmeans.h"

#include "quantlens/core/error.h"

#include <algorithm>
#include <cmath>
#include <numeric>
#include <random>

namespace quantlens {
namespace {

// The values in ascending order with prefix sums of w and w·x, so a cluster's weight and weighted
// mean over any run of sorted values cost two subtractions.
struct SortedSample {
    SortedSample(std::span<const float> values, std::span<const float> weights) {
        if (values.size() != weights.size())
            throw Error("", "k-means: " + std::to_string(values.size()) + " values but " +
                                std::to_string(weights.size()) + " weights");
        std::vector<std::size_t> order(values.size());
        std::iota(order.begin(), order.end(), std::size_t{0});
        std::stable_sort(order.begin(), order.end(),
                         [&](std::size_t a, std::size_t b) { return values[a] < values[b]; });
        x.reserve(order.size());
        w.reserve(order.size());
        weightSums.assign(order.size() + 1, 0.0);
        momentSums.assign(order.size() + 1, 0.0);
        for (std::size_t i = 0; i < order.size(); ++i) {
            const double value = values[order[i]], weight = weights[order[i]];
            if (!std::isfinite(value) || !std::isfinite(weight) || weight < 0.0)
                throw Error("", "k-means needs finite values and finite, non-negative weights");
            x.push_back(value);
            w.push_back(weight);
            weightSums[i + 1] = weightSums[i] + weight;
            momentSums[i + 1] = momentSums[i] + weight * value;
        }
    }

    // ends[k]: one past the last sorted value nearest to centroid k.
    std::vector<std::size_t> assign(std::span<const double> centroids) const {
        std::vector<std::size_t> ends(centroids.size());
        for (std::size_t k = 0; k < centroids.size(); ++k)
            ends[k] = static_cast<std::size_t>(
                std::partition_point(x.begin(), x.end(),
                                     [&](double v) { return nearestCentroid(centroids, v) <= k; }) -
                x.begin());
        return ends;
    }

    double objective(std::span<const double> centroids, std::span<const std::size_t> ends) const {
        double total = 0.0;
        std::size_t begin = 0;
        for (std::size_t k = 0; k < centroids.size(); ++k) {
            for (std::size_t i = begin; i < ends[k]; ++i)
                total += w[i] * (x[i] - centroids[k]) * (x[i] - centroids[k]);
            begin = ends[k];
        }
        return total;
    }

    std::vector<double> x, w;
    std::vector<double> weightSums, momentSums; // [n + 1]
};

// Uniform in [0, 1) from 53 random bits: the same stream on every platform.
double uniform(std::mt19937_64& generator) {
    return static_cast<double>(generator() >> 11) * 0x1.0p-53;
}

// The index i with cumulative[i] ≤ target < cumulative[i + 1] over `mass`, skipping zero mass.
std::size_t draw(std::span<const double> mass, double target) {
    std::size_t last = 0;
    for (std::size_t i = 0; i < mass.size(); ++i) {
        if (mass[i] <= 0.0) continue;
        last = i;
        if (target < mass[i]) return i;
        target -= mass[i];
    }
    return last; // rounding left target at the very end
}

} // namespace

std::vector<double> kmeansPlusPlusSeeds(std::span<const float> values,
                                        std::span<const float> weights, int k, std::uint64_t seed) {
    if (k < 1) throw Error("", "k-means needs at least one centroid");
    const SortedSample sample(values, weights);
    if (!(sample.weightSums.back() > 0.0))
        throw Error("", "k-means++ needs a positive total weight");
    const std::size_t n = sample.x.size();
    // Greedy k-means++ (as scikit-learn, which SqueezeLLM's recipe runs): 2 + ⌊ln k⌋ candidates
    // per centre, keeping the one that lowers the potential Σ w·D² most.
    const int trials = 2 + static_cast<int>(std::log(static_cast<double>(k)));
    std::mt19937_64 generator(seed);
    std::vector<double> chosen{
        sample.x[draw(sample.w, uniform(generator) * sample.weightSums.back())]}; // ascending
    std::vector<double> mass(n), cumulative(n); // w·D² to the nearest chosen centre, its prefix
    for (std::size_t i = 0; i < n; ++i)
        mass[i] = sample.w[i] * (sample.x[i] - chosen[0]) * (sample.x[i] - chosen[0]);
    while (chosen.size() < static_cast<std::size_t>(k)) {
        std::partial_sum(mass.begin(), mass.end(), cumulative.begin());
        const double potential = cumulative.back();
        if (!(potential > 0.0)) { // every weighted value already is a centre
            chosen.insert(std::upper_bound(chosen.begin(), chosen.end(), chosen.back()),
                          chosen.back());
            continue;
        }
        double bestGain = -1.0, bestCandidate = 0.0;
        std::size_t bestBegin = 0, bestEnd = 0;
        for (int t = 0; t < trials; ++t) {
            const std::size_t drawn = std::min<std::size_t>(
                static_cast<std::size_t>(std::upper_bound(cumulative.begin(), cumulative.end(),
                                                          uniform(generator) * potential) -
                                         cumulative.begin()),
                n - 1);
            const double candidate = sample.x[drawn];
            // Only the values between the candidate's neighbouring centres can move to it.
            const auto above = std::lower_bound(chosen.begin(), chosen.end(), candidate);
            const double low = above == chosen.begin() ? -INFINITY : *(above - 1);
            const double high = above == chosen.end() ? INFINITY : *above;
            const std::size_t begin = static_cast<std::size_t>(
                std::upper_bound(sample.x.begin(), sample.x.end(), low) - sample.x.begin());
            const std::size_t end = static_cast<std::size_t>(
                std::lower_bound(sample.x.begin(), sample.x.end(), high) - sample.x.begin());
            double gain = 0.0;
            for (std::size_t i = begin; i < end; ++i)
                gain += std::max(0.0, mass[i] - sample.w[i] * (sample.x[i] - candidate) *
                                                    (sample.x[i] - candidate));
            if (gain > bestGain) {
                bestGain = gain;
                bestCandidate = candidate;
                bestBegin = begin;
                bestEnd = end;
            }
        }
        for (std::size_t i = bestBegin; i < bestEnd; ++i)
            mass[i] = std::min(mass[i], sample.w[i] * (sample.x[i] - bestCandidate) *
                                            (sample.x[i] - bestCandidate));
        chosen.insert(std::upper_bound(chosen.begin(), chosen.end(), bestCandidate), bestCandidate);
    }
    return chosen;
}

KMeansResult optimalWeightedKMeans(std::span<const float> values, std::span<const float> weights,
                                   int k) {
    if (k < 1) throw Error("", "k-means needs at least one centroid");
    const SortedSample all(values, weights);
    // Values without weight change no cluster's cost; the optimum is over the weighted ones.
    std::vector<double> x, w;
    for (std::size_t i = 0; i < all.x.size(); ++i)
        if (all.w[i] > 0.0) {
            x.push_back(all.x[i]);
            w.push_back(all.w[i]);
        }
    if (x.empty()) throw Error("", "k-means needs a positive total weight");
    const std::size_t n = x.size();
    // Prefix sums of w, w·x and w·x² around the weighted mean (less cancellation), so the cost
    // Σ w·(x − mean)² of any run of sorted values is O(1).
    double centre = 0.0, total = 0.0;
    for (std::size_t i = 0; i < n; ++i) {
        centre += w[i] * x[i];
        total += w[i];
    }
    centre /= total;
    std::vector<double> s0(n + 1, 0.0), s1(n + 1, 0.0), s2(n + 1, 0.0);
    for (std::size_t i = 0; i < n; ++i) {
        const double d = x[i] - centre;
        s0[i + 1] = s0[i] + w[i];
        s1[i + 1] = s1[i] + w[i] * d;
        s2[i + 1] = s2[i] + w[i] * d * d;
    }
    const auto cost = [&](std::size_t begin, std::size_t end) { // values [begin, end)
        const double weight = s0[end] - s0[begin], moment = s1[end] - s1[begin];
        return std::max(0.0, s2[end] - s2[begin] - moment * moment / weight);
    };
    // cost[m][j]: the least cost of the first j values in m clusters; split[m][j]: where the last
    // cluster begins. The best split is monotone in j (the cost satisfies the quadrangle
    // inequality), so each level is solved by divide and conquer in O(n log n).
    const std::size_t clusters = std::min<std::size_t>(static_cast<std::size_t>(k), n);
    std::vector<double> previous(n + 1), current(n + 1);
    std::vector<std::vector<std::uint32_t>> split(clusters, std::vector<std::uint32_t>(n + 1, 0));
    for (std::size_t j = 1; j <= n; ++j)
        previous[j] = cost(0, j);
    for (std::size_t m = 1; m < clusters; ++m) {
        std::fill(current.begin(), current.end(), INFINITY);
        // Fills current[j] for j in [jLow, jHigh], the split known to lie in [sLow, sHigh].
        const auto solve = [&](auto& self, std::size_t jLow, std::size_t jHigh, std::size_t sLow,
                               std::size_t sHigh) -> void {
            if (jLow > jHigh) return;
            const std::size_t j = (jLow + jHigh) / 2;
            double best = INFINITY;
            std::size_t bestSplit = sLow;
            for (std::size_t s = sLow; s <= std::min(sHigh, j - 1); ++s) {
                const double c = previous[s] + cost(s, j);
                if (c < best) {
                    best = c;
                    bestSplit = s;
                }
            }
            current[j] = best;
            split[m][j] = static_cast<std::uint32_t>(bestSplit);
            if (j > jLow) self(self, jLow, j - 1, sLow, bestSplit);
            self(self, j + 1, jHigh, bestSplit, sHigh);
        };
        solve(solve, m + 1, n, m, n - 1);
        std::swap(previous, current);
    }
    KMeansResult result;
    std::size_t end = n;
    for (std::size_t m = clusters; m-- > 0;) {
        const std::size_t begin = m == 0 ? 0 : split[m][end];
        result.centroids.push_back(centre + (s1[end] - s1[begin]) / (s0[end] - s0[begin]));
        end = begin;
    }
    std::reverse(result.centroids.begin(), result.centroids.end());
    // Fewer weighted values than centroids: the rest repeat the last one.
    result.centroids.resize(static_cast<std::size_t>(k), result.centroids.back());
    return result;
}

KMeansResult weightedKMeans(std::span<const float> values, std::span<const float> weights,
                            std::vector<double> initial, int maxIterations, bool traceObjective) {
    if (initial.empty()) throw Error("", "k-means needs at least one centroid");
    if (!std::is_sorted(initial.begin(), initial.end()))
        throw Error("", "k-means initial centroids must be ascending");
    const SortedSample sample(values, weights);
    KMeansResult result;
    result.centroids = std::move(initial);
    std::vector<std::size_t> ends = sample.assign(result.centroids);
    if (traceObjective) result.objectiveTrace.push_back(sample.objective(result.centroids, ends));
    for (int step = 0; step < maxIterations; ++step) {
        // Lloyd update: each cluster's weighted mean; a cluster without weight stays put.
        std::size_t begin = 0;
        for (std::size_t k = 0; k < result.centroids.size(); ++k) {
            const double weight = sample.weightSums[ends[k]] - sample.weightSums[begin];
            if (weight > 0.0)
                result.centroids[k] =
                    (sample.momentSums[ends[k]] - sample.momentSums[begin]) / weight;
            begin = ends[k];
        }
        // Means of consecutive intervals are ordered; sorting only undoes rounding at ties.
        std::sort(result.centroids.begin(), result.centroids.end());
        std::vector<std::size_t> next = sample.assign(result.centroids);
        ++result.iterations;
        if (traceObjective)
            result.objectiveTrace.push_back(sample.objective(result.centroids, next));
        if (next == ends) break;
        ends = std::move(next);
    }
    return result;
}

} // namespace quantlens
