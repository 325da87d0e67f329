#pragma once

#include "quantlens/core/tensor_view.h"

#include <Eigen/Core>
#include <vector>

namespace quantlens {

using RowMatrix = Eigen::Matrix<float, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor>;
using ConstRowMatrixMap = Eigen::Map<const RowMatrix>;

// A stored tensor as fp32, viewed as a [rows, cols] matrix (vectors are [1, n]). Aligned F32 data
// is mapped in place; F16/BF16 (or misaligned F32) is converted into memory this object owns, so
// only the tensors in use are ever materialised.
class FloatTensor {
public:
    explicit FloatTensor(const TensorView& view);
    FloatTensor(FloatTensor&&) noexcept = default;
    // A non-owning view of this tensor's fp32 data.
    FloatTensor view() const { return FloatTensor(data_, rows_, cols_); }

    ConstRowMatrixMap matrix() const { return {data_, rows_, cols_}; }
    Eigen::Map<const Eigen::VectorXf> vector() const { return {data_, rows_ * cols_}; }
    const float* data() const { return data_; }

private:
    FloatTensor(const float* data, Eigen::Index rows, Eigen::Index cols)
        : data_(data), rows_(rows), cols_(cols) {}

    std::vector<float> owned_;
    const float* data_ = nullptr;
    Eigen::Index rows_ = 0;
    Eigen::Index cols_ = 0;
};

} // namespace quantlens
