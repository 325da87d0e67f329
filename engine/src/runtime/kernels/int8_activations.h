#pragma once

// The int8 activations the int8 kernels read (int8_avx2.cpp, int8_lut_avx2.cpp, int8_w3_avx2.cpp,
// int8_w3_avx512.cpp, int8_w4_avx512.cpp, int8_lut_avx512.cpp), quantized once per product as
// ggml's q8 blocks are; the 4-bit codes of one load split as the nibble orders lay x out; and the
// fixed-point LUTs two of the kernels share.

#include "runtime/kernels/kernel_common.h"

#include <cmath>
#include <cstdint>
#include <vector>

namespace quantlens::kernels {

constexpr int kInt8Block = 32; // columns per activation scale: one 256-bit register of int8

// The order of x's int8 values, which follows how each kernel unpacks a load of codes. Nibbles:
// per block of 32 columns its 16 even columns, then its 16 odd ones (the low and high nibbles of
// 16 bytes). NibblePairs (64 codes a load) and NibbleQuads (128): the same per span of two and
// four blocks. Natural: column order (3-bit codes unpacked to bytes).
enum class Int8Order { Nibbles, NibblePairs, NibbleQuads, Natural };

// x quantized: the values in the kernel's order, each block's scale (once per block, or four
// times where the order spans several blocks: one per int32 lane of a block's sums), and the
// exact sum of x over each group of W.
struct Int8Activations {
    Int8Order order = Int8Order::Nibbles;
    std::vector<std::int8_t> values; // [blocks · 32]
    std::vector<float> scales;       // [blocks · int8ScaleCopies(order)]
    std::vector<float> groupSums;    // [groups]
};

// Columns one interleaving of the order spans.
inline int int8Span(Int8Order order) {
    switch (order) {
    case Int8Order::NibblePairs:
        return 2 * kInt8Block;
    case Int8Order::NibbleQuads:
        return 4 * kInt8Block;
    case Int8Order::Nibbles:
    case Int8Order::Natural:
        break;
    }
    return kInt8Block;
}

inline int int8ScaleCopies(Int8Order order) {
    return int8Span(order) > kInt8Block ? 4 : 1;
}

// Where column j (< int8Span(order)) of a span goes among its bytes.
inline int int8Position(Int8Order order, int j) {
    if (order == Int8Order::Natural) return j;
    return (j % 2) * (int8Span(order) / 2) + j / 2;
}

// x_j ≈ d_b·q_j with d_b = max|x_b| / 127 and q_j = round(x_j / d_b), for blocks b of 32 columns
// (cols a multiple of the order's span; groupsize dividing cols).
inline void quantizeActivations(const float* x, int cols, int groupsize, Int8Order order,
                                Int8Activations& a) {
    const int blocks = cols / kInt8Block;
    const int span = int8Span(order), copies = int8ScaleCopies(order);
    a.order = order;
    a.values.resize(static_cast<std::size_t>(cols));
    a.scales.resize(static_cast<std::size_t>(blocks) * copies);
    for (int b = 0; b < blocks; ++b) {
        const float* in = x + b * kInt8Block;
        float peak = 0.0f;
        for (int j = 0; j < kInt8Block; ++j)
            peak = std::max(peak, std::abs(in[j]));
        const float scale = peak / 127.0f;
        const float inverse = scale > 0.0f ? 1.0f / scale : 0.0f;
        const int first = b * kInt8Block, offset = first % span; // the block within its span
        std::int8_t* out = a.values.data() + (first - offset);
        for (int j = 0; j < kInt8Block; ++j)
            out[int8Position(order, offset + j)] =
                static_cast<std::int8_t>(std::lround(in[j] * inverse));
        std::fill_n(a.scales.begin() + b * copies, copies, scale);
    }
    a.groupSums.assign(static_cast<std::size_t>(cols / groupsize), 0.0f);
    for (int j = 0; j < cols; ++j)
        a.groupSums[static_cast<std::size_t>(j / groupsize)] += x[j];
}

// This thread's activations for one product, quantized from x (the row tasks share them).
inline const Int8Activations& int8Activations(const float* x, int cols, int groupsize,
                                              Int8Order order) {
    thread_local Int8Activations buffer;
    quantizeActivations(x, cols, groupsize, order, buffer);
    return buffer;
}

#ifdef QUANTLENS_KERNELS_AVX2
// The codes of a load of 4-bit codes at p as bytes, in the order NibblePairs (32 bytes, 64 codes)
// and NibbleQuads (64 bytes, 128 codes) lay x out: the low nibbles (the even columns), then the
// high ones (the odd columns).
struct NibblePairCodes {
    __m256i even, odd;
};
inline NibblePairCodes nibblePairCodes(const std::byte* p) {
    const __m256i packed = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(p));
    const __m256i low = _mm256_set1_epi8(0x0F);
    return {_mm256_and_si256(packed, low), _mm256_and_si256(_mm256_srli_epi16(packed, 4), low)};
}
#ifdef QUANTLENS_KERNELS_AVX512_VNNI
struct NibbleQuadCodes {
    __m512i even, odd;
};
inline NibbleQuadCodes nibbleQuadCodes(const std::byte* p) {
    const __m512i packed = _mm512_loadu_si512(p);
    const __m512i low = _mm512_set1_epi8(0x0F);
    return {_mm512_and_si512(packed, low), _mm512_and_si512(_mm512_srli_epi16(packed, 4), low)};
}
#endif

// Pair sums (int16) of a fixed-point LUT's lows, looked up at byte `codes`, with q: each at most
// 2·63·127, so those of two loads still add within 16 bits.
inline __m256i fixedLutLows(__m256i low, __m256i codes, __m256i xq) {
    return _mm256_maddubs_epi16(_mm256_shuffle_epi8(low, codes), xq);
}

// Pair sums of its highs with q: the highs are signed, so they meet |q| (`xSize`) with q's sign
// moved onto them; each at most 2·127·127.
inline __m256i fixedLutHighs(__m256i high, __m256i codes, __m256i xq, __m256i xSize) {
    return _mm256_maddubs_epi16(xSize, _mm256_sign_epi8(_mm256_shuffle_epi8(high, codes), xq));
}

// The int32 sums of the highs' pair sums, weighed as t = 64·high + low weighs them.
inline __m256i weighedHighs(__m256i highs) {
    return _mm256_madd_epi16(highs, _mm256_set1_epi16(kFixedLutHighWeight));
}

// Row `row`'s fixed-point LUT (KernelLayout::fixedLuts), its lows and highs each in both halves
// of a register, as vpshufb looks them up.
inline void loadFixedLut(const KernelLayout& layout, int row, __m256i& low, __m256i& high) {
    const std::int8_t* table = layout.fixedLuts.data() + static_cast<std::size_t>(row) * 32;
    low = _mm256_broadcastsi128_si256(_mm_loadu_si128(reinterpret_cast<const __m128i*>(table)));
    high =
        _mm256_broadcastsi128_si256(_mm_loadu_si128(reinterpret_cast<const __m128i*>(table + 16)));
}
#endif

} // namespace quantlens::kernels
