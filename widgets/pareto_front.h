#pragma once

#include <cstddef>
#include <vector>

// A run as the bits-vs-quality chart sees it: both coordinates are costs, lower is better.
struct ParetoPoint {
    double bits = 0.0;
    double perplexity = 0.0;
};

// The indices of the points no other point dominates (another with no more bits and no higher
// perplexity, and less of one of them), ordered by bits, then perplexity. Equal points are all
// kept, in index order. Points with a NaN coordinate are never on the front.
std::vector<std::size_t> paretoFront(const std::vector<ParetoPoint>& points);
