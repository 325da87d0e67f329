#pragma once

#include "quantlens/runtime/backend.h"

#include <memory>
#include <string>

namespace quantlens::gpu {

// The forward pass of a dense model on CUDA device `device`: every weight is copied to the device
// in fp32 once, here, then each call runs embedding, the blocks (cuBLAS products,
// transformer_kernels.h) and the head on the device, one call at a time. Null, with the reason in
// `unfit`, when the weights and a window of 4096 tokens would not fit in the device's free memory.
// Longer sequences (or longer than the attention kernel takes) run on the CPU.
std::unique_ptr<SequenceForward> makeCudaSequenceForward(int device, const Transformer& transformer,
                                                         std::string& unfit);

} // namespace quantlens::gpu
