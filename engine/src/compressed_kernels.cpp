#include "quantlens/compressed_kernels.h"

#include "min_max_grid.h"
#include "quantlens/dtype.h"
#include "quantlens/float_tensor.h"
#include "quantlens/parallel.h"

#include <algorithm>
#include <optional>
#include <type_traits>
#include <vector>

#if defined(__AVX2__) && defined(__FMA__) && defined(__F16C__)
#include <immintrin.h>
#define QUANTLENS_KERNELS_AVX2 1
// 16-lane kernels where the build targets AVX-512 with VBMI's multishift (Ice Lake, Zen 4).
#if defined(__AVX512F__) && defined(__AVX512BW__) && defined(__AVX512VBMI__)
#define QUANTLENS_KERNELS_AVX512 1
#endif
#endif

// Fused dequantize-and-multiply kernels. Every weight is decoded with the very expression
// QuantizedLayer::dequantize() uses — scale·(code − zero) on the first-level grid (SpQR's grid
// itself decoded from its second-level codes), or the row's LUT entry — so decoded weights are
// bit-identical to dequantize(); outliers then replace their positions.

namespace quantlens {
namespace {

// Rows per task on the fused path (a multiple of 8): few enough that a block's decoded grids
// stay in L1.
constexpr int kRowBlock = 8;
constexpr int kTileRows = 32; // rows per decoded tile on the batched path

// 57 or more bits of a packed row from bit `bit` on, LSB first; bytes at or past `end` (the end
// of the whole array) read as zero, so no load leaves the array.
inline std::uint64_t bitsAt(const std::byte* row, std::size_t bit, const std::byte* end) {
    const std::byte* p = row + bit / 8;
    std::uint64_t v = 0;
    const std::ptrdiff_t available = end - p;
    if (available >= 8) // a fixed-size copy: one load
        std::memcpy(&v, p, 8);
    else
        std::memcpy(&v, p, static_cast<std::size_t>(available));
    return v >> (bit % 8);
}

inline int codeAt(const std::byte* row, std::size_t j, int bits, const std::byte* end) {
    return static_cast<int>(bitsAt(row, j * static_cast<std::size_t>(bits), end) &
                            ((1u << bits) - 1u));
}

// fp16 → fp32, exact either way: F16C where the build has it, else the engine's converter.
inline float halfToFloat(std::uint16_t bits) {
#ifdef QUANTLENS_KERNELS_AVX2
    return _cvtsh_ss(bits);
#else
    return f16ToFloat(bits);
#endif
}

// The first-level grid (scale, zero) of every (row, group) of a block of rows:
// value(i, g) = data[i·rowStride + g·groupStride].
struct BlockGrids {
    std::vector<float> scale, zero;
    std::size_t rowStride = 0, groupStride = 0;
    std::size_t at(int i, int g) const {
        return static_cast<std::size_t>(i) * rowStride + static_cast<std::size_t>(g) * groupStride;
    }
};

void convertF16(const std::byte* src, std::size_t count, float* dst, bool vector) {
    std::size_t k = 0;
#ifdef QUANTLENS_KERNELS_AVX2
    if (vector) // F16C converts exactly, as f16ToFloat does
        for (; k + 8 <= count; k += 8)
            _mm256_storeu_ps(dst + k, _mm256_cvtph_ps(_mm_loadu_si128(
                                          reinterpret_cast<const __m128i*>(src + 2 * k))));
#else
    (void)vector;
#endif
    for (; k < count; ++k)
        dst[k] = halfToFloat(loadStored<std::uint16_t>(src, k));
}

void fillGrids(const CompressedMatrix& m, int first, int count, BlockGrids& grids, bool vector) {
    const std::size_t size = static_cast<std::size_t>(count) * m.groups;
    grids.scale.resize(size);
    grids.zero.resize(size);
    if (m.grid == CompressedMatrix::Grid::Affine) {
        grids.rowStride = static_cast<std::size_t>(m.groups);
        grids.groupStride = 1;
        const std::size_t offset = static_cast<std::size_t>(first) * m.groups * 2;
        convertF16(m.scales + offset, size, grids.scale.data(), vector);
        convertF16(m.zeros + offset, size, grids.zero.data(), vector);
        return;
    }
    if (m.grid != CompressedMatrix::Grid::Spqr) return;
    // SpQR (§3.3): each first-level scale and zero is a qq-bit code on a min-max grid shared by
    // β2 consecutive rows; decoded exactly as QuantizedLayer::dequantize() does.
    grids.rowStride = 1;
    grids.groupStride = static_cast<std::size_t>(count);
    const int maxStatCode = (1 << m.qqBits) - 1;
    const std::byte* scaleEnd = m.scaleCodes + m.groups * m.statCodeRowBytes;
    const std::byte* zeroEnd = m.zeroCodes + m.groups * m.statCodeRowBytes;
    const auto stat = [&](const std::byte* stats, int g, int row) {
        const std::size_t at =
            (static_cast<std::size_t>(g) * m.rowGroups + row / m.statsGroupsize) * 2;
        return MinMaxGrid{halfToFloat(loadStored<std::uint16_t>(stats, at)),
                          halfToFloat(loadStored<std::uint16_t>(stats, at + 1)), maxStatCode};
    };
    // The second-level group of each run of 8 rows, computed once per block.
    [[maybe_unused]] int rowGroupOf[(kRowBlock > kTileRows ? kRowBlock : kTileRows) / 8];
    for (int i = 0; i + 8 <= count; i += 8)
        rowGroupOf[i / 8] = (first + i) / m.statsGroupsize;
    for (int g = 0; g < m.groups; ++g) {
        const std::byte* scaleRow = m.scaleCodes + g * m.statCodeRowBytes;
        const std::byte* zeroRow = m.zeroCodes + g * m.statCodeRowBytes;
        float* scales = grids.scale.data() + grids.at(0, g);
        float* zeros = grids.zero.data() + grids.at(0, g);
        int i = 0;
#ifdef QUANTLENS_KERNELS_AVX2
        // Eight rows at once when they share one second-level grid (rows 8-aligned, β2 a
        // multiple of 8): their codes start on a byte.
        if (vector && first % 8 == 0 && m.statsGroupsize % 8 == 0) {
            const int b = m.qqBits;
            const __m256i shifts = _mm256_setr_epi32(0, b, 2 * b, 3 * b, 0, b, 2 * b, 3 * b);
            const __m256i mask = _mm256_set1_epi32(maxStatCode);
            const __m256i shifts8 =
                _mm256_setr_epi32(0, b, 2 * b, 3 * b, 4 * b, 5 * b, 6 * b, 7 * b);
            const auto codes8 = [&](const std::byte* row, const std::byte* end, int r) {
                const std::byte* p = row + static_cast<std::size_t>(r) * b / 8;
                std::uint64_t v = 0;
                if (end - p >= 8)
                    std::memcpy(&v, p, 8);
                else
                    std::memcpy(&v, p, static_cast<std::size_t>(end - p));
                // ≤ 4-bit codes: all eight in the low word, one broadcast.
                const __m256i lanes =
                    b <= 4 ? _mm256_srlv_epi32(_mm256_set1_epi32(static_cast<int>(v)), shifts8)
                           : _mm256_srlv_epi32(
                                 _mm256_set_m128i(_mm_set1_epi32(static_cast<int>(v >> (4 * b))),
                                                  _mm_set1_epi32(static_cast<int>(v))),
                                 shifts);
                return _mm256_cvtepi32_ps(_mm256_and_si256(lanes, mask));
            };
            for (; i + 8 <= count; i += 8) {
                const int r = first + i;
                const std::size_t at = (static_cast<std::size_t>(g) * m.rowGroups +
                                        static_cast<std::size_t>(rowGroupOf[i / 8])) *
                                       2;
                const auto half = [](const std::byte* stats, std::size_t k) {
                    return _mm256_set1_ps(halfToFloat(loadStored<std::uint16_t>(stats, k)));
                };
                const __m256 scale = _mm256_mul_ps(
                    half(m.scaleStats, at),
                    _mm256_sub_ps(codes8(scaleRow, scaleEnd, r), half(m.scaleStats, at + 1)));
                _mm256_storeu_ps(scales + i,
                                 _mm256_max_ps(scale, _mm256_set1_ps(kMinimumSpqrScale)));
                _mm256_storeu_ps(
                    zeros + i,
                    _mm256_mul_ps(half(m.zeroStats, at), _mm256_sub_ps(codes8(zeroRow, zeroEnd, r),
                                                                       half(m.zeroStats, at + 1))));
            }
        }
#endif
        for (; i < count; ++i) {
            const int r = first + i;
            scales[i] = std::max(
                stat(m.scaleStats, g, r).dequantize(codeAt(scaleRow, r, m.qqBits, scaleEnd)),
                kMinimumSpqrScale);
            zeros[i] = stat(m.zeroStats, g, r).dequantize(codeAt(zeroRow, r, m.qqBits, zeroEnd));
        }
    }
}

// A row's LUT as fp32, padded with zeros to at least 16 entries.
void fillTable(const CompressedMatrix& m, int row, float* table) {
    const int levels = 1 << m.wbits;
    std::fill(table, table + 16, 0.0f);
    for (int k = 0; k < levels; ++k)
        table[k] = halfToFloat(
            loadStored<std::uint16_t>(m.lut, static_cast<std::size_t>(row) * levels + k));
}

// Everything one row's decoding needs, in registers or L1.
struct RowDecoder {
    const CompressedMatrix& m;
    const std::byte* row;
    const std::byte* end; // end of the codes array: no load reaches it
    int safeColumns;      // chunks starting before this column may load 8 bytes directly
    const float* table;   // Lut: the row's LUT
    const float* scale;   // Grid: the row's scale of group g at scale[g·groupStride]
    const float* zero;
    std::size_t groupStride;
    int groupShift; // log2(groupsize) when it is a power of two, else −1
    int chunkShift; // group of 8-column chunk c is c >> chunkShift (flat grid decoding)

