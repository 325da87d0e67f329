#pragma once

#include <cstddef>
#include <cstdint>
#include <optional>
#include <string_view>

namespace quantlens {

// Element types Quantlens reads weights in. Other safetensors dtypes are recognised so that the
// error can say "unsupported" rather than "unknown".
enum class DType { F32, F16, BF16 };

std::optional<DType> parseDType(std::string_view name);
std::string_view dtypeName(DType dtype);
std::size_t dtypeSize(DType dtype);

float bf16ToFloat(std::uint16_t bits);
float f16ToFloat(std::uint16_t bits);
// Round to nearest even; overflow gives ±Inf, as IEEE conversion does.
std::uint16_t floatToF16(float value);
std::uint16_t floatToBf16(float value); // round to nearest even; NaN stays NaN

// Converts `count` elements of `dtype` at `src` (any alignment) to fp32.
void convertToFloat(DType dtype, const std::byte* src, std::size_t count, float* dst);

} // namespace quantlens
