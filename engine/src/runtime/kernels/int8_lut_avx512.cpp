#include "runtime/kernels/int8_activations.h"
#include "runtime/kernels/vector_passes.h"

// Batch-1 products of 4-bit LUTs (SqueezeLLM) with int8 activations on AVX-512 VNNI: the numerics
// of int8_lut_avx2.cpp (each row's fixed-point table t = 64·high + low, KernelLayout::fixedLuts),
// 128 codes a step. vpshufb looks each nibble up in the row's lows and highs, and vpdpbusd meets
// them with x — but vpdpbusd multiplies unsigned bytes by signed ones, so the signed highs are
// looked up offset by 128 (h + 128 = h ^ 0x80), and 128·64·Σx, the same for every row, leaves
// the int32 sums exactly: Σ (low + 64·(h + 128))·q − 8192·Σ q = Σ t·q, within 2^24, so its fp32
// conversion is exact too. Only the order of the fp32 sums differs from the AVX2 kernel.

namespace quantlens::kernels {

#ifdef QUANTLENS_KERNELS_AVX512_VNNI

namespace {

constexpr int kStepColumns = 128; // the nibbles of one 512-bit load
constexpr int kStepBytes = kStepColumns / 2;

// The pass's rows of y.
template <int R>
void lutPass(const CompressedMatrix& m, const Int8Activations& a, const float* x,
             const PassRows<R>& pass, float* y, bool accumulate) {
    const KernelLayout& layout = *m.kernel;
    const int steps = m.cols / kStepColumns;
    const std::byte* codes[R];
    __m512i low[R], high[R]; // each row's table in every 128-bit lane, as vpshufb looks it up
    const __m512i offset = _mm512_set1_epi8(static_cast<char>(0x80));
    for (int i = 0; i < R; ++i) {
        codes[i] = rowCodes(m, pass.rows[i]);
        const std::int8_t* table =
            layout.fixedLuts.data() + static_cast<std::size_t>(pass.rows[i]) * 32;
        low[i] = _mm512_maskz_broadcast_i32x4(
            0xFFFF, _mm_loadu_si128(reinterpret_cast<const __m128i*>(table)));
        high[i] = _mm512_xor_si512(
            _mm512_maskz_broadcast_i32x4(
                0xFFFF, _mm_loadu_si128(reinterpret_cast<const __m128i*>(table + 16))),
            offset);
    }
    const StripedAhead<R, false> ahead(m, pass, steps);
    const __m512i ones = _mm512_set1_epi8(1);
    const __m512i zero = _mm512_setzero_si512();
    __m512 acc[R];
    for (int i = 0; i < R; ++i)
        acc[i] = _mm512_setzero_ps();
    for (int k = 0; k < steps; ++k) {
        ahead(k);
        const std::int8_t* xq = a.values.data() + k * kStepColumns;
        const __m512i xEven = _mm512_loadu_si512(xq);
        const __m512i xOdd = _mm512_loadu_si512(xq + kStepBytes);
        // 8192·Σ q over each lane's 8 columns: what the highs' offset adds.
        const __m512i excess = _mm512_slli_epi32(
            _mm512_dpbusd_epi32(_mm512_dpbusd_epi32(zero, ones, xEven), ones, xOdd), 13);
        const __m512 scale = _mm512_loadu_ps(a.scales.data() + k * 16); // lane L: block L/4
#pragma GCC unroll 8
        for (int i = 0; i < R; ++i) {
            const NibbleQuadCodes c = nibbleQuadCodes(codes[i] + k * kStepBytes);
            const __m512i lows = _mm512_dpbusd_epi32(
                _mm512_dpbusd_epi32(zero, _mm512_shuffle_epi8(low[i], c.even), xEven),
                _mm512_shuffle_epi8(low[i], c.odd), xOdd);
            const __m512i highs = _mm512_dpbusd_epi32(
                _mm512_dpbusd_epi32(zero, _mm512_shuffle_epi8(high[i], c.even), xEven),
                _mm512_shuffle_epi8(high[i], c.odd), xOdd);
            const __m512i sums =
                _mm512_sub_epi32(_mm512_add_epi32(lows, _mm512_slli_epi32(highs, 6)), excess);
            acc[i] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(sums), scale, acc[i]);
        }
    }
    // Sums reduced in an unrolled loop: one that skipped dropped rows would keep acc in memory.
    float sums[R];
#pragma GCC unroll 8
    for (int i = 0; i < R; ++i)
        sums[i] = horizontalSum(acc[i]);
    const float* deltas = layout.outlierDeltas.data();
    for (int i = 0; i < R; ++i) {
        if (!pass.kept[i]) continue;
        const int row = pass.rows[i];
        float outliers = 0.0f;
        if (m.outliers.count > 0) outlierSums<1>(m, deltas, row, &x, &outliers);
        const float sum = layout.lutUnit[static_cast<std::size_t>(row)] * sums[i] + outliers;
        y[row] = accumulate ? y[row] + sum : sum;
    }
}

} // namespace

bool int8LutAvx512Applies(const CompressedMatrix& m) {
    return int8LutApplies(m) && m.cols % kStepColumns == 0;
}

bool productInt8LutAvx512(const CompressedMatrix& m, const float* x, float* y, bool accumulate) {
    if (!int8LutAvx512Applies(m)) return false;
    const Int8Activations& activations = int8Activations(x, m.cols, m.cols, Int8Order::NibbleQuads);
    constexpr int kRows = 4; // four rows share each step of x
    forEachStripedPass<kRows>(m.rows, [&](const PassRows<kRows>& pass) {
        lutPass(m, activations, x, pass, y, accumulate);
    });
    return true;
}

#else

bool int8LutAvx512Applies(const CompressedMatrix&) {
    return false;
}

bool productInt8LutAvx512(const CompressedMatrix&, const float*, float*, bool) {
    return false;
}

#endif

} // namespace quantlens::kernels
