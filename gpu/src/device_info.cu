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
        query.devices.push_back(
            {i, properties.name, properties.totalGlobalMem, properties.major, properties.minor});
    }
    if (query.devices.empty()) query.unavailableReason = "no CUDA device found";
    return query;
}

} // namespace quantlens::gpu
