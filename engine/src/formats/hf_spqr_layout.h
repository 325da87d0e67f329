#pragma once

#include "quantlens/core/dtype.h"
#include "quantlens/formats/hf_spqr_writer.h"

namespace quantlens {

// The layout and arithmetic of transformers' SpQR format (docs/HF_SPQR.md), shared by its writer
// and its loader. A tile row's 64-bit word holds the scale code, the zero code and 16 codes
// (3 bits each), then 8 bits of the tile's second-level statistics from this bit on; bits 62–63
// are 0.
inline constexpr int kHfSpqrSecondOrderShift = kHfSpqrBits * (kHfSpqrTile + 2);
inline constexpr int kHfSpqrMaxColumns = 1 << 16; // columns and in_perm entries are 16-bit

// One fp16 operation as the kernels compute it: the fp32 result rounded to fp16. fp32 has
// 24 ≥ 2·11 + 2 significand bits, so the two roundings give the correctly rounded fp16 result
// of +, −, × on fp16 operands (Figueroa 1995).
inline float hfSpqrHalf(float x) {
    return f16ToFloat(floatToF16(x));
}

// scale·(code − zero) in the kernels' fp16 arithmetic: a first-level statistic on its tile's
// second-level grid (ss.x, zz.x or ss.y, zz.y), or a weight on its row's first-level grid.
inline float hfSpqrDecode(float scale, float zero, int code) {
    return hfSpqrHalf(scale * hfSpqrHalf(static_cast<float>(code) - zero));
}

} // namespace quantlens
