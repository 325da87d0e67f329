#pragma once

#include "quantlens/runtime/compressed_matrix.h"

#include <cuda_runtime.h>

#include <cstddef>
#include <cstdint>
#include <memory>

namespace quantlens::gpu {

// A compressed linear layer W [rows, cols] copied to the device in the order the GEMV kernel walks
// it, and y = W·x straight from it: each warp decodes one row's codes in registers (two-level
// statistics for SpQR, a shared-memory LUT for SqueezeLLM, fp16 scale and zero for RTN/GPTQ) and
// adds the CSR outliers as (value − decoded)·x, so no dense W ever exists on the device.
class DeviceCompressedMatrix {
public:
    // Uploads to the current device. What the kernel reads besides the codes:
    // RTN/GPTQ — (scale, zero) fp16 pairs per row and group, as stored;
    // SpQR — the two qq-bit statistic codes of each row and group in one u16, and the fp16
    //        second-level grids per row group and group;
    // SqueezeLLM — each row's fp16 LUT;
    // outliers — CSR row pointers, i32 columns and fp32 (value − decoded weight).
    explicit DeviceCompressedMatrix(const CompressedMatrix& m);
    ~DeviceCompressedMatrix();
    DeviceCompressedMatrix(DeviceCompressedMatrix&&) noexcept;
    DeviceCompressedMatrix& operator=(DeviceCompressedMatrix&&) noexcept;

    int rows() const;
    int cols() const;
    // The bytes one product reads from the layer's device arrays (the permutation included).
    std::size_t deviceBytes() const;

    // y = W·x for device vectors x [cols] (the layer's original column order) and y [rows].
    // Act-order layers gather x into a buffer of this object's: one product at a time (one
    // stream, one thread) per object.
    void multiply(const float* x, float* y, cudaStream_t stream = nullptr) const;

private:
    struct Arrays;
    std::unique_ptr<Arrays> arrays_;
};

} // namespace quantlens::gpu
