#pragma once

#include <cstddef>
#include <vector>

// A run as the bits-vs-quality chart sees it: both coordinates are costs, lower is better.
struct ParetoPoint {
    double bits = 0.0;
    double cost = 0.0; // perplexity, KL, or −agreement: what the chart's quality axis shows
};

// The indices of the points no other point dominates (another with no more bits and no higher
// cost, and less of one of them), ordered by bits, then cost. Equal points are all
// kept, in index order. Points with a NaN coordinate are never on the front.
std::vector<std::size_t> paretoFront(const std::vector<ParetoPoint>& points);
