#include "backend_setup.h"

#ifdef QUANTLENS_HAVE_CUDA
#include "quantlens/gpu/cuda_provider.h"
#endif

namespace quantlens {

BackendRegistry makeBackendRegistry() {
    BackendRegistry registry;
#ifdef QUANTLENS_HAVE_CUDA
    registry.add(gpu::cudaProvider());
#else
    registry.addMissing("cuda", "this build has no CUDA backend (configure with a CUDA compiler "
                                "and QUANTLENS_CUDA=AUTO or ON)");
#endif
    return registry;
}

} // namespace quantlens
