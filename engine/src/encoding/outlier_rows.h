#pragma once

#include "quantlens/encoding/quantized_layer.h"

#include <cstdint>
#include <utility>
#include <vector>

namespace quantlens {

// The one CSR layout of outliers (SpQR) and sparse values (SqueezeLLM), docs/FORMAT.md: row
// pointers and columns (increasing within a row) as index arrays no wider than they need, F16
// values that replace the decoded weight. A layer without any stores no CSR at all.
class OutlierRows {
public:
    OutlierRows(std::int64_t rows, std::int64_t cols)
        : rows_(static_cast<std::size_t>(rows)), cols_(cols) {}

    // Columns must be added in increasing order within a row.
    void add(std::int64_t row, std::int64_t column, float value) {
        rows_[static_cast<std::size_t>(row)].emplace_back(static_cast<std::int32_t>(column), value);
    }

    // Moves the CSR arrays into `layer` (none when there are no outliers) and sets its outlier
    // count.
    void store(QuantizedLayer& layer) const;

private:
    std::vector<std::vector<std::pair<std::int32_t, float>>> rows_;
    std::int64_t cols_;
};

} // namespace quantlens
