#include "outlier_counts.h"

#include "quantlens/quantization/sensitivity.h"

#include <numeric>

OutlierCounts countOutliers(const quantlens::OutlierPreview& preview, double tau) {
    const quantlens::SensitivityMap& map = preview.map();
    OutlierCounts counts{std::vector<std::int64_t>(static_cast<std::size_t>(map.rows)),
                         std::vector<std::int64_t>(static_cast<std::size_t>(map.cols)),
                         {}};
    for (int r = 0; r < map.rows; ++r)
        for (int c = 0; c < map.cols; ++c)
            if (preview.isOutlier(r, c, tau)) {
                ++counts.rows[static_cast<std::size_t>(r)];
                ++counts.columns[static_cast<std::size_t>(c)];
            }
    if (map.heads.axis != quantlens::HeadAxis::None) {
        const auto& along =
            map.heads.axis == quantlens::HeadAxis::Rows ? counts.rows : counts.columns;
        const std::size_t length = static_cast<std::size_t>(map.heads.headDim);
        for (std::size_t first = 0; first + length <= along.size(); first += length)
            counts.heads.push_back(std::accumulate(along.begin() + std::ptrdiff_t(first),
                                                   along.begin() + std::ptrdiff_t(first + length),
                                                   std::int64_t{0}));
    }
    return counts;
}
