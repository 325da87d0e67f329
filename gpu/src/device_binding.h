#pragma once

#include "cuda_check.h"

namespace quantlens::gpu {

// Binds the calling thread to `device`: CUDA's current device is per host thread.
inline void useDevice(int device) {
    checkCuda(cudaSetDevice(device), "cudaSetDevice");
}

// The first member of objects that own device resources: binds the thread to the device before
// the other members (cuBLAS handles, buffers) are made on it.
class DeviceBinding {
public:
    explicit DeviceBinding(int device) : device_(device) { useDevice(device); }
    operator int() const { return device_; }

private:
    int device_;
};

} // namespace quantlens::gpu
