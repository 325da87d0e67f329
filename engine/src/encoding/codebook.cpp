#include "quantlens/encoding/codebook.h"

#include <algorithm>

namespace quantlens {

std::size_t nearestCentroid(std::span<const double> ascending, double x) {
    const auto above = std::lower_bound(ascending.begin(), ascending.end(), x);
    if (above == ascending.begin()) return 0;
    std::size_t nearest = static_cast<std::size_t>(above - ascending.begin()) - 1;
    if (above != ascending.end() && *above - x < x - ascending[nearest]) ++nearest;
    while (nearest > 0 && ascending[nearest - 1] == ascending[nearest])
        --nearest;
    return nearest;
}

} // namespace quantlens
