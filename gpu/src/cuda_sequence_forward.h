#pragma once

#include "quantlens/backend.h"

#include <memory>

namespace quantlens::gpu {

// The forward pass of a dense model on CUDA device `device`: every weight is copied to the device
// in fp32 once, here (Error when the model does not fit), then each call runs embedding, the
// blocks (cuBLAS products, transformer_kernels.h) and the head on the device, one call at a time.
std::unique_ptr<SequenceForward> makeCudaSequenceForward(int device,
                                                         const Transformer& transformer);

} // namespace quantlens::gpu
