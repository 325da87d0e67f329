#pragma once

#include "quantlens/core/error.h"

#include <cublas_v2.h>
#include <cuda_runtime.h>
#include <cusolverDn.h>

#include <string>

namespace quantlens::gpu {

// CUDA, cuBLAS and cuSOLVER failures become the engine's Error, naming the call that failed.
inline void checkCuda(cudaError_t status, const char* call) {
    if (status == cudaSuccess) return;
    // A failed call (e.g. out of memory) stays the thread's last error; clear it so the next
    // launch check does not report it again.
    cudaGetLastError();
    throw DeviceFailure("cuda", std::string(call) + " failed: " + cudaGetErrorString(status));
}

inline void checkCusolver(cusolverStatus_t status, const char* call) {
    if (status != CUSOLVER_STATUS_SUCCESS)
        throw DeviceFailure("cuda", std::string(call) + " failed: cuSOLVER status " +
                                        std::to_string(static_cast<int>(status)));
}

inline void checkCublas(cublasStatus_t status, const char* call) {
    if (status != CUBLAS_STATUS_SUCCESS)
        throw DeviceFailure("cuda",
                            std::string(call) + " failed: " + cublasGetStatusString(status));
}

} // namespace quantlens::gpu
