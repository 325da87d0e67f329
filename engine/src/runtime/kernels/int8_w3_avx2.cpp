#include "runtime/kernels/int8_row_block.h"

// Batch-1 products of 3-bit codes (SpQR w3, SqueezeLLM w3, RTN and GPTQ w3) with int8
// activations. 32 codes are 12 bytes: one load, a byte shuffle and a 16-bit multiply (a shift per
// lane) give each code a byte of its own in column order, and 32 codes then meet 32 activations
// in one vpmaddubsw, as the 4-bit kernels do.
//
// Grids (w = s_g·(c − z_g)): y = Σ_b d_b·Σ_{j∈b} s_g·c_j·q_j − Σ_g s_g·z_g·Σ_{j∈g} x_j, the zero
// point on the exact x; groups of 16 split a block's lanes between two scales. LUTs: the 4-bit
// LUT kernel's fixed-point tables (int8_lut_avx2.cpp) with 8 entries. Outliers add their exact
// CSR corrections. The errors are the 4-bit kernels' (docs/FORMAT.md, "Fused kernels").

namespace quantlens::kernels {

#ifdef QUANTLENS_KERNELS_AVX2

namespace {

constexpr int kBlockBytes = 12; // 32 3-bit codes

// 32 3-bit codes, packed LSB first from p (16 bytes readable), as 32 bytes in column order. Each
// 16-bit lane m of a 128-bit half holds codes 2m and 2m + 1 of the half's 16, bits 6m…6m+5 of its
// 6 bytes: the shuffle fetches bytes s = ⌊6m/8⌋ and s + 1, the multiply by 2^(6 − r) (r = 6m mod
// 8) moves the 6 bits to bits 6…11, and the two codes go to the lane's low and high bytes.
struct Unpack3 {
    __m256i fetch = _mm256_setr_epi8(0, 1, 0, 1, 1, 2, 2, 3, 3, 4, 3, 4, 4, 5, 5, 6, //
                                     6, 7, 6, 7, 7, 8, 8, 9, 9, 10, 9, 10, 10, 11, 11, 12);
    __m256i shift = _mm256_setr_epi16(64, 1, 4, 16, 64, 1, 4, 16, 64, 1, 4, 16, 64, 1, 4, 16);
    __m256i lowCode = _mm256_set1_epi16(0x0007);
    __m256i highCode = _mm256_set1_epi16(0x0700);

