#pragma once

#include "quantlens/runtime/compressed_matrix.h"

#include <cstddef>

namespace quantlens::gpu {

// Seconds per batch-1 product on CUDA device `device`: CUDA events around `kProductsPerRound`
// back-to-back launches, `repeat` rounds after a warm-up; the median and best round.
struct KernelTiming {
    double median = 0, best = 0;
};
inline constexpr int kProductsPerRound = 20;

// The fused compressed GEMV (DeviceCompressedMatrix); `deviceBytes` receives what it reads.
KernelTiming timeCompressedGemv(int device, const CompressedMatrix& m, int repeat,
                                std::size_t& deviceBytes);

// cuBLAS fp16 GEMV, y = W·x with W [rows, cols], x and y fp16, fp32 accumulation (cublasGemmEx
// with n = 1): the baseline of docs/DESIGN.md's GPU target.
KernelTiming timeCublasF16Gemv(int device, int rows, int cols, int repeat);

} // namespace quantlens::gpu
