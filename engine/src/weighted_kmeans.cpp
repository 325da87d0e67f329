#include "quantlens/weighted_kmeans.h"

#include "quantlens/error.h"

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

std::size_t nearestCentroid(std::span<const double> ascending, double x) {
    const auto above = std::lower_bound(ascending.begin(), ascending.end(), x);
    if (above == ascending.begin()) return 0;
    std::size_t nearest = static_cast<std::size_t>(above - ascending.begin()) - 1;
    if (above != ascending.end() && *above - x < x - ascending[nearest]) ++nearest;
    while (nearest > 0 && ascending[nearest - 1] == ascending[nearest])
        --nearest;
    return nearest;
}

std::vector<double> kmeansPlusPlusSeeds(std::span<const float> values,
                                        std::span<const float> weights, int k, std::uint64_t seed) {
    if (k < 1) throw Error("", "k-means needs at least one centroid");
    const SortedSample sample(values, weights);
    if (!(sample.weightSums.back() > 0.0))
        throw Error("", "k-means++ needs a positive total weight");
    std::mt19937_64 generator(seed);
    std::vector<double> centroids{
        sample.x[draw(sample.w, uniform(generator) * sample.weightSums.back())]};
    std::vector<double> mass(sample.x.size()); // w·D²
    for (std::size_t i = 0; i < mass.size(); ++i)
        mass[i] = sample.w[i] * (sample.x[i] - centroids[0]) * (sample.x[i] - centroids[0]);
    while (centroids.size() < static_cast<std::size_t>(k)) {
        const double total = std::accumulate(mass.begin(), mass.end(), 0.0);
        if (!(total > 0.0)) { // every weighted value already is a centroid
            centroids.push_back(centroids.back());
            continue;
        }
        const double chosen = sample.x[draw(mass, uniform(generator) * total)];
        centroids.push_back(chosen);
        for (std::size_t i = 0; i < mass.size(); ++i)
            mass[i] =
                std::min(mass[i], sample.w[i] * (sample.x[i] - chosen) * (sample.x[i] - chosen));
    }
    std::sort(centroids.begin(), centroids.end());
    return centroids;
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
