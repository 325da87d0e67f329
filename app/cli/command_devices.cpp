#include "commands.h"

#include "quantlens/core/parallel.h"
#include "quantlens/runtime/backend.h"

#ifdef QUANTLENS_HAVE_CUDA
#include "quantlens/gpu/device_info.h"
#endif

#include <cstdio>

namespace {

void run() {
    std::printf("cpu   %d threads\n", quantlens::threadCount());
#ifdef QUANTLENS_HAVE_CUDA
    const quantlens::gpu::DeviceQuery query = quantlens::gpu::queryDevices();
    for (const auto& d : query.devices)
        std::printf("cuda:%d %s, %.1f GiB, sm_%d%d\n", d.index, d.name.c_str(),
                    static_cast<double>(d.totalMemoryBytes) / (1 << 30), d.computeMajor,
                    d.computeMinor);
    if (query.devices.empty())
        std::printf("cuda  unavailable: %s\n", query.unavailableReason.c_str());
#else
    std::printf("cuda  not built (configure with a CUDA compiler and QUANTLENS_CUDA=AUTO or ON)\n");
#endif
    std::printf("active: %s\n", quantlens::activeBackend().name().c_str());
}

} // namespace

Command addDevicesCommand(CLI::App& app) {
    CLI::App* sub = app.add_subcommand("devices", "List the compute devices Quantlens can use");
    return {sub, run};
}
