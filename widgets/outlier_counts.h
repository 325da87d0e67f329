#pragma once

#include <cstdint>
#include <vector>

namespace quantlens {
class OutlierPreview;
}

// Where a layer's outliers sit at threshold τ: per output row, per input column and, for attention
// projections, per head (along the axis the layer splits by); SpQR §3 finds they cluster in rows,
// columns and heads.
struct OutlierCounts {
    std::vector<std::int64_t> rows;
    std::vector<std::int64_t> columns;
    std::vector<std::int64_t> heads; // empty for layers without a head split
};

OutlierCounts countOutliers(const quantlens::OutlierPreview& preview, double tau);
