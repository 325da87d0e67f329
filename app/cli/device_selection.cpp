#include "device_selection.h"

#include "quantlens/core/error.h"
#include "quantlens/runtime/backend.h"

#ifdef QUANTLENS_HAVE_CUDA
#include "quantlens/gpu/cuda_backend.h"
#include "quantlens/gpu/device_info.h"
#endif

namespace {

bool cudaActive = false;

} // namespace

std::string selectDevice(const std::string& device) {
    cudaActive = false;
    quantlens::setActiveBackend(quantlens::cpuBackend());
    if (device == "cpu") return quantlens::activeBackend().name();
#ifdef QUANTLENS_HAVE_CUDA
    const quantlens::gpu::DeviceQuery query = quantlens::gpu::queryDevices();
    if (!query.devices.empty()) {
        quantlens::setActiveBackend(quantlens::gpu::makeCudaBackend(query.devices.front().index));
        cudaActive = true;
    } else if (device == "cuda") {
        throw quantlens::Error("--device cuda",
                               "no usable CUDA device: " + query.unavailableReason);
    }
#else
    if (device == "cuda")
        throw quantlens::Error("--device cuda",
                               "this build has no CUDA backend (configure with a CUDA compiler)");
#endif
    return quantlens::activeBackend().name();
}

bool cudaSelected() {
    return cudaActive;
}
