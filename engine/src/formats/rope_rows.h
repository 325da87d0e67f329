#pragma once

#include "quantlens/model/model_config.h"

#include <vector>

namespace quantlens {

// The row order that moves a q/k_proj weight [rows = heads·headDim, cols] into RoPE layout `to`
// from the other one: row r of the result is row order[r] of the source. Within each head,
// Interleaved rotates pairs (2i, 2i + 1) and RotateHalf rotates (i, i + headDim/2), so row 2i + k
// of an interleaved head is row k·headDim/2 + i of its rotate-half form (k = 0, 1) — the
// permutation llama.cpp's convert_hf_to_gguf.py applies, and its inverse. Codes, statistics and
// groups of a quantized layer run along a row, so moving whole rows keeps them exact.
std::vector<int> ropeRowOrder(int rows, int headDim, RopeLayout to);

} // namespace quantlens
