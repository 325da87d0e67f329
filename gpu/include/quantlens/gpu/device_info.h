#pragma once

#include <cstddef>
#include <string>
#include <vector>

namespace quantlens::gpu {

struct DeviceInfo {
    int index = 0;
    std::string name;
    std::size_t totalMemoryBytes = 0;
    std::size_t freeMemoryBytes = 0; // when queried; 0 when the device would not say
    int computeMajor = 0;
    int computeMinor = 0;
};

struct DeviceQuery {
    std::vector<DeviceInfo> devices;
    // Why no device is usable (no driver, no GPU); empty when devices were found.
    std::string unavailableReason;
};

// The CUDA devices this process can use. Never throws: a machine without a GPU or driver is a
// normal CPU-only machine.
DeviceQuery queryDevices();

} // namespace quantlens::gpu
