#include "commands.h"

#include <cstdio>

namespace {

double gib(std::uint64_t bytes) {
    return static_cast<double>(bytes) / (1ull << 30);
}

void run(const Session& session) {
    for (const quantlens::ComputeDevice& device : session.backends.devices()) {
        std::printf("%-7s %s", device.id.c_str(), device.name.c_str());
        if (device.totalMemoryBytes > 0)
            std::printf(", %.1f GiB free of %.1f GiB", gib(device.freeMemoryBytes),
                        gib(device.totalMemoryBytes));
        std::printf("\n");
    }
    for (const auto& [kind, reason] : session.backends.unavailable())
        std::printf("%-7s unavailable: %s\n", kind.c_str(), reason.c_str());
    std::printf("--device: %s\n", session.backend->name().c_str());
}

} // namespace

Command addDevicesCommand(CLI::App& app) {
    CLI::App* sub = app.add_subcommand("devices", "List the compute devices Quantlens can use");
    return {sub, run};
}
