#include "quantlens/runtime/backend_registry.h"

#include "quantlens/core/error.h"
#include "quantlens/core/parallel.h"

#include <charconv>

namespace quantlens {

void BackendRegistry::add(std::shared_ptr<const BackendProvider> provider) {
    providers_.push_back(std::move(provider));
}

void BackendRegistry::addMissing(std::string kind, std::string reason) {
    missing_.push_back({std::move(kind), std::move(reason)});
}

std::vector<ComputeDevice> BackendRegistry::devices() const {
    std::vector<ComputeDevice> all{{"cpu", std::to_string(threadCount()) + " threads"}};
    for (const auto& provider : providers_)
        for (ComputeDevice& device : provider->list().devices)
            all.push_back(std::move(device));
    return all;
}

std::vector<BackendRegistry::Unavailable> BackendRegistry::unavailable() const {
    std::vector<Unavailable> none = missing_;
    for (const auto& provider : providers_)
        if (DeviceListing listing = provider->list(); listing.devices.empty())
            none.push_back({provider->kind(), std::move(listing.unavailableReason)});
    return none;
}

std::shared_ptr<const Backend> BackendRegistry::open(std::string_view spec) const {
    const std::string source = "device " + std::string(spec);
    if (spec == "cpu") return cpuBackend();
    if (spec == "auto") {
        for (const auto& provider : providers_)
            if (!provider->list().devices.empty()) return provider->open(0);
        return cpuBackend();
    }
    const std::string_view kind = spec.substr(0, spec.find(':'));
    int ordinal = 0;
    if (kind.size() < spec.size()) {
        const std::string_view digits = spec.substr(kind.size() + 1);
        const auto [end, error] =
            std::from_chars(digits.data(), digits.data() + digits.size(), ordinal);
        if (digits.empty() || error != std::errc() || end != digits.data() + digits.size() ||
            ordinal < 0)
            throw Error(source, "expected " + std::string(kind) + ":N with N a device number");
    }
    for (const Unavailable& missing : missing_)
        if (missing.kind == kind) throw Error(source, missing.reason);
    for (const auto& provider : providers_) {
        if (provider->kind() != kind) continue;
        const DeviceListing listing = provider->list();
        if (listing.devices.empty())
            throw Error(source,
                        "no usable " + std::string(kind) + " device: " + listing.unavailableReason);
        const int count = static_cast<int>(listing.devices.size());
        if (ordinal >= count) {
            const std::string name(kind);
            throw Error(source,
                        "this machine has " +
                            (count == 1 ? "one " + name + " device, " + name + ":0"
                                        : std::to_string(count) + " " + name + " devices, " + name +
                                              ":0 to " + name + ":" + std::to_string(count - 1)));
        }
        return provider->open(ordinal);
    }
    std::string choices = "auto, cpu";
    for (const auto& provider : providers_)
        choices += ", " + provider->kind() + ", " + provider->kind() + ":N";
    for (const Unavailable& missing : missing_)
        choices += ", " + missing.kind;
    throw Error(source, "unknown device; choose " + choices);
}

} // namespace quantlens
