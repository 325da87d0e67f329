#include "quantlens/gpu/cuda_provider.h"

#include "quantlens/gpu/cuda_backend.h"
#include "quantlens/gpu/device_info.h"

namespace quantlens::gpu {
namespace {

class CudaProvider final : public BackendProvider {
public:
    std::string kind() const override { return "cuda"; }
    DeviceListing list() const override {
        const DeviceQuery query = queryDevices();
        DeviceListing listing{{}, query.unavailableReason};
        for (const DeviceInfo& device : query.devices)
            listing.devices.push_back({"cuda:" + std::to_string(device.index),
                                       device.name + ", sm_" + std::to_string(device.computeMajor) +
                                           std::to_string(device.computeMinor),
                                       device.totalMemoryBytes, device.freeMemoryBytes});
        return listing;
    }
    std::shared_ptr<const Backend> open(int ordinal) const override {
        const DeviceQuery query = queryDevices();
        return makeCudaBackend(query.devices.at(static_cast<std::size_t>(ordinal)).index);
    }
};

} // namespace

std::shared_ptr<const BackendProvider> cudaProvider() {
    static const std::shared_ptr<const BackendProvider> provider = std::make_shared<CudaProvider>();
    return provider;
}

} // namespace quantlens::gpu
