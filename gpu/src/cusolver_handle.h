#pragma once

#include "cuda_check.h"

namespace quantlens::gpu {

// One dense cuSOLVER handle on the current device.
class CusolverHandle {
public:
    CusolverHandle() { checkCusolver(cusolverDnCreate(&handle_), "cusolverDnCreate"); }
    CusolverHandle(const CusolverHandle&) = delete;
    CusolverHandle& operator=(const CusolverHandle&) = delete;
    ~CusolverHandle() { cusolverDnDestroy(handle_); }
    operator cusolverDnHandle_t() const { return handle_; }

private:
    cusolverDnHandle_t handle_ = nullptr;
};

} // namespace quantlens::gpu
