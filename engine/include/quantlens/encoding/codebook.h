#pragma once

#include <cstddef>
#include <span>

namespace quantlens {

// Index of the centroid nearest to x in `ascending` (ties to the lower index): the assignment rule
// of a non-uniform grid (a LUT), shared by the k-means that fits it, the encoders and the backends.
std::size_t nearestCentroid(std::span<const double> ascending, double x);

} // namespace quantlens
