#include "runtime/kernels/int8_activations.h"

// Batch-1 products of 4-bit min-max grids (RTN, GPTQ) with int8 activations on AVX-512 VNNI: 128
// codes (64 bytes) a step, as int8_avx2.cpp takes 64. The low nibbles of a load are the step's 64
// even columns and the high nibbles its 64 odd ones, so x comes in that order (NibbleQuads), and
// two vpdpbusd give 16 int32 sums of 8 columns each, four per activation block: one conversion
// and one FMA with the blocks' scales per 128 weights. Groups of a multiple of 128 columns only
// (GPTQ's usual 128, or one per row); the numerics are int8_avx2.cpp's, with the int32 sums exact
// and only the order of the fp32 sums different.

namespace quantlens::kernels {

#ifdef QUANTLENS_KERNELS_AVX512_VNNI

namespace {

constexpr int kStepColumns = 128; // the nibbles of one 512-bit load
constexpr int kStepBytes = kStepColumns / 2;

// The pass's rows of y.
template <int R>
void productPass(const CompressedMatrix& m, const Int8Activations& a, const PassRows<R>& pass,
                 float* y, bool accumulate) {
    const int steps = m.cols / kStepColumns;
    const std::byte* codes[R];
    std::size_t statistics[R]; // index of each row's first group in scales and zeros
    for (int i = 0; i < R; ++i) {
        codes[i] = rowCodes(m, pass.rows[i]);
        statistics[i] = static_cast<std::size_t>(pass.rows[i]) * m.groups;
    }
    const StripedAhead<R, false> ahead(m, pass, steps);
    const __m512i zero = _mm512_setzero_si512();
    const int stepsPerGroup = m.groupsize / kStepColumns;
    __m512 acc[R];
    float zeroTerms[R] = {};
    for (int i = 0; i < R; ++i)
        acc[i] = _mm512_setzero_ps();
    for (int g = 0; g < m.groups; ++g) {
        __m512 group[R];
        for (int i = 0; i < R; ++i)
            group[i] = _mm512_setzero_ps();
        for (int k = g * stepsPerGroup; k < (g + 1) * stepsPerGroup; ++k) {
            ahead(k);
            const std::int8_t* xq = a.values.data() + k * kStepColumns;
            const __m512i xEven = _mm512_loadu_si512(xq);
            const __m512i xOdd = _mm512_loadu_si512(xq + kStepBytes);
            // Lane L sums columns of the step's block L/4: its scale, four times per block.
            const __m512 scale = _mm512_loadu_ps(a.scales.data() + k * 16);
#pragma GCC unroll 8
            for (int i = 0; i < R; ++i) {
                const NibbleQuadCodes c = nibbleQuadCodes(codes[i] + k * kStepBytes);
                // Each lane at most 8·15·127: far inside int32.
                const __m512i sums =
                    _mm512_dpbusd_epi32(_mm512_dpbusd_epi32(zero, c.even, xEven), c.odd, xOdd);
                group[i] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(sums), scale, group[i]);
            }
        }
        const float groupSum = a.groupSums[static_cast<std::size_t>(g)];
#pragma GCC unroll 8
        for (int i = 0; i < R; ++i) {
            const float s = storedHalf(m.scales, statistics[i] + g);
            const float z = storedHalf(m.zeros, statistics[i] + g);
            acc[i] = _mm512_fmadd_ps(group[i], _mm512_set1_ps(s), acc[i]);
            zeroTerms[i] += s * z * groupSum;
        }
    }
    // Sums reduced in an unrolled loop: one that skipped dropped rows would keep acc in memory.
    float sums[R];
#pragma GCC unroll 8
    for (int i = 0; i < R; ++i)
        sums[i] = horizontalSum(acc[i]);
    for (int i = 0; i < R; ++i) {
        if (!pass.kept[i]) continue;
        const float sum = sums[i] - zeroTerms[i];
        float& out = y[pass.rows[i]];
        out = accumulate ? out + sum : sum;
    }
}

} // namespace

bool int8FourBitAvx512Applies(const CompressedMatrix& m) {
    return int8GridApplies(m) && m.groupsize % kStepColumns == 0;
}

bool productInt8FourBitAvx512(const CompressedMatrix& m, const float* x, float* y,
                              bool accumulate) {
    if (!int8FourBitAvx512Applies(m)) return false;
    const Int8Activations& activations =
        int8Activations(x, m.cols, m.groupsize, Int8Order::NibbleQuads);
    constexpr int kRows = 4; // four rows share each step of x
    forEachStripedPass<kRows>(m.rows, [&](const PassRows<kRows>& pass) {
        productPass(m, activations, pass, y, accumulate);
    });
    return true;
}

#else

bool int8FourBitAvx512Applies(const CompressedMatrix&) {
    return false;
}

bool productInt8FourBitAvx512(const CompressedMatrix&, const float*, float*, bool) {
    return false;
}

#endif

} // namespace quantlens::kernels
