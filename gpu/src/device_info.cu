#include "quantlens/gpu/device_info.h"

#include <cuda_runtime.h>

namespace quantlens::gpu {

DeviceQuery queryDevices() {
    DeviceQuery query;
    int count = 0;
    if (const cudaError_t status = cudaGetDeviceCount(&count); status != cudaSuccess) {
        query.unavailableReason = cudaGetErrorString(status);
        return query;
    }
    for (int i = 0; i < count; ++i) {
        cudaDeviceProp properties{};
        if (cudaGetDeviceProperties(&properties, i) != cudaSuccess) continue;
        std::size_t freeBytes = 0, totalBytes = 0;
        int previous = 0;
        if (cudaGetDevice(&previous) == cudaSuccess && cudaSetDevice(i) == cudaSuccess) {
            if (cudaMemGetInfo(&freeBytes, &totalBytes) != cudaSuccess) freeBytes = 0;
            cudaSetDevice(previous);
        }
        cudaGetLastError(); // a failed query must not surface at the next launch
        query.devices.push_back({i, properties.name, properties.totalGlobalMem, freeBytes,
                                 properties.major, properties.minor});
    }
    if (query.devices.empty()) query.unavailableReason = "no CUDA device found";
    return query;
}

} // namespace quantlens::gpu
