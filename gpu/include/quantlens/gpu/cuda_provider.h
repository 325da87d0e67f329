#pragma once

#include "quantlens/runtime/backend_registry.h"

#include <memory>

namespace quantlens::gpu {

// The registry's "cuda" kind: the devices queryDevices() finds ("cuda:N", name and compute
// capability, free memory), each opened as makeCudaBackend(N).
std::shared_ptr<const BackendProvider> cudaProvider();

} // namespace quantlens::gpu
