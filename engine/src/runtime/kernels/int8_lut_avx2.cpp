#include "runtime/kernels/int8_activations.h"
#include "runtime/kernels/vector_passes.h"

// Batch-1 products of 4-bit LUTs (SqueezeLLM) with the activations quantized to int8: each row's
// 16 entries become integers t_k on a per-row unit u (KernelLayout::fixedLuts, |t| ≤ 8128), so a
// load of 64 codes turns into table entries with vpshufb — bytes, not fp32 lanes — and meets the
// int8 activations in vpmaddubsw, as the grid kernel does:
//     y = u·Σ_b d_b·Σ_{j∈b} t_{c_j}·q_j + Σ_outliers (value − LUT_c)·x_j.
// Error per output: Σ_j |w̃_j·x̃_j − w_j·x_j| ≤ Σ_j (u/2)·|x_j| + |w̃_j|·d_b/2, with w̃ = u·t
// (docs/FORMAT.md, "Fused kernels"); the outliers' corrections are exact.

namespace quantlens::kernels {

#ifdef QUANTLENS_KERNELS_AVX2

namespace {

// Rows first…first+R−1 of y (rows past the matrix are computed on its last row and dropped).
template <int R>
void lutPass(const CompressedMatrix& m, const Int8Activations& a, const float* x, int first,
             int last, float* y, bool accumulate) {
    const KernelLayout& layout = *m.kernel;
    const std::byte* codes[R];
    __m256i low[R], high[R];
    int rows[R];
    for (int i = 0; i < R; ++i) {
        rows[i] = std::min(first + i, m.rows - 1);
        codes[i] = rowCodes(m, rows[i]);
        loadFixedLut(layout, rows[i], low[i], high[i]);
    }
    const __m256i ones = _mm256_set1_epi16(1);
    __m256 acc[R];
    for (int i = 0; i < R; ++i)
        acc[i] = _mm256_setzero_ps();
    const int blocks = m.cols / kInt8Block;
    const CodesAhead ahead(m, first + R, R, blocks / 2);
    for (int b = 0; b < blocks; b += 2) {
        ahead(b / 2);
        const __m256i xEven =
            _mm256_loadu_si256(reinterpret_cast<const __m256i*>(a.values.data() + b * kInt8Block));
        const __m256i xOdd = _mm256_loadu_si256(
            reinterpret_cast<const __m256i*>(a.values.data() + b * kInt8Block + kInt8Block));
        const __m256i xEvenSize = _mm256_abs_epi8(xEven), xOddSize = _mm256_abs_epi8(xOdd);
        const __m256 scale = _mm256_loadu_ps(a.scales.data() + b * 4);
#pragma GCC unroll 8
        for (int i = 0; i < R; ++i) {
            const NibblePairCodes c = nibblePairCodes(codes[i] + b * (kInt8Block / 2));
            const __m256i lows = _mm256_add_epi16(fixedLutLows(low[i], c.even, xEven),
                                                  fixedLutLows(low[i], c.odd, xOdd));
            const __m256i highs =
                _mm256_add_epi32(weighedHighs(fixedLutHighs(high[i], c.even, xEven, xEvenSize)),
                                 weighedHighs(fixedLutHighs(high[i], c.odd, xOdd, xOddSize)));
            const __m256i sums = _mm256_add_epi32(_mm256_madd_epi16(lows, ones), highs);
            acc[i] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(sums), scale, acc[i]);
        }
    }
    const float* deltas = layout.outlierDeltas.data();
    for (int i = 0; i < R && first + i < last; ++i) {
        float outliers = 0.0f;
        if (m.outliers.count > 0) outlierSums<1>(m, deltas, first + i, &x, &outliers);
        const float sum =
            layout.lutUnit[static_cast<std::size_t>(rows[i])] * horizontalSum(acc[i]) + outliers;
        y[first + i] = accumulate ? y[first + i] + sum : sum;
    }
}

} // namespace

bool int8LutApplies(const CompressedMatrix& m) {
    return m.grid == CompressedMatrix::Grid::Lut && m.wbits == 4 &&
           m.cols % (2 * kInt8Block) == 0 && m.kernel && !m.kernel->fixedLuts.empty();
}

bool productInt8Lut(const CompressedMatrix& m, const float* x, float* y, bool accumulate) {
    if (!int8LutApplies(m)) return false;
    const Int8Activations& activations = int8Activations(x, m.cols, m.cols, Int8Order::NibblePairs);
    constexpr int kRows = 4; // four rows share each pair of blocks of x
    forEachRowTask(m.rows, [&](int first, int last) {
        for (int p = first; p < last; p += kRows)
            lutPass<kRows>(m, activations, x, p, last, y, accumulate);
    });
    return true;
}

#else

bool int8LutApplies(const CompressedMatrix&) {
    return false;
}

bool productInt8Lut(const CompressedMatrix&, const float*, float*, bool) {
    return false;
}

#endif

} // namespace quantlens::kernels
