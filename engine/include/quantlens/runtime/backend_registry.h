#pragma once

#include "quantlens/runtime/backend.h"

#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

namespace quantlens {

// One device a job can run on.
struct ComputeDevice {
    std::string id;   // "cpu", "cuda:0": what --device and the studio's setting name
    std::string name; // "NVIDIA H200", or the CPU's thread count
    // The device's own memory; both 0 for the CPU, whose jobs use the host's.
    std::uint64_t totalMemoryBytes = 0;
    std::uint64_t freeMemoryBytes = 0;
};

// The devices of one kind this machine has now, or why it has none.
struct DeviceListing {
    std::vector<ComputeDevice> devices; // ids "<kind>:0", "<kind>:1", …
    std::string unavailableReason;      // set when `devices` is empty
};

// A kind of device this build can drive (gpu/ provides "cuda"): which of them the machine has, and
// the backend of one.
class BackendProvider {
public:
    virtual ~BackendProvider() = default;
    virtual std::string kind() const = 0;
    // Never throws: a machine without the device or its driver is an ordinary machine.
    virtual DeviceListing list() const = 0;
    // The backend of device `ordinal` of list(); throws Error naming the device when it cannot be
    // used.
    virtual std::shared_ptr<const Backend> open(int ordinal) const = 0;
};

// Every backend an application can give its jobs: the CPU always, each provider's devices when the
// machine has them. Applications build one (app/common) and pass what open() returns to each job's
// JobContext; the engine keeps no backend of its own.
class BackendRegistry {
public:
    void add(std::shared_ptr<const BackendProvider> provider);
    // A kind this build lacks, with the reason (e.g. built without a CUDA compiler): listed as
    // unavailable, and named in the error when asked for.
    void addMissing(std::string kind, std::string reason);

    struct Unavailable {
        std::string kind;
        std::string reason;
    };
    // The CPU first, then each provider's devices in the order added.
    std::vector<ComputeDevice> devices() const;
    // The kinds with no usable device now, and why.
    std::vector<Unavailable> unavailable() const;

    // `spec`: "cpu"; "auto" (the first device of any provider, else the CPU); "<kind>" (its first
    // device); "<kind>:N". Throws Error (source "device <spec>") saying why it cannot be had.
    std::shared_ptr<const Backend> open(std::string_view spec) const;

private:
    std::vector<std::shared_ptr<const BackendProvider>> providers_;
    std::vector<Unavailable> missing_;
};

} // namespace quantlens
