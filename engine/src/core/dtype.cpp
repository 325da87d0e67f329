#include "quantlens/core/dtype.h"

#include <bit>
#include <cmath>
#include <cstring>

namespace quantlens {

std::optional<DType> parseDType(std::string_view name) {
    if (name == "F32") return DType::F32;
    if (name == "F16") return DType::F16;
    if (name == "BF16") return DType::BF16;
    return std::nullopt;
}

std::string_view dtypeName(DType dtype) {
    switch (dtype) {
    case DType::F32:
        return "F32";
    case DType::F16:
        return "F16";
    case DType::BF16:
        return "BF16";
    }
    return "?";
}

std::size_t dtypeSize(DType dtype) {
    return dtype == DType::F32 ? 4 : 2;
}

float bf16ToFloat(std::uint16_t bits) {
    return std::bit_cast<float>(static_cast<std::uint32_t>(bits) << 16);
}

float f16ToFloat(std::uint16_t bits) {
    const std::uint32_t sign = static_cast<std::uint32_t>(bits & 0x8000u) << 16;
    const std::uint32_t exponent = (bits >> 10) & 0x1fu;
    std::uint32_t mantissa = bits & 0x3ffu;
    if (exponent == 0x1f) // inf or NaN
        return std::bit_cast<float>(sign | 0x7f800000u | (mantissa << 13));
    if (exponent != 0)
        return std::bit_cast<float>(sign | ((exponent + 112u) << 23) | (mantissa << 13));
    if (mantissa == 0) return std::bit_cast<float>(sign);
    // Subnormal half: value = mantissa · 2^-24, exact in fp32.
    const float magnitude = static_cast<float>(mantissa) * 0x1p-24f;
    return sign ? -magnitude : magnitude;
}

std::uint16_t floatToF16(float value) {
    const std::uint32_t bits = std::bit_cast<std::uint32_t>(value);
    const std::uint16_t sign = static_cast<std::uint16_t>((bits >> 16) & 0x8000u);
    const std::uint32_t magnitude = bits & 0x7fffffffu;
    if (magnitude > 0x7f800000u) return sign | 0x7e00u;  // NaN
    if (magnitude >= 0x477ff000u) return sign | 0x7c00u; // rounds past 65504: Inf
    if (magnitude >= 0x38800000u) {                      // normal half
        const std::uint32_t rounded =
            magnitude + 0xfffu + ((magnitude >> 13) & 1u); // nearest even on the 13 dropped bits
        return sign | static_cast<std::uint16_t>((rounded - 0x38000000u) >> 13);
    }
    // Subnormal half (or zero): value / 2^-24 rounded to nearest even, done exactly in float.
    const float scaled = std::bit_cast<float>(magnitude) * 0x1p24f;
    return sign | static_cast<std::uint16_t>(std::nearbyint(scaled));
}

std::uint16_t floatToBf16(float value) {
    const std::uint32_t bits = std::bit_cast<std::uint32_t>(value);
    if ((bits & 0x7fffffffu) > 0x7f800000u) return static_cast<std::uint16_t>((bits >> 16) | 0x40u);
    return static_cast<std::uint16_t>((bits + 0x7fffu + ((bits >> 16) & 1u)) >> 16);
}

void convertToFloat(DType dtype, const std::byte* src, std::size_t count, float* dst) {
    switch (dtype) {
    case DType::F32:
        std::memcpy(dst, src, count * sizeof(float));
        return;
    case DType::F16:
    case DType::BF16: {
        const auto convert = dtype == DType::F16 ? f16ToFloat : bf16ToFloat;
        for (std::size_t i = 0; i < count; ++i) {
            std::uint16_t bits;
            std::memcpy(&bits, src + 2 * i, 2);
            dst[i] = convert(bits);
        }
        return;
    }
    }
}

} // namespace quantlens
