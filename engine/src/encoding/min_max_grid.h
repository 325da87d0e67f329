#pragma once

#include "quantlens/core/dtype.h"

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

// How a method fits a grid to a range. Each method uses exactly one of these per level.
enum class GridRule {
    // RTN/GPTQ (Frantar et al. 2023): the range is extended to include 0, the zero point is an
    // integer code (the GPTQ checkpoint stores it so) and the scale is fp16, as stored.
    Affine,
    // SpQR's first level (Dettmers et al. 2023, §3.2): min-max with a real zero, kept in fp32
    // because the second level quantizes both statistics.
    SpqrWeights,
    // SpQR's second level: min-max with a real zero, both rounded to the fp16 that is stored.
    SpqrStatistics,
};

// The smallest first-level scale SpQR reconstructs (quantizer and decoder alike); keeps a grid
// usable if the second-level quantizer rounds a scale down to nothing.
inline constexpr float kMinimumSpqrScale = 1e-8f;

// Rounds to the nearest representable fp16, keeping a scale strictly positive and finite.
inline float fp16Scale(float scale) {
    const float rounded = f16ToFloat(floatToF16(std::min(scale, 65504.0f)));
    return rounded > 0.0f ? rounded : 0x1p-24f;
}

// The grid spanning [low, high] under `rule`.
inline MinMaxGrid gridForRange(float low, float high, int bits, GridRule rule) {
    MinMaxGrid grid;
    grid.maxCode = (1 << bits) - 1;
    const bool fp16 = rule != GridRule::SpqrWeights;
    if (rule == GridRule::Affine) {
        low = std::min(low, 0.0f);
        high = std::max(high, 0.0f);
        if (low == high) { // all zero: GPTQ's [−1, 1], which still decodes 0 exactly
            low = -1.0f;
            high = 1.0f;
        }
        grid.scale = fp16Scale((high - low) / static_cast<float>(grid.maxCode));
        grid.zero =
            std::clamp(std::nearbyint(-low / grid.scale), 0.0f, static_cast<float>(grid.maxCode));
        return grid;
    }
    if (low == high) {
        // A constant range decodes exactly: code 0 on the grid |v|·(q + sign v), whose zero ±1
        // and scale |v| are exact in fp16 whenever v is.
        const float magnitude = std::abs(low);
        grid.scale = magnitude == 0.0f ? 1.0f : (fp16 ? fp16Scale(magnitude) : magnitude);
        grid.zero = low > 0.0f ? -1.0f : (low < 0.0f ? 1.0f : 0.0f);
        return grid;
    }
    grid.scale = (high - low) / static_cast<float>(grid.maxCode);
    if (fp16) {
        // The stored real zero −low/scale must fit fp16 too: a range far narrower than its offset
        // widens the scale until it does.
        grid.scale = fp16Scale(std::max(grid.scale, std::abs(low) / 32768.0f));
        grid.zero = f16ToFloat(floatToF16(-low / grid.scale));
    } else {
        grid.zero = -low / grid.scale;
    }
    return grid;
}

// Min-max over `count` values `stride` apart.
inline MinMaxGrid fitMinMax(const float* values, std::size_t count, std::size_t stride, int bits,
                            GridRule rule) {
    float low = values[0], high = values[0];
    for (std::size_t i = 1; i < count; ++i) {
        low = std::min(low, values[i * stride]);
        high = std::max(high, values[i * stride]);
    }
    return gridForRange(low, high, bits, rule);
}

} // namespace quantlens