    RowDecoder(const CompressedMatrix& matrix, int r, int i, const BlockGrids& grids,
               const float* lutTable)
        : m(matrix), row(matrix.codes + r * matrix.codeRowBytes),
          end(matrix.codes + matrix.rows * matrix.codeRowBytes), table(lutTable),
          scale(grids.scale.empty() ? nullptr : grids.scale.data() + grids.at(i, 0)),
          zero(grids.zero.empty() ? nullptr : grids.zero.data() + grids.at(i, 0)),
          groupStride(grids.groupStride), groupShift(-1), chunkShift(30) {
        const std::ptrdiff_t available = end - row;
        safeColumns = available >= 8 ? static_cast<int>(std::min<std::ptrdiff_t>(
                                           matrix.cols, (available - 8) * 8 / matrix.wbits + 1))
                                     : 0;
        if ((matrix.groupsize & (matrix.groupsize - 1)) == 0)
            groupShift = __builtin_ctz(static_cast<unsigned>(matrix.groupsize));
        if (matrix.groups > 1 && groupShift >= 3) chunkShift = groupShift - 3;
    }
    int group(int j) const { return groupShift >= 0 ? j >> groupShift : j / m.groupsize; }
    // The decoded weight at permuted column j, before outliers (dequantize()'s expression).
    float at(int j) const {
        const int code = codeAt(row, static_cast<std::size_t>(j), m.wbits, end);
        if (m.grid == CompressedMatrix::Grid::Lut) return table[code];
        const std::size_t g = static_cast<std::size_t>(group(j)) * groupStride;
        return scale[g] * (static_cast<float>(code) - zero[g]);
    }
};

inline float f16Value(const std::byte* values, std::int64_t k) {
    return halfToFloat(loadStored<std::uint16_t>(values, static_cast<std::size_t>(k)));
}

// Row `first + i` decoded into out[cols] with outliers in place: dequantize()'s values.
void decodeRowPortable(const CompressedMatrix& m, int first, int i, const BlockGrids& grids,
                       float* out) {
    const int r = first + i;
    float table[256];
    const bool lut = m.grid == CompressedMatrix::Grid::Lut;
    if (lut) fillTable(m, r, table);
    const RowDecoder d(m, r, i, grids, lut ? table : nullptr);
    for (int j = 0; j < m.cols; ++j)
        out[j] = d.at(j);
    if (m.outliers.count > 0)
        for (std::int64_t k = m.outliers.rowBegin(r); k < m.outliers.rowBegin(r + 1); ++k)
            out[m.outliers.column(k)] = m.outliers.value(k);
}

void fusedRowsPortable(const CompressedMatrix& m, int first, int count, const BlockGrids& grids,
                       const float* const* x, int tokens, float* out) {
    thread_local std::vector<float> w;
    w.resize(static_cast<std::size_t>(m.cols));
    for (int i = 0; i < count; ++i) {
        decodeRowPortable(m, first, i, grids, w.data());
        for (int t = 0; t < tokens; ++t) {
            float sum = 0.0f;
            for (int j = 0; j < m.cols; ++j)
                sum += w[j] * x[t][j];
            out[i * tokens + t] = sum;
        }
    }
}

#ifdef QUANTLENS_KERNELS_AVX2

// Eight consecutive codes per call, one per 32-bit lane.
struct CodeUnpacker {
    explicit CodeUnpacker(int bits)
        : shifts8(_mm256_setr_epi32(0, bits, 2 * bits, 3 * bits, 4 * bits, 5 * bits, 6 * bits,
                                    7 * bits)),
          shifts4(_mm256_setr_epi32(0, bits, 2 * bits, 3 * bits, 0, bits, 2 * bits, 3 * bits)),
          mask(_mm256_set1_epi32((1 << bits) - 1)), bits(bits) {}
    // Codes j…j+7 for j a multiple of 8, which start on a byte: bits ≤ 4 fit one 32-bit word,
    // broadcast and shifted per lane; wider codes take two 4-code halves of a 64-bit window.
    template <bool narrow> __m256i aligned(const std::byte* row, int j) const {
        const std::byte* p = row + static_cast<std::size_t>(j) * bits / 8;
        if constexpr (narrow) {
            std::uint32_t v;
            std::memcpy(&v, p, 4);
            return _mm256_and_si256(
                _mm256_srlv_epi32(_mm256_set1_epi32(static_cast<int>(v)), shifts8), mask);
        } else {
            std::uint64_t v;
            std::memcpy(&v, p, 8);
            return halves(v);
        }
    }
    // Codes j…j+7 from any column, reading no byte at or past `end`.
    __m256i anywhere(const std::byte* row, int j, const std::byte* end) const {
        return halves(bitsAt(row, static_cast<std::size_t>(j) * bits, end));
    }
    __m256i halves(std::uint64_t v) const {
        const __m256i both = _mm256_set_m128i(_mm_set1_epi32(static_cast<int>(v >> (4 * bits))),
                                              _mm_set1_epi32(static_cast<int>(v)));
        return _mm256_and_si256(_mm256_srlv_epi32(both, shifts4), mask);
    }
    __m256i shifts8, shifts4, mask;
    int bits;
};

inline float horizontalSum(__m256 v) {
    __m128 sum = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    sum = _mm_add_ps(sum, _mm_movehl_ps(sum, sum));
    sum = _mm_add_ss(sum, _mm_movehdup_ps(sum));
    return _mm_cvtss_f32(sum);
}

// How a row's codes become weights: a min-max grid per group (RTN, GPTQ, SpQR) — walked chunk by
// chunk when every group is a power-of-two multiple of 8 columns (or the whole row), with narrow
// (≤ 4-bit) or wide codes, else group by group — or a LUT of 8 entries (one permute), 16 (two
// permutes and a blend) or more (a gather).
enum class Decode { GridFlatNarrow, GridFlatWide, GridGrouped, Lut8, Lut16, LutGather };

Decode decodeKind(const CompressedMatrix& m) {
    if (m.grid != CompressedMatrix::Grid::Lut) {
        const int g = m.groupsize;
        if (m.groups > 1 && (g < 8 || (g & (g - 1)) != 0)) return Decode::GridGrouped;
        return m.wbits <= 4 ? Decode::GridFlatNarrow : Decode::GridFlatWide;
    }
    return m.wbits <= 3 ? Decode::Lut8 : m.wbits == 4 ? Decode::Lut16 : Decode::LutGather;
}

using Slot0 = std::integral_constant<int, 0>;
using Slot1 = std::integral_constant<int, 1>;

// Runs chunk(j, codes, slot) over the 8-column runs of [j, end), two at a time so that callers
// can keep two independent accumulators (the compile-time `slot`); direct loads while they stay
// below safeColumns, bounded loads after.
template <bool narrow, bool aligned, class Chunk>
inline void forEachChunk(const RowDecoder& d, const CodeUnpacker& unpack, int& j, int end,
                         Chunk&& chunk) {
    if constexpr (aligned) {
        for (; j + 16 <= end && j + 8 < d.safeColumns; j += 16) {
            chunk(j, unpack.aligned<narrow>(d.row, j), Slot0{});
            chunk(j + 8, unpack.aligned<narrow>(d.row, j + 8), Slot1{});
        }
    }
    for (; j + 8 <= end; j += 8)
        chunk(j, unpack.anywhere(d.row, j, d.end), Slot0{});
}

// Calls chunk(j, w, slot) for each run of 8 columns j…j+7 inside one group, with w their decoded
// weights, and single(j, w) for the columns left at the end of each group.
template <Decode kind, class Chunk, class Single>
inline void forEachWeight(const RowDecoder& d, const CodeUnpacker& unpack, Chunk&& chunk,
                          Single&& single) {
    const CompressedMatrix& m = d.m;
    if constexpr (kind == Decode::GridFlatNarrow || kind == Decode::GridFlatWide) {
        // Every chunk lies in one group: its scale and zero are broadcast straight from memory.
        const auto weights = [&](int c, __m256i codes) {
            const std::size_t g = static_cast<std::size_t>(c >> d.chunkShift) * d.groupStride;
            return _mm256_mul_ps(
                _mm256_broadcast_ss(d.scale + g),
                _mm256_sub_ps(_mm256_cvtepi32_ps(codes), _mm256_broadcast_ss(d.zero + g)));
        };
        int j = 0;
        forEachChunk<kind == Decode::GridFlatNarrow, true>(
            d, unpack, j, m.cols,
            [&](int at, __m256i codes, auto slot) { chunk(at, weights(at >> 3, codes), slot); });
        for (; j < m.cols; ++j)
            single(j, d.at(j));
    } else if constexpr (kind == Decode::GridGrouped) {
        for (int g = 0; g < m.groups; ++g) {
            const float scale = d.scale[g * d.groupStride], zero = d.zero[g * d.groupStride];
            const __m256 scaleV = _mm256_set1_ps(scale), zeroV = _mm256_set1_ps(zero);
            const int end = std::min(m.cols, (g + 1) * m.groupsize);
            int j = g * m.groupsize;
            forEachChunk<false, false>(d, unpack, j, end, [&](int at, __m256i codes, auto slot) {
                chunk(at, _mm256_mul_ps(scaleV, _mm256_sub_ps(_mm256_cvtepi32_ps(codes), zeroV)),
                      slot);
            });
            for (; j < end; ++j)
                single(j, scale * (static_cast<float>(codeAt(d.row, j, m.wbits, d.end)) - zero));
        }
    } else {
        const __m256 low = _mm256_loadu_ps(d.table), high = _mm256_loadu_ps(d.table + 8);
        int j = 0;
        forEachChunk<kind != Decode::LutGather, true>(
            d, unpack, j, m.cols, [&](int at, __m256i codes, auto slot) {
                if constexpr (kind == Decode::Lut8) {
                    chunk(at, _mm256_permutevar8x32_ps(low, codes), slot);
                } else if constexpr (kind == Decode::Lut16) {
                    // Bit 3 of the code picks the upper half; blendv reads each lane's sign bit.
                    chunk(at,
                          _mm256_blendv_ps(_mm256_permutevar8x32_ps(low, codes),
                                           _mm256_permutevar8x32_ps(high, codes),
                                           _mm256_castsi256_ps(_mm256_slli_epi32(codes, 28))),
                          slot);
                } else {
                    chunk(at, _mm256_i32gather_ps(d.table, codes, 4), slot);
                }
            });
        for (; j < m.cols; ++j)
            single(j, d.table[codeAt(d.row, j, m.wbits, d.end)]);
    }
}

constexpr bool isLut(Decode kind) {
    return kind == Decode::Lut8 || kind == Decode::Lut16 || kind == Decode::LutGather;
}

template <int T, Decode kind>
void fusedRowsAvx2(const CompressedMatrix& m, int first, int count, const BlockGrids& grids,
                   const float* const* x, float* out) {
    // Two accumulators per token, so that consecutive FMAs do not wait on each other.
    constexpr int K = 2;
    const CodeUnpacker unpack(m.wbits);
    alignas(32) float table[256];
    for (int i = 0; i < count; ++i) {
        const int r = first + i;
        if constexpr (isLut(kind)) fillTable(m, r, table);
        const RowDecoder d(m, r, i, grids, isLut(kind) ? table : nullptr);
        __m256 acc[T][K];
        float rest[T];
        for (int t = 0; t < T; ++t) {
            for (int k = 0; k < K; ++k)
                acc[t][k] = _mm256_setzero_ps();
            rest[t] = 0.0f;
        }
        forEachWeight<kind>(
            d, unpack,
            [&](int j, __m256 w, auto slot) {
                for (int t = 0; t < T; ++t)
                    acc[t][slot] = _mm256_fmadd_ps(w, _mm256_loadu_ps(x[t] + j), acc[t][slot]);
            },
            [&](int j, float w) {
                for (int t = 0; t < T; ++t)
                    rest[t] += w * x[t][j];
            });
        // Outliers replace the decoded weight: add (value − decoded)·x at their columns.
        if (m.outliers.count > 0) {
            const std::int64_t end = m.outliers.rowBegin(r + 1);
            for (std::int64_t k = m.outliers.rowBegin(r); k < end; ++k) {
                const int j = m.outliers.column(k);
                const float delta = f16Value(m.outliers.values, k) - d.at(j);
                for (int t = 0; t < T; ++t)
                    rest[t] += delta * x[t][j];
            }
        }
        for (int t = 0; t < T; ++t) {
            __m256 sum = acc[t][0];
            for (int k = 1; k < K; ++k)
                sum = _mm256_add_ps(sum, acc[t][k]);
            out[i * T + t] = horizontalSum(sum) + rest[t];
        }
    }
}

template <Decode kind>
void decodeRowAvx2(const CompressedMatrix& m, int first, int i, const BlockGrids& grids,
                   float* out) {
    const int r = first + i;
    const CodeUnpacker unpack(m.wbits);
    alignas(32) float table[256];
    if constexpr (isLut(kind)) fillTable(m, r, table);
    const RowDecoder d(m, r, i, grids, isLut(kind) ? table : nullptr);
    forEachWeight<kind>(
        d, unpack, [&](int j, __m256 w, auto) { _mm256_storeu_ps(out + j, w); },
        [&](int j, float w) { out[j] = w; });
    if (m.outliers.count > 0)
        for (std::int64_t k = m.outliers.rowBegin(r); k < m.outliers.rowBegin(r + 1); ++k)
            out[m.outliers.column(k)] = f16Value(m.outliers.values, k);
}

template <Decode kind>
void fusedRowsAvx2(const CompressedMatrix& m, int first, int count, const BlockGrids& grids,
                   const float* const* x, int tokens, float* out) {
    switch (tokens) {
    case 1:
        return fusedRowsAvx2<1, kind>(m, first, count, grids, x, out);
    case 2:
        return fusedRowsAvx2<2, kind>(m, first, count, grids, x, out);
    case 3:
        return fusedRowsAvx2<3, kind>(m, first, count, grids, x, out);
    case 4:
        return fusedRowsAvx2<4, kind>(m, first, count, grids, x, out);
    case 5:
        return fusedRowsAvx2<5, kind>(m, first, count, grids, x, out);
    case 6:
        return fusedRowsAvx2<6, kind>(m, first, count, grids, x, out);
    case 7:
        return fusedRowsAvx2<7, kind>(m, first, count, grids, x, out);
    default:
        return fusedRowsAvx2<8, kind>(m, first, count, grids, x, out);
    }
}

#ifdef QUANTLENS_KERNELS_AVX512

// Sixteen consecutive codes of ≤ 4 bits (one 64-bit word, from a column that is a multiple of 16)
// into 32-bit lanes with one multishift: each lane's low byte is picked at bit offset lane·bits.
struct CodeUnpacker16 {
    explicit CodeUnpacker16(int bits) : mask(_mm512_set1_epi32((1 << bits) - 1)), bits(bits) {
        alignas(64) std::uint8_t offsets[64] = {};
        for (int lane = 0; lane < 16; ++lane)
            offsets[4 * lane] = static_cast<std::uint8_t>(lane * bits);
        control = _mm512_load_si512(offsets);
    }
    __m512i operator()(const std::byte* row, int j) const {
        std::uint64_t v;
        std::memcpy(&v, row + static_cast<std::size_t>(j) * bits / 8, 8);
        return _mm512_and_si512(
            _mm512_multishift_epi64_epi8(control, _mm512_set1_epi64(static_cast<long long>(v))),
            mask);
    }
    __m512i control, mask;
    int bits;
};

// The 16-lane kernels: ≤ 4-bit codes on a flat grid whose groups are multiples of 16 columns
// (or the whole row), or a LUT of at most 16 entries (one permute).
enum class Decode16 { Grid, Lut };

std::optional<Decode16> decodeKind16(const CompressedMatrix& m) {
    if (m.wbits > 4) return std::nullopt;
    if (m.grid == CompressedMatrix::Grid::Lut) return Decode16::Lut;
    const int g = m.groupsize;
    if (m.groups == 1 || (g >= 16 && (g & (g - 1)) == 0)) return Decode16::Grid;
    return std::nullopt;
}

template <int T, Decode16 kind>
void fusedRowsAvx512(const CompressedMatrix& m, int first, int count, const BlockGrids& grids,
                     const float* const* x, float* out) {
    const CodeUnpacker16 unpack(m.wbits);
    alignas(64) float table[256];
    const int chunks = m.cols / 16;
    for (int i = 0; i < count; ++i) {
        const int r = first + i;
        if constexpr (kind == Decode16::Lut) fillTable(m, r, table);
        const RowDecoder d(m, r, i, grids, kind == Decode16::Lut ? table : nullptr);
        const __m512 lut = kind == Decode16::Lut ? _mm512_load_ps(table) : _mm512_setzero_ps();
        // Group of 16-column chunk c: c >> shift (chunkShift counts 8-column chunks).
        const int shift = d.chunkShift >= 30 ? 30 : d.chunkShift - 1;
        __m512 acc[T][2];
        float rest[T];
        for (int t = 0; t < T; ++t) {
            acc[t][0] = acc[t][1] = _mm512_setzero_ps();
            rest[t] = 0.0f;
        }
        const auto weights = [&](int c, __m512i codes) {
            if constexpr (kind == Decode16::Lut) {
                return _mm512_permutexvar_ps(codes, lut);
            } else {
                const std::size_t g = static_cast<std::size_t>(c >> shift) * d.groupStride;
                return _mm512_mul_ps(
                    _mm512_set1_ps(d.scale[g]),
                    _mm512_sub_ps(_mm512_cvtepi32_ps(codes), _mm512_set1_ps(d.zero[g])));
            }
        };
        const auto add = [&](int c, __m512 w, int slot) {
            for (int t = 0; t < T; ++t)
                acc[t][slot] = _mm512_fmadd_ps(w, _mm512_loadu_ps(x[t] + 16 * c), acc[t][slot]);
        };
        int c = 0;
        for (; c + 2 <= chunks && 16 * (c + 1) < d.safeColumns; c += 2) {
            add(c, weights(c, unpack(d.row, 16 * c)), 0);
            add(c + 1, weights(c + 1, unpack(d.row, 16 * (c + 1))), 1);
        }
        for (int j = 16 * c; j < m.cols; ++j) {
            const float w = d.at(j);
            for (int t = 0; t < T; ++t)
                rest[t] += w * x[t][j];
        }
        if (m.outliers.count > 0) {
            const std::int64_t end = m.outliers.rowBegin(r + 1);
            for (std::int64_t k = m.outliers.rowBegin(r); k < end; ++k) {
                const int j = m.outliers.column(k);
                const float delta = f16Value(m.outliers.values, k) - d.at(j);
                for (int t = 0; t < T; ++t)
                    rest[t] += delta * x[t][j];
            }
        }
        for (int t = 0; t < T; ++t)
            out[i * T + t] = _mm512_reduce_add_ps(_mm512_add_ps(acc[t][0], acc[t][1])) + rest[t];
    }
}

template <Decode16 kind>
void fusedRowsAvx512(const CompressedMatrix& m, int first, int count, const BlockGrids& grids,
                     const float* const* x, int tokens, float* out) {
    switch (tokens) {
    case 1:
        return fusedRowsAvx512<1, kind>(m, first, count, grids, x, out);
    case 2:
        return fusedRowsAvx512<2, kind>(m, first, count, grids, x, out);
    case 3:
        return fusedRowsAvx512<3, kind>(m, first, count, grids, x, out);
    case 4:
        return fusedRowsAvx512<4, kind>(m, first, count, grids, x, out);
    case 5:
        return fusedRowsAvx512<5, kind>(m, first, count, grids, x, out);
    case 6:
        return fusedRowsAvx512<6, kind>(m, first, count, grids, x, out);
    case 7:
        return fusedRowsAvx512<7, kind>(m, first, count, grids, x, out);
    default:
        return fusedRowsAvx512<8, kind>(m, first, count, grids, x, out);
    }
}

#endif

// Calls body.template operator()<kind>() for the matrix's decode kind.
template <class Body> void withDecodeKind(const CompressedMatrix& m, Body&& body) {
    switch (decodeKind(m)) {
    case Decode::GridFlatNarrow:
        return body.template operator()<Decode::GridFlatNarrow>();
    case Decode::GridFlatWide:
        return body.template operator()<Decode::GridFlatWide>();
    case Decode::GridGrouped:
        return body.template operator()<Decode::GridGrouped>();
    case Decode::Lut8:
        return body.template operator()<Decode::Lut8>();
    case Decode::Lut16:
        return body.template operator()<Decode::Lut16>();
    case Decode::LutGather:
        return body.template operator()<Decode::LutGather>();
    }
}

#endif

void fusedRows(const CompressedMatrix& m, int first, int count, const BlockGrids& grids,
               const float* const* x, int tokens, float* out, bool vector, bool wide) {
#ifdef QUANTLENS_KERNELS_AVX512
    if (vector && wide)
        if (const auto kind = decodeKind16(m))
            return *kind == Decode16::Grid
                       ? fusedRowsAvx512<Decode16::Grid>(m, first, count, grids, x, tokens, out)
                       : fusedRowsAvx512<Decode16::Lut>(m, first, count, grids, x, tokens, out);
#endif
#ifdef QUANTLENS_KERNELS_AVX2
    if (vector)
        return withDecodeKind(
            m, [&]<Decode kind>() { fusedRowsAvx2<kind>(m, first, count, grids, x, tokens, out); });
#else
    (void)vector;
#endif
    (void)wide;
    fusedRowsPortable(m, first, count, grids, x, tokens, out);
}

void decodeRow(const CompressedMatrix& m, int first, int i, const BlockGrids& grids, float* out,
               bool vector) {
#ifdef QUANTLENS_KERNELS_AVX2
    if (vector)
        return withDecodeKind(m,
                              [&]<Decode kind>() { decodeRowAvx2<kind>(m, first, i, grids, out); });
#else
    (void)vector;
#endif
    decodeRowPortable(m, first, i, grids, out);
}

bool useVector(KernelIsa isa) {
#ifdef QUANTLENS_KERNELS_AVX2
    return isa != KernelIsa::Portable;
#else
    (void)isa;
    return false;
#endif
}

} // namespace

void decodeCompressedRows(const CompressedMatrix& m, int first, int count, float* out,
                          KernelIsa isa) {
    const bool vector = useVector(isa);
    BlockGrids grids;
    for (int done = 0; done < count; done += kRowBlock) {
        const int block = std::min(kRowBlock, count - done);
        fillGrids(m, first + done, block, grids, vector);
        for (int i = 0; i < block; ++i)
            decodeRow(m, first + done, i, grids, out + static_cast<std::size_t>(done + i) * m.cols,
                      vector);
    }
}

void multiplyCompressed(const CompressedMatrix& m, const float* x, std::ptrdiff_t xStride,
                        int tokens, float* y, std::ptrdiff_t yStride, bool accumulate,
                        KernelIsa isa) {
    if (tokens <= 0 || m.rows == 0) return;
    const bool vector = useVector(isa), wide = isa == KernelIsa::Auto;
    // The kernels work in permuted column order (act-order): permute x once, not W.
    std::vector<float> permuted;
    const float* xs = x;
    std::ptrdiff_t xsStride = xStride;
    if (m.perm) {
        permuted.resize(static_cast<std::size_t>(tokens) * m.cols);
        for (int t = 0; t < tokens; ++t)
            for (int j = 0; j < m.cols; ++j)
                permuted[static_cast<std::size_t>(t) * m.cols + j] =
                    x[t * xStride + m.originalColumn(j)];
        xs = permuted.data();
        xsStride = m.cols;
    }

    if (tokens <= kFusedBatch) {
        const float* rows[kFusedBatch];
        for (int t = 0; t < tokens; ++t)
            rows[t] = xs + t * xsStride;
        parallelFor((m.rows + kRowBlock - 1) / kRowBlock, [&](std::int64_t task) {
            const int first = static_cast<int>(task) * kRowBlock;
            const int count = std::min(kRowBlock, m.rows - first);
            thread_local BlockGrids grids;
            fillGrids(m, first, count, grids, vector);
            float out[kRowBlock * kFusedBatch];
            fusedRows(m, first, count, grids, rows, tokens, out, vector, wide);
            for (int i = 0; i < count; ++i)
                for (int t = 0; t < tokens; ++t) {
                    float& target = y[t * yStride + first + i];
                    target = accumulate ? target + out[i * tokens + t] : out[i * tokens + t];
                }
        });
        return;
    }

    using StridedMap = Eigen::Map<const RowMatrix, 0, Eigen::OuterStride<>>;
    const StridedMap input(xs, tokens, m.cols, Eigen::OuterStride<>(xsStride));
    parallelFor((m.rows + kTileRows - 1) / kTileRows, [&](std::int64_t task) {
        const int first = static_cast<int>(task) * kTileRows;
        const int count = std::min(kTileRows, m.rows - first);
        thread_local std::vector<float> tile;
        thread_local BlockGrids grids;
        tile.resize(static_cast<std::size_t>(count) * m.cols);
        fillGrids(m, first, count, grids, vector);
        for (int i = 0; i < count; ++i)
            decodeRow(m, first, i, grids, tile.data() + static_cast<std::size_t>(i) * m.cols,
                      vector);
        const ConstRowMatrixMap weights(tile.data(), count, m.cols);
        Eigen::Map<RowMatrix, 0, Eigen::OuterStride<>> output(y + first, tokens, count,
                                                              Eigen::OuterStride<>(yStride));
        if (accumulate)
            output.noalias() += input * weights.transpose();
        else
            output.noalias() = input * weights.transpose();
    });
}

} // namespace quantlens
