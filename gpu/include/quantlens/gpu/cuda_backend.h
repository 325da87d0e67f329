#pragma once

#include "quantlens/runtime/backend.h"

#include <memory>

namespace quantlens::gpu {

// The engine's Backend on CUDA device `device` (cuBLAS for the Gram and OBS feedback products, a
// kernel for SqueezeLLM's assignment). Throws Error when the device cannot be used.
std::shared_ptr<const Backend> makeCudaBackend(int device = 0);

} // namespace quantlens::gpu
