#pragma once

#include "quantlens/encoding/codebook.h"

#include <cstdint>
#include <span>
#include <vector>

namespace quantlens {

// One-dimensional weighted k-means, SqueezeLLM's non-uniform quantizer (Kim et al. 2023, §3.2):
// minimises Σ_i w_i·(x_i − c(x_i))² over k centroids, where c(x) is the centroid nearest to x.
// In one dimension every cluster is an interval of the sorted values, so after one sort each Lloyd
// step costs O(k log n) through prefix sums instead of O(n·k).

struct KMeansResult {
    std::vector<double> centroids; // ascending
    int iterations = 0;            // Lloyd steps run
    // Σ w·(x − c(x))² after seeding and after each Lloyd step (filled when asked for).
    std::vector<double> objectiveTrace;
};

// Greedy k-means++ seeding (Arthur & Vassilvitskii 2007, with scikit-learn's local trials, the
// seeding of SqueezeLLM's recipe) with weights: the first centroid is drawn with probability ∝ w_i;
// for each next one, 2 + ⌊ln k⌋ candidates are drawn ∝ w_i·D(x_i)², D the distance to the nearest
// chosen centroid, and the one that lowers Σ w·D² most is kept. Deterministic for a given `seed`.
// When fewer than k distinct values carry weight, the remaining centroids repeat chosen ones.
// Returns k centroids, ascending. Needs Σ w > 0.
std::vector<double> kmeansPlusPlusSeeds(std::span<const float> values,
                                        std::span<const float> weights, int k, std::uint64_t seed);

// Lloyd iterations from `initial` (ascending) until the clusters stop changing or after
// `maxIterations` steps. A cluster that holds no weight keeps its centroid, so the objective never
// increases. Weights must be finite and ≥ 0.
KMeansResult weightedKMeans(std::span<const float> values, std::span<const float> weights,
                            std::vector<double> initial, int maxIterations,
                            bool traceObjective = false);

// The global minimum of Σ w·(x − c(x))² over k centroids (a dynamic programme over the sorted
// values, as Ckmeans.1d.dp: clusters are intervals, O(k·n log n) with divide and conquer), where
// Lloyd's iterations only reach a local one. Values of zero weight do not count; with fewer than k
// weighted distinct values the remaining centroids repeat the last. Needs Σ w > 0.
KMeansResult optimalWeightedKMeans(std::span<const float> values, std::span<const float> weights,
                                   int k);

} // namespace quantlens
