#pragma once

#include "cuda_check.h"

namespace quantlens::gpu {

// One cuBLAS handle on the current device, in plain fp32 (no TF32), so products match the CPU's
// to fp32 rounding. Each object that multiplies owns one, so jobs on different threads never
// share a handle.
class CublasHandle {
public:
    CublasHandle() {
        checkCublas(cublasCreate(&handle_), "cublasCreate");
        checkCublas(cublasSetMathMode(handle_, CUBLAS_PEDANTIC_MATH), "cublasSetMathMode");
    }
    CublasHandle(const CublasHandle&) = delete;
    CublasHandle& operator=(const CublasHandle&) = delete;
    ~CublasHandle() { cublasDestroy(handle_); }
    operator cublasHandle_t() const { return handle_; }

private:
    cublasHandle_t handle_ = nullptr;
};

} // namespace quantlens::gpu
