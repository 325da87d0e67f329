#pragma once

#include "quantlens/runtime/backend.h"

#include <memory>
#include <string>
#include <vector>

namespace quantlens::gpu {

// quantizeModel's walk on CUDA device `device`: every sequence's hidden state stays on the device;
// each call uploads the block's current weights, runs the block per sequence (device_block.h) and
// sums XᵀX of the stage's inputs with SYRK, so only the Gram comes back. Null, with the reason in
// `unfit`, when the sequences are longer than the attention kernel takes or the states, a block
// and its Gram would not fit in the device's free memory.
std::unique_ptr<CalibrationWalk> makeCudaCalibrationWalk(int device, const Transformer& transformer,
                                                         const std::vector<RowMatrix>& hidden,
                                                         std::string& unfit);

} // namespace quantlens::gpu
