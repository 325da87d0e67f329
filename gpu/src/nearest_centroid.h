#pragma once

#include <cuda_runtime.h>

#include <cstdint>

namespace quantlens::gpu {

// codes[r·cols + j] = nearest of row r's `levels` ascending centroids in `tables` to
// values[r·cols + j], by the CPU's rule (nearestCentroid: compared in double, ties to the lower
// index), so both give the same codes.
void assignNearest(const float* values, const float* tables, int levels, std::int64_t rows,
                   std::int64_t cols, std::uint16_t* codes, cudaStream_t stream = nullptr);

} // namespace quantlens::gpu
