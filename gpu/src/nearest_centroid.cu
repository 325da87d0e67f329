#include "nearest_centroid.h"

#include "cuda_check.h"

namespace quantlens::gpu {
namespace {

__global__ void assignNearestKernel(const float* values, const float* tables, int levels,
                                    std::int64_t rows, std::int64_t cols, std::uint16_t* codes) {
    const std::int64_t i = blockIdx.x * static_cast<std::int64_t>(blockDim.x) + threadIdx.x;
    if (i >= rows * cols) return;
    const float* table = tables + (i / cols) * levels;
    const double x = values[i];
    // lower_bound: the first centroid ≥ x.
    int above = 0;
    while (above < levels && static_cast<double>(table[above]) < x)
        ++above;
    int nearest = 0;
    if (above > 0) {
        nearest = above - 1;
        if (above < levels &&
            static_cast<double>(table[above]) - x < x - static_cast<double>(table[nearest]))
            nearest = above;
        while (nearest > 0 && table[nearest - 1] == table[nearest])
            --nearest;
    }
    codes[i] = static_cast<std::uint16_t>(nearest);
}

} // namespace

void assignNearest(const float* values, const float* tables, int levels, std::int64_t rows,
                   std::int64_t cols, std::uint16_t* codes, cudaStream_t stream) {
    const std::int64_t total = rows * cols;
    if (total == 0) return;
    constexpr int kThreads = 256;
    assignNearestKernel<<<static_cast<unsigned>((total + kThreads - 1) / kThreads), kThreads, 0,
                          stream>>>(values, tables, levels, rows, cols, codes);
    checkCuda(cudaGetLastError(), "assignNearest launch");
}

} // namespace quantlens::gpu
