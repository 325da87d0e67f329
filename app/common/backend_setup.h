#pragma once

#include "quantlens/runtime/backend_registry.h"

namespace quantlens {

// Every backend this build can drive: the CPU, and the CUDA devices when it was built with CUDA
// (else "cuda" is listed as missing, with how to get it). The CLI and the studio both start here.
BackendRegistry makeBackendRegistry();

} // namespace quantlens
