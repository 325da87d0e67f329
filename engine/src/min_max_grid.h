#pragma once

#include "quantlens/dtype.h"

#include <algorithm>
#include <cmath>
#include <cstddef>

namespace quantlens {

// An asymmetric uniform grid: value ≈ scale · (code − zero), codes 0 … maxCode. The one
// statistics fitter of every method (first- and second-level).
struct MinMaxGrid {
    float scale = 1.0f;
    float zero = 0.0f;
    int maxCode = 1;

    int code(float value) const {
        return static_cast<int>(
            std::clamp(std::nearbyint(value / scale + zero), 0.0f, static_cast<float>(maxCode)));
    }
    float dequantize(int code) const { return scale * (static_cast<float>(code) - zero); }
    float roundTrip(float value) const { return dequantize(code(value)); }
};

// The smallest first-level scale SpQR reconstructs (quantizer and decoder alike); keeps a grid
// usable if the second-level quantizer rounds a scale down to nothing.
inline constexpr float kMinimumSpqrScale = 1e-8f;

// Rounds to the nearest representable fp16, keeping a scale strictly positive and finite.
inline float fp16Scale(float scale) {
    const float rounded = f16ToFloat(floatToF16(std::min(scale, 65504.0f)));
    return rounded > 0.0f ? rounded : 0x1p-24f;
}

// The grid spanning [low, high]. `integerZero` rounds the zero point to a code (GPTQ's first-level
// statistics); otherwise the zero stays real so `low` maps exactly to code 0 (SpQR's second level,
// which must not turn a positive scale into zero). With `fp16Statistics` the scale (and a real
// zero) are rounded to fp16, as they are stored.
inline MinMaxGrid gridForRange(float low, float high, int bits, bool integerZero,
                               bool fp16Statistics) {
    MinMaxGrid grid;
    grid.maxCode = (1 << bits) - 1;
    // A constant group still needs a usable grid: centre it on the value.
    if (high == low) {
        const float spread = low == 0.0f ? 1.0f : std::abs(low);
        low -= spread;
        high += spread;
    }
    grid.scale = (high - low) / static_cast<float>(grid.maxCode);
    if (fp16Statistics) {
        // A stored real zero −low/scale must fit fp16 too: a range far narrower than its offset
        // widens the scale until it does.
        if (!integerZero) grid.scale = std::max(grid.scale, std::abs(low) / 32768.0f);
        grid.scale = fp16Scale(grid.scale);
    }
    grid.zero = -low / grid.scale;
    if (integerZero)
        grid.zero = std::clamp(std::nearbyint(grid.zero), 0.0f, static_cast<float>(grid.maxCode));
    else if (fp16Statistics)
        grid.zero = f16ToFloat(floatToF16(grid.zero));
    return grid;
}

// Min-max over `count` values `stride` apart.
inline MinMaxGrid fitMinMax(const float* values, std::size_t count, std::size_t stride, int bits,
                            bool integerZero, bool fp16Statistics) {
    float low = values[0], high = values[0];
    for (std::size_t i = 1; i < count; ++i) {
        low = std::min(low, values[i * stride]);
        high = std::max(high, values[i * stride]);
    }
    return gridForRange(low, high, bits, integerZero, fp16Statistics);
}

} // namespace quantlens
