#pragma once

#include "quantlens/quantized_layer.h"

#include <cstdint>
#include <utility>
#include <vector>

namespace quantlens {

// The one CSR layout of outliers (SpQR) and sparse values (SqueezeLLM), docs/FORMAT.md: I32 row
// pointers, U16 columns increasing within a row, F16 values that replace the decoded weight.
class OutlierRows {
public:
    static constexpr std::int64_t kMaxColumns = 65536; // columns are stored in 16 bits

    explicit OutlierRows(std::int64_t rows) : rows_(static_cast<std::size_t>(rows)) {}

    // Columns must be added in increasing order within a row.
    void add(std::int64_t row, std::int64_t column, float value) {
        rows_[static_cast<std::size_t>(row)].emplace_back(static_cast<std::uint16_t>(column),
                                                          value);
    }

    // Moves the CSR arrays into `layer` and sets its outlier count.
    void store(QuantizedLayer& layer) const;

private:
    std::vector<std::vector<std::pair<std::uint16_t, float>>> rows_;
};

} // namespace quantlens
