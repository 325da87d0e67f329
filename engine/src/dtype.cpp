#include "quantlens/dtype.h"

#include <array>
#include <bit>
#include <cstring>

namespace quantlens {

std::optional<DType> parseDType(std::string_view name) {
    if (name == "F32") return DType::F32;
    if (name == "F16") return DType::F16;
    if (name == "BF16") return DType::BF16;
    return std::nullopt;
}

bool isKnownSafetensorsDType(std::string_view name) {
    static constexpr std::array known = {"BOOL", "U8",   "I8",  "I16",     "U16",
                                         "F16",  "BF16", "I32", "U32",     "F32",
                                         "F64",  "I64",  "U64", "F8_E4M3", "F8_E5M2"};
    for (std::string_view k : known)
        if (k == name) return true;
    return false;
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
