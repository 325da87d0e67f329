#include "runtime/kernels/int8_activations.h"

// Batch-1 products of 4-bit min-max grids (RTN, GPTQ) with the activations quantized to int8, as
// ggml's q4 × q8 kernels run them: W's codes stay bytes, and each 32 of them meet 32 int8
// activations in one integer multiply-add (vpmaddubsw), not 32 decodes and fp32 FMAs.
//
// With x_j ≈ d_b·q_j (blocks b of 32 columns, d_b = max|x|/127) and w_j = s_g·(c_j − z_g):
//     y = Σ_g s_g·(Σ_{b⊂g} d_b·Σ_{j∈b} c_j·q_j − z_g·Σ_{j∈g} x_j),
// the zero-point term taken on the exact x, so the only error is Σ_j s_g·c_j·(x_j − d_b·q_j),
// at most Σ_j s_g·c_j·d_b/2 per output (docs/FORMAT.md, "Fused kernels").

namespace quantlens::kernels {

#ifdef QUANTLENS_KERNELS_AVX2

namespace {

// Rows first…first+R−1 of y (R dividing 16; rows past the matrix are computed on its last row
// and dropped).
template <int R>
void productPass(const CompressedMatrix& m, const Int8Activations& a, int first, int last, float* y,
                 bool accumulate) {
    const std::byte* codes[R];
    std::size_t statistics[R]; // index of each row's first group in scales and zeros
    for (int i = 0; i < R; ++i) {
        const int row = std::min(first + i, m.rows - 1);
        codes[i] = rowCodes(m, row);
        statistics[i] = static_cast<std::size_t>(row) * m.groups;
    }
    const __m256i lowNibbles = _mm256_set1_epi8(0x0F);
    const __m256i ones = _mm256_set1_epi16(1);
    const int blocksPerGroup = m.groupsize / kInt8Block;
    const bool paired = a.order == Int8Order::NibblePairs;
    const CodesAhead ahead(m, first + R, R, m.cols / kInt8Block);
    __m256 acc[R];
    float zeroTerms[R] = {};
    for (int i = 0; i < R; ++i)
        acc[i] = _mm256_setzero_ps();
    for (int g = 0; g < m.groups; ++g) {
        __m256 group[R];
        for (int i = 0; i < R; ++i)
            group[i] = _mm256_setzero_ps();
        for (int b = g * blocksPerGroup; paired && b < (g + 1) * blocksPerGroup; b += 2) {
            // 64 codes a load: both blocks' low nibbles (even columns), then their high ones.
            const __m256i xEven = _mm256_loadu_si256(
                reinterpret_cast<const __m256i*>(a.values.data() + b * kInt8Block));
            const __m256i xOdd = _mm256_loadu_si256(
                reinterpret_cast<const __m256i*>(a.values.data() + b * kInt8Block + kInt8Block));
            const __m256 scale = _mm256_loadu_ps(a.scales.data() + b * 4);
            ahead(b);
            ahead(b + 1);
#pragma GCC unroll 16
            for (int i = 0; i < R; ++i) {
                const NibblePairCodes c = nibblePairCodes(codes[i] + b * (kInt8Block / 2));
                // Two products of at most 2·15·127 each: their sum still fits 16 bits.
                const __m256i pairs = _mm256_add_epi16(_mm256_maddubs_epi16(c.even, xEven),
                                                       _mm256_maddubs_epi16(c.odd, xOdd));
                const __m256i sums = _mm256_madd_epi16(pairs, ones);
                group[i] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(sums), scale, group[i]);
            }
        }
        for (int b = g * blocksPerGroup; !paired && b < (g + 1) * blocksPerGroup; ++b) {
            const __m256i xq = _mm256_loadu_si256(
                reinterpret_cast<const __m256i*>(a.values.data() + b * kInt8Block));
            const __m256 scale = _mm256_set1_ps(a.scales[static_cast<std::size_t>(b)]);
            ahead(b);
#pragma GCC unroll 16
            for (int i = 0; i < R; ++i) {
                const __m128i packed = _mm_loadu_si128(
                    reinterpret_cast<const __m128i*>(codes[i] + b * (kInt8Block / 2)));
                // Low nibbles (even columns) in the lower half, high nibbles in the upper.
                const __m256i c = _mm256_and_si256(
                    _mm256_set_m128i(_mm_srli_epi16(packed, 4), packed), lowNibbles);
                const __m256i sums = _mm256_madd_epi16(_mm256_maddubs_epi16(c, xq), ones);
                group[i] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(sums), scale, group[i]);
            }
        }
        const float groupSum = a.groupSums[static_cast<std::size_t>(g)];
#pragma GCC unroll 16
        for (int i = 0; i < R; ++i) {
            const float s = storedHalf(m.scales, statistics[i] + g);
            const float z = storedHalf(m.zeros, statistics[i] + g);
            acc[i] = _mm256_fmadd_ps(group[i], _mm256_set1_ps(s), acc[i]);
            zeroTerms[i] += s * z * groupSum;
        }
    }
    for (int i = 0; i < R && first + i < last; ++i) {
        const float sum = horizontalSum(acc[i]) - zeroTerms[i];
        y[first + i] = accumulate ? y[first + i] + sum : sum;
    }
}

} // namespace

bool int8GridApplies(const CompressedMatrix& m) {
    return m.grid == CompressedMatrix::Grid::Affine && m.wbits == 4 && m.cols % kInt8Block == 0 &&
           m.groupsize % kInt8Block == 0 && m.groups * m.groupsize == m.cols &&
           m.outliers.count == 0;
}

bool productInt8Grid(const CompressedMatrix& m, const float* x, float* y, bool accumulate) {
    if (!int8GridApplies(m)) return false;
    const Int8Order order =
        m.groupsize % (2 * kInt8Block) == 0 ? Int8Order::NibblePairs : Int8Order::Nibbles;
    const Int8Activations& activations = int8Activations(x, m.cols, m.groupsize, order);
    constexpr int kRows = 4; // four rows share each block of x
    forEachRowTask(m.rows, [&](int first, int last) {
        for (int p = first; p < last; p += kRows)
            productPass<kRows>(m, activations, p, last, y, accumulate);
    });
    return true;
}

#else

bool int8GridApplies(const CompressedMatrix&) {
    return false;
}

bool productInt8Grid(const CompressedMatrix&, const float*, float*, bool) {
    return false;
}

#endif

} // namespace quantlens::kernels
