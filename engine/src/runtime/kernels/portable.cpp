#include "runtime/kernels/kernel_common.h"

namespace quantlens::kernels {

// Row `row` decoded into out[cols] with outliers in place: dequantize()'s values.
void decodeRowPortable(const CompressedMatrix& m, int row, float* out) {
    for (int j0 = 0; j0 < m.cols; j0 += m.groupsize)
        decodeRun(m, row, j0, std::min(m.cols, j0 + m.groupsize), out + j0);
    forEachOutlier(m, row, [&](std::int64_t k, int j) { out[j] = m.outliers.value(k); });
}

// Rows [first, last) of y = x·Wᵀ, decoding one row at a time into memory.
void productRowsPortable(const CompressedMatrix& m, const float* const* x, int tokens, int first,
                         int last, float* y, std::ptrdiff_t yStride, bool accumulate) {
    thread_local std::vector<float> w;
    w.resize(static_cast<std::size_t>(m.cols));
    for (int r = first; r < last; ++r) {
        decodeRowPortable(m, r, w.data());
        for (int t = 0; t < tokens; ++t) {
            float sum = 0.0f;
            for (int j = 0; j < m.cols; ++j)
                sum += w[j] * x[t][j];
            float& target = y[t * yStride + r];
            target = accumulate ? target + sum : sum;
        }
    }
}

} // namespace quantlens::kernels
