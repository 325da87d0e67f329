#pragma once

#include "quantlens/error.h"

#include <cublas_v2.h>
#include <cuda_runtime.h>

#include <string>

namespace quantlens::gpu {

// CUDA and cuBLAS failures become the engine's Error, naming the call that failed.
inline void checkCuda(cudaError_t status, const char* call) {
    if (status != cudaSuccess)
        throw Error("cuda", std::string(call) + " failed: " + cudaGetErrorString(status));
}

inline void checkCublas(cublasStatus_t status, const char* call) {
    if (status != CUBLAS_STATUS_SUCCESS)
        throw Error("cuda", std::string(call) + " failed: " + cublasGetStatusString(status));
}

} // namespace quantlens::gpu
