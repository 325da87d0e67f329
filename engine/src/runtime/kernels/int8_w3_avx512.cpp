#include "runtime/kernels/int8_row_block.h"

// Batch-1 products of 3-bit codes with int8 activations on AVX-512 with VBMI and VNNI: 64 codes
// (24 bytes) a step, as int8_w3_avx2.cpp takes 32. One masked load, vpermb (each 64-bit lane gets
// the 3 bytes of its 8 codes) and vpmultishiftqb (code k's bits 3k… to byte k) give the codes as
// bytes in column order, and vpdpbusd meets them with 64 activations in int32 sums of 4 columns.
// Each step spans two activation blocks, so a row's 16 sums take their scales d_b·s_g from the
// row block's unit scales by one permute. Min-max grids only: the exact 16-lane kernels already
// look up a LUT in one vpermps per 16 weights, which int8 LUTs do not beat (bench gemv). The
// numerics are int8_w3_avx2.cpp's: the int32 sums are exact, only the order of the fp32 sums
// differs.

namespace quantlens::kernels {

#ifdef QUANTLENS_KERNELS_AVX512_VNNI

namespace {

constexpr int kStepColumns = 64; // one 512-bit register of int8
constexpr int kStepBytes = 24;   // 64 3-bit codes

// Qword q of the fetched bytes holds bytes 3q…3q+2 (codes 8q…8q+7; its other bytes repeat the
// last, which the mask drops), and byte k of it takes the 8 bits from bit 3k.
struct Unpack3x64 {
    Unpack3x64() {
        alignas(64) std::uint8_t fetch[64], shift[64];
        for (int q = 0; q < 8; ++q)
            for (int k = 0; k < 8; ++k) {
                fetch[q * 8 + k] = static_cast<std::uint8_t>(3 * q + std::min(k, 2));
                shift[q * 8 + k] = static_cast<std::uint8_t>(3 * k);
            }
        bytes = _mm512_load_si512(fetch);
        shifts = _mm512_load_si512(shift);
    }
    // The 64 codes packed LSB first at p, as 64 bytes; reads nothing past its 24 bytes.
    __m512i operator()(const std::byte* p) const {
        const __m512i packed = _mm512_maskz_loadu_epi8(0xFFFFFFull, p);
        return _mm512_and_si512(
            _mm512_multishift_epi64_epi8(shifts, _mm512_permutexvar_epi8(bytes, packed)), low3);
    }
    __m512i bytes, shifts;
    __m512i low3 = _mm512_set1_epi8(7);
};

// Where lane L of row `lane`'s step sums finds its unit scale among the step's unit scales
// [units][8 rows] (2 units a step, or 4 for groups of 16, spread over two registers).
template <bool halfGroups> __m512i unitScaleIndex(int lane) {
    constexpr int lanesPerUnit = halfGroups ? 4 : 8;
    alignas(64) std::int32_t index[16];
    for (int l = 0; l < 16; ++l)
        index[l] = l / lanesPerUnit * kBlockRows + lane;
    return _mm512_load_si512(index);
}

// Rows first…first+R−1 of y, lanes lane…lane+R−1 of their row block (rows past the matrix are
// computed on its last row and dropped). `halfGroups`: groups of 16, four unit scales a step.
template <Source source, bool halfGroups, int R>
void threeBitPass(const GridSource& plan, const Int8Activations& a, const float* x,
                  const RowBlock& block, int lane, int first, int last, float* y, bool accumulate) {
    const CompressedMatrix& m = plan.m;
    const Unpack3x64 unpack;
    const std::byte* codes[R];
    __m512i index[R]; // where each row's lanes find their unit scales
    for (int i = 0; i < R; ++i) {
        codes[i] = rowCodes(m, std::min(first + i, m.rows - 1));
        index[i] = unitScaleIndex<halfGroups>(lane + i);
    }
    constexpr int stepUnits = 2 * unitsPerBlock(halfGroups);
    const __m512i zero = _mm512_setzero_si512();
    __m512 acc[R];
    for (int i = 0; i < R; ++i)
        acc[i] = _mm512_setzero_ps();
    const int steps = m.cols / kStepColumns;
    const CodesAhead ahead(m, first + R, R, steps);
    for (int k = 0; k < steps; ++k) {
        ahead(k);
        const __m512i xq = _mm512_loadu_si512(a.values.data() + k * kStepColumns);
        // The step's unit scales for the row block: 16 floats, or 32 for groups of 16.
        const float* s = block.unitScales + k * stepUnits * kBlockRows;
        const __m512 units = _mm512_loadu_ps(s);
        const __m512 moreUnits = halfGroups ? _mm512_loadu_ps(s + 16) : units;
#pragma GCC unroll 8
        for (int i = 0; i < R; ++i) {
            const __m512i sums = _mm512_dpbusd_epi32(zero, unpack(codes[i] + k * kStepBytes), xq);
            const __m512 scale = halfGroups ? _mm512_permutex2var_ps(units, index[i], moreUnits)
                                            : _mm512_permutexvar_ps(index[i], units);
            acc[i] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(sums), scale, acc[i]);
        }
    }
    // Sums reduced in an unrolled loop: one that stopped at `last` would keep acc in memory.
    float sums[R];
#pragma GCC unroll 8
    for (int i = 0; i < R; ++i)
        sums[i] = horizontalSum(acc[i]);
    for (int i = 0; i < R && first + i < last; ++i)
        finishRow<source>(plan, block, lane + i, first + i, sums[i], x, y, accumulate);
}

} // namespace

bool int8ThreeBitAvx512Applies(const CompressedMatrix& m) {
    return m.grid != CompressedMatrix::Grid::Lut && int8ThreeBitApplies(m) &&
           m.cols % kStepColumns == 0;
}

bool productInt8ThreeBitAvx512(const CompressedMatrix& m, const float* x, float* y,
                               bool accumulate) {
    if (!int8ThreeBitAvx512Applies(m)) return false;
    const Int8Activations& activations =
        int8Activations(x, m.cols, m.groupsize, Int8Order::Natural);
    const GridSource plan(m);
    constexpr int kRows = 4; // four rows share each step of x; two passes a row block
    dispatchGrid(m, [&]<Source source, bool halfGroups>() {
        forEachRowBlock<source, halfGroups>(
            plan, activations, [&](const RowBlock& block, int p, int last) {
                for (int lane = 0; lane < kBlockRows && p + lane < last; lane += kRows)
                    threeBitPass<source, halfGroups, kRows>(plan, activations, x, block, lane,
                                                            p + lane, last, y, accumulate);
            });
    });
    return true;
}

#else

bool int8ThreeBitAvx512Applies(const CompressedMatrix&) {
    return false;
}

bool productInt8ThreeBitAvx512(const CompressedMatrix&, const float*, float*, bool) {
    return false;
}

#endif

} // namespace quantlens::kernels
