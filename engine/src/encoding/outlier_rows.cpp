#include "encoding/outlier_rows.h"

namespace quantlens {

void OutlierRows::store(QuantizedLayer& layer) const {
    std::vector<std::int32_t> rowPointers{0};
    std::vector<std::int32_t> columns;
    std::vector<float> values;
    for (const auto& row : rows_) {
        for (const auto& [column, value] : row) {
            columns.push_back(column);
            values.push_back(value);
        }
        rowPointers.push_back(static_cast<std::int32_t>(columns.size()));
    }
    const auto nnz = static_cast<std::int64_t>(columns.size());
    layer.outlierCount = nnz;
    if (nnz == 0) return;
    layer.tensors["outlier_row_ptr"] =
        StoredTensor::indices({static_cast<std::int64_t>(rows_.size()) + 1}, rowPointers, nnz);
    layer.tensors["outlier_cols"] = StoredTensor::indices({nnz}, columns, cols_ - 1);
    layer.tensors["outlier_values"] = StoredTensor::f16({nnz}, values);
}

} // namespace quantlens