    __m256i operator()(const std::byte* p) const {
        const __m256i bytes =
            _mm256_broadcastsi128_si256(_mm_loadu_si128(reinterpret_cast<const __m128i*>(p)));
        const __m256i moved = _mm256_mullo_epi16(_mm256_shuffle_epi8(bytes, fetch), shift);
        return _mm256_or_si256(_mm256_and_si256(_mm256_srli_epi16(moved, 6), lowCode),
                               _mm256_and_si256(_mm256_srli_epi16(moved, 1), highCode));
    }
};

// The int32 sums of a block of one row's codes with the activations (grids: Σ c_j·q_j per 4
// columns; LUTs: Σ t_{c_j}·q_j).
template <Source source>
inline __m256i blockSums(__m256i codes, __m256i xq, __m256i xSize, __m256i low, __m256i high) {
    const __m256i ones = _mm256_set1_epi16(1);
    if constexpr (source == Source::Lut) {
        return _mm256_add_epi32(_mm256_madd_epi16(fixedLutLows(low, codes, xq), ones),
                                weighedHighs(fixedLutHighs(high, codes, xq, xSize)));
    } else {
        return _mm256_madd_epi16(_mm256_maddubs_epi16(codes, xq), ones);
    }
}

// Rows first…first+R−1 of y, lanes lane…lane+R−1 of their row block (rows past the matrix are
// computed on its last row and dropped). `halfGroups`: groups of 16, two scales a block.
template <Source source, bool halfGroups, int R>
void threeBitPass(const GridSource& plan, const Int8Activations& a, const float* x,
                  const RowBlock& block, int lane, int first, int last, float* y, bool accumulate) {
    const CompressedMatrix& m = plan.m;
    const KernelLayout& layout = plan.layout;
    const Unpack3 unpack;
    int rows[R];
    const std::byte* codes[R];
    __m256i low[R], high[R]; // LUTs: the fixed-point tables
    for (int i = 0; i < R; ++i) {
        rows[i] = std::min(first + i, m.rows - 1);
        codes[i] = rowCodes(m, rows[i]);
        low[i] = high[i] = _mm256_setzero_si256();
        if constexpr (source == Source::Lut) loadFixedLut(layout, rows[i], low[i], high[i]);
    }
    constexpr int halves = unitsPerBlock(halfGroups);
    const float* scales = block.unitScales + lane; // row i's of block k at [k·halves·8 + i]
    __m256 acc[R];
    for (int i = 0; i < R; ++i)
        acc[i] = _mm256_setzero_ps();
    const int blocks = m.cols / kInt8Block;
    const CodesAhead ahead(m, first + R, R, blocks);
    // Blocks [k0, k1) of the rows whose codes from block k0 on start at code[i].
    const auto run = [&](int k0, int k1, const std::byte* const* code) {
        for (int k = k0; k < k1; ++k) {
            ahead(k);
            const __m256i xq = _mm256_loadu_si256(
                reinterpret_cast<const __m256i*>(a.values.data() + k * kInt8Block));
            const __m256i xSize = _mm256_abs_epi8(xq);
            const float* s = scales + k * halves * kBlockRows;
#pragma GCC unroll 8
            for (int i = 0; i < R; ++i) {
                const __m256 sums = _mm256_cvtepi32_ps(blockSums<source>(
                    unpack(code[i] + (k - k0) * kBlockBytes), xq, xSize, low[i], high[i]));
                __m256 scale;
                if constexpr (source == Source::Lut)
                    scale = _mm256_set1_ps(a.scales[static_cast<std::size_t>(k)]);
                else if constexpr (halfGroups)
                    scale = _mm256_insertf128_ps(_mm256_castps128_ps256(_mm_broadcast_ss(s + i)),
                                                 _mm_broadcast_ss(s + kBlockRows + i), 1);
                else
                    scale = _mm256_broadcast_ss(s + i);
                acc[i] = _mm256_fmadd_ps(sums, scale, acc[i]);
            }
        }
    };
    if (rows[R - 1] < m.rows - 1) {
        run(0, blocks, codes);
    } else {
        // The last row's last block would load 4 bytes past the codes: that block reads copies.
        run(0, blocks - 1, codes);
        alignas(16) std::byte tails[R][16] = {};
        const std::byte* tail[R];
        for (int i = 0; i < R; ++i) {
            std::memcpy(tails[i], codes[i] + (blocks - 1) * kBlockBytes, kBlockBytes);
            tail[i] = tails[i];
        }
        run(blocks - 1, blocks, tail);
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

bool int8ThreeBitApplies(const CompressedMatrix& m) {
    if (m.wbits != 3 || m.cols % kInt8Block != 0 || !m.kernel) return false;
    if (m.grid == CompressedMatrix::Grid::Lut) return !m.kernel->fixedLuts.empty();
    return (m.groupsize == 16 || m.groupsize % kInt8Block == 0) && m.groups * m.groupsize == m.cols;
}

bool productInt8ThreeBit(const CompressedMatrix& m, const float* x, float* y, bool accumulate) {
    if (!int8ThreeBitApplies(m)) return false;
    const Int8Activations& activations =
        int8Activations(x, m.cols, m.groupsize, Int8Order::Natural);
    const GridSource plan(m);
    constexpr int kRows = 4; // four rows share each block of x; two passes a row block
    const auto run = [&]<Source source, bool halfGroups>() {
        forEachRowBlock<source, halfGroups>(
            plan, activations, [&](const RowBlock& block, int p, int last) {
                for (int lane = 0; lane < kBlockRows && p + lane < last; lane += kRows)
                    threeBitPass<source, halfGroups, kRows>(plan, activations, x, block, lane,
                                                            p + lane, last, y, accumulate);
            });
    };
    if (m.grid == CompressedMatrix::Grid::Lut)
        run.template operator()<Source::Lut, false>();
    else
        dispatchGrid(m, run);
    return true;
}

#else

bool int8ThreeBitApplies(const CompressedMatrix&) {
    return false;
}

bool productInt8ThreeBit(const CompressedMatrix&, const float*, float*, bool) {
    return false;
}

#endif

} // namespace quantlens::kernels
