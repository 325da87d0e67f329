#pragma once

// What the fused kernels of every instruction set share (compressed_kernels.cpp dispatches among
// portable.cpp, avx2.cpp and avx512.cpp, as ggml keeps one file per architecture): the kernel
// layout, the scalar decoding that defines the weights bit for bit, and the row tasks.

#include "encoding/min_max_grid.h"
#include "quantlens/core/dtype.h"
#include "quantlens/core/parallel.h"
#include "quantlens/runtime/compressed_kernels.h"

#include <algorithm>
#include <cstdint>
#include <cstring>
#include <vector>

#if defined(__AVX2__) && defined(__FMA__) && defined(__F16C__)
#include <immintrin.h>
#define QUANTLENS_KERNELS_AVX2 1
// 16-lane kernels where the build targets AVX-512.
#if defined(__AVX512F__)
#define QUANTLENS_KERNELS_AVX512 1
#endif
// int8 kernels on byte permutes and integer dot products where the build targets those too.
#if defined(__AVX512BW__) && defined(__AVX512DQ__) && defined(__AVX512VBMI__) &&                   \
    defined(__AVX512VNNI__)
#define QUANTLENS_KERNELS_AVX512_VNNI 1
#endif
#endif

// Fused dequantize-and-multiply kernels. Every weight is decoded with the very expression
// QuantizedLayer::dequantize() uses — scale·(code − zero) on the first-level grid (SpQR's grid
// itself decoded from its second-level codes), or the row's LUT entry — so decoded weights are
// bit-identical to dequantize(); outliers then replace their positions.
//
// The vector kernels walk a pass of up to 8 rows together, one chunk of 16 (AVX-512) or 8 (AVX2)
// columns at a time: each chunk of x is loaded once for all rows of the pass, and each row's codes
// become weights through a table in a register (≤ 4-bit codes: the row's LUT, or the 2^bits values
// of its group's grid) or lane-wise arithmetic (wider codes). Codes are unpacked with shifts
// only: the shuffle ports, which the table lookup needs once per chunk, are what limits a pass.
// Outliers add (value − decoded)·x with the differences computed at load, in the KernelLayout
// (docs/FORMAT.md, "Fused kernels").

namespace quantlens {

// A fixed-point LUT entry (KernelLayout::fixedLuts) is t = kFixedLutHighWeight·high + low, low in
// [0, 64); its magnitude is at most 127·64, so that the high part stays within ±127, which vpsignb
// can negate (−128 it cannot).
constexpr int kFixedLutHighWeight = 64;
constexpr int kFixedLutPeak = 127 * kFixedLutHighWeight;

struct KernelLayout {
    // Each CSR outlier's value minus the weight decoded under it: the fused products add
    // (value − decoded)·x at the outlier's column.
    std::vector<float> outlierDeltas; // [nnz]
    // SpQR: the second-level codes of every block of 8 rows, one record per group — the block's
    // 8 scale codes, then its 8 zero codes (2·qq bytes) — in place of the stored arrays' one row
    // per group, which every block would read across. Blocks are rows of the bit-packer,
    // `statBlockBytes` apart, followed by 8 bytes of zeros so that any record loads as 64 bits.
    std::vector<std::uint32_t> statCodes;
    std::size_t statBlockBytes = 0;
    // SpQR: the second-level grids — scale grid (scale, zero), zero grid (scale, zero) — per row
    // group and group, fp16 as stored: [rowGroups, groups, 4].
    std::vector<std::uint16_t> stats;
    // SpQR: the row group of each 8-row block, or −1 where a block spans two.
    std::vector<std::int32_t> blockRowGroup;
    // 3- and 4-bit LUTs (the int8 kernels): row r's entries as integers t_k = round(LUT_k /
    // lutUnit[r]), |t_k| ≤ kFixedLutPeak, split t = 64·high + low (low in [0, 64)) so that both
    // parts meet int8 activations in vpmaddubsw without saturating: [rows, 32], the 16 lows, then
    // the 16 highs.
    std::vector<std::int8_t> fixedLuts;
    std::vector<float> lutUnit; // [rows]

    std::size_t bytes() const {
        return outlierDeltas.size() * sizeof(float) + statCodes.size() * 4 + stats.size() * 2 +
               blockRowGroup.size() * 4 + fixedLuts.size() + lutUnit.size() * sizeof(float);
    }
};

namespace kernels {

// Rows of one SpQR record; vector passes never span two records.
constexpr int kBlockRows = 8;
// Row tasks start on multiples of 16 rows: one 64-byte line of y belongs to one task.
constexpr int kTaskRows = 16;
// Row tasks per thread: enough to even out threads that other work slows down.
constexpr int kTasksPerThread = 4;
constexpr int kTileRows = 32; // rows per decoded tile on the batched path
constexpr int kMaxLanes = 16; // x is padded to whole chunks of the widest kernel

inline std::uint64_t load64(const std::byte* p) {
    std::uint64_t v;
    std::memcpy(&v, p, 8); // a fixed-size copy: one load
    return v;
}

// The 64 bits from byte `at` of the array [begin, end) on, LSB first; bytes outside the array (`at`
// may be negative) read as zero, so no load leaves it.
inline std::uint64_t windowAt(const std::byte* begin, std::ptrdiff_t at, const std::byte* end) {
    const std::ptrdiff_t size = end - begin;
    if (at >= 0 && size - at >= 8) return load64(begin + at);
    std::uint64_t v = 0;
    // Byte by byte: a library call would spill a kernel's registers.
    for (int k = 0; k < 8; ++k)
        if (at + k >= 0 && at + k < size)
            v |= static_cast<std::uint64_t>(std::to_integer<std::uint8_t>(begin[at + k]))
                 << (8 * k);
    return v;
}

// Code j of a packed row of `bits`-bit codes; `end` is the end of the whole array.
inline int codeAt(const std::byte* row, std::size_t j, int bits, const std::byte* end) {
    const std::size_t bit = j * static_cast<std::size_t>(bits);
    return static_cast<int>(
        (windowAt(row, static_cast<std::ptrdiff_t>(bit / 8), end) >> (bit % 8)) &
        ((1u << bits) - 1u));
}

#ifdef QUANTLENS_KERNELS_AVX2
// The sum of v's 8 lanes.
inline float horizontalSum(__m256 v) {
    __m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    s = _mm_add_ps(s, _mm_movehl_ps(s, s));
    s = _mm_add_ss(s, _mm_movehdup_ps(s));
    return _mm_cvtss_f32(s);
}
#endif

#ifdef QUANTLENS_KERNELS_AVX512_VNNI
// The sum of v's 16 lanes (the int8 kernels: AVX512DQ). Masked extracts: GCC 12's plain ones and
// casts read an undefined register.
inline float horizontalSum(__m512 v) {
    return horizontalSum(_mm256_add_ps(_mm512_maskz_extractf32x8_ps(0xFF, v, 0),
                                       _mm512_maskz_extractf32x8_ps(0xFF, v, 1)));
}
#endif

// fp16 → fp32, exact either way: F16C where the build has it, else the engine's converter.
inline float halfToFloat(std::uint16_t bits) {
#ifdef QUANTLENS_KERNELS_AVX2
    return _cvtsh_ss(bits);
#else
    return f16ToFloat(bits);
#endif
}

inline float storedHalf(const std::byte* data, std::size_t index) {
    return halfToFloat(loadStored<std::uint16_t>(data, index));
}

inline const std::byte* codesEnd(const CompressedMatrix& m) {
    return m.codes + static_cast<std::size_t>(m.rows) * m.codeRowBytes;
}

inline const std::byte* rowCodes(const CompressedMatrix& m, int row) {
    return m.codes + static_cast<std::size_t>(row) * m.codeRowBytes;
}

// Software prefetch of the codes the next pass reads — rows [next, next + count) — spread over the
// `steps` steps of this pass, at most a line apart, so that those rows arrive while this pass
// computes. Past the last row it prefetches nothing.
class CodesAhead {
public:
    CodesAhead() = default; // prefetches nothing
    CodesAhead(const CompressedMatrix& m, int next, int count, int steps) {
        if (next >= m.rows || steps <= 0) return;
        const std::size_t bytes =
            static_cast<std::size_t>(std::min(count, m.rows - next)) * m.codeRowBytes;
        begin_ = reinterpret_cast<std::uintptr_t>(rowCodes(m, next));
        stride_ = (bytes + static_cast<std::size_t>(steps) - 1) / static_cast<std::size_t>(steps);
        lines_ = static_cast<int>((stride_ + kLine - 1) / kLine);
    }
    void operator()(int step) const {
        // Addresses as integers: the last step's may pass the array's end, which prefetching
        // tolerates and pointer arithmetic does not.
        const std::uintptr_t at = begin_ + static_cast<std::uintptr_t>(step) * stride_;
        for (int i = 0; i < lines_; ++i)
            __builtin_prefetch(reinterpret_cast<const void*>(at + i * kLine));
    }

private:
    static constexpr std::size_t kLine = 64;
    std::uintptr_t begin_ = 0;
    std::size_t stride_ = 0;
    int lines_ = 0;
};

// The first-level grid of (row, group g), decoded from the stored arrays exactly as
// QuantizedLayer::dequantize() does.
inline MinMaxGrid firstLevelGrid(const CompressedMatrix& m, int row, int g) {
    const int maxCode = (1 << m.wbits) - 1;
    if (m.grid == CompressedMatrix::Grid::Affine) {
        const std::size_t at = static_cast<std::size_t>(row) * m.groups + g;
        return {storedHalf(m.scales, at), storedHalf(m.zeros, at), maxCode};
    }
    // SpQR (§3.3): the scale and zero are qq-bit codes on a min-max grid shared by β2 rows.
    const auto secondLevel = [&](const std::byte* codes, const std::byte* stats) {
        const std::size_t at =
            (static_cast<std::size_t>(g) * m.rowGroups + row / m.statsGroupsize) * 2;
        const MinMaxGrid grid{storedHalf(stats, at), storedHalf(stats, at + 1),
                              (1 << m.qqBits) - 1};
        const std::byte* end = codes + m.groups * m.statCodeRowBytes;
        return grid.dequantize(
            codeAt(codes + g * m.statCodeRowBytes, static_cast<std::size_t>(row), m.qqBits, end));
    };
    return {std::max(secondLevel(m.scaleCodes, m.scaleStats), kMinimumSpqrScale),
            secondLevel(m.zeroCodes, m.zeroStats), maxCode};
}

// Weights j0…j1−1 of a row before outliers (dequantize()'s values); [j0, j1) lies in one group.
inline void decodeRun(const CompressedMatrix& m, int row, int j0, int j1, float* out) {
    const std::byte* codes = rowCodes(m, row);
    const std::byte* end = codesEnd(m);
    if (m.grid == CompressedMatrix::Grid::Lut) {
        const std::size_t table = static_cast<std::size_t>(row) << m.wbits;
        for (int j = j0; j < j1; ++j)
            out[j - j0] = storedHalf(m.lut, table + codeAt(codes, std::size_t(j), m.wbits, end));
        return;
    }
    const MinMaxGrid grid = firstLevelGrid(m, row, j0 / m.groupsize);
    for (int j = j0; j < j1; ++j)
        out[j - j0] = grid.dequantize(codeAt(codes, std::size_t(j), m.wbits, end));
}

template <class Visit> void forEachOutlier(const CompressedMatrix& m, int row, Visit&& visit) {
    if (m.outliers.count == 0) return;
    const std::int64_t end = m.outliers.rowBegin(row + 1);
    for (std::int64_t k = m.outliers.rowBegin(row); k < end; ++k)
        visit(k, m.outliers.column(k));
}

// Calls body(first, last) for contiguous row ranges covering [0, rows) on the engine's threads.
template <class Body> void forEachRowTask(int rows, Body&& body) {
    const int units = (rows + kTaskRows - 1) / kTaskRows;
    const int tasks = std::min(units, std::max(1, threadCount() * kTasksPerThread));
    parallelFor(tasks, [&](std::int64_t task) {
        const int first = static_cast<int>(units * task / tasks) * kTaskRows;
        const int last = std::min(rows, static_cast<int>(units * (task + 1) / tasks) * kTaskRows);
        body(first, last);
    });
}

// The rows of one pass, ascending: row i of the pass, and whether it is one the caller keeps
// (rows past the end repeat the last row; callers drop them).
template <int R> struct PassRows {
    int rows[R];
    bool kept[R];
};

// Rows first…first+R−1 of the rows before `last`.
template <int R> PassRows<R> contiguousRows(int first, int last) {
    PassRows<R> pass;
    for (int i = 0; i < R; ++i) {
        pass.kept[i] = first + i < last;
        pass.rows[i] = std::min(first + i, last - 1);
    }
    return pass;
}

// Pass p of rows [first, last) cut into R contiguous stripes walked side by side
// (stripeLength(first, last, R) passes): the pass takes row p of each stripe. Each row of a pass
// then reads its own ascending stream of pages, which the hardware prefetchers follow; the
// consecutive rows of contiguousRows share pages, and lose those streams (bench gemv from
// memory, Xeon, 2 threads: GPTQ w4 int8 at 4096×4096 from 0.43 to 0.36 ms). Each row then
// prefetches its successor (CodesAhead).
inline int stripeLength(int first, int last, int stripes) {
    return (last - first + stripes - 1) / stripes;
}
template <int R> PassRows<R> stripedRows(int first, int last, int p) {
    const int length = stripeLength(first, last, R);
    PassRows<R> pass;
    for (int i = 0; i < R; ++i) {
        const int row = first + i * length + p;
        pass.kept[i] = row < last;
        pass.rows[i] = std::min(row, last - 1);
    }
    return pass;
}

// Prefetches, step by step over a striped pass of `steps` steps, each row's successor: every row
// each step, or (`inTurn`, for steps of a few bytes a row: the exact kernels' chunks) one row a
// step in turn, a line apart where R steps of a row span at most a line. (A contiguous pass
// prefetches the next R rows with one CodesAhead, in ascending order, which the hardware
// prefetchers then follow too.)
template <int R, bool inTurn> class StripedAhead {
public:
    StripedAhead(const CompressedMatrix& m, const PassRows<R>& pass, int steps) {
        for (int i = 0; i < R; ++i)
            rows_[i] = CodesAhead(m, pass.rows[i] + 1, 1, steps);
    }
    void operator()(int step) const {
        if constexpr (inTurn) {
            rows_[step % R](step);
        } else {
#pragma GCC unroll 8
            for (int i = 0; i < R; ++i)
                rows_[i](step);
        }
    }

private:
    CodesAhead rows_[R];
};

// Calls pass(PassRows<R>) over the striped passes of each row task of `rows`.
template <int R, class Pass> void forEachStripedPass(int rows, Pass&& pass) {
    forEachRowTask(rows, [&](int first, int last) {
        for (int p = 0; p < stripeLength(first, last, R); ++p)
            pass(stripedRows<R>(first, last, p));
    });
}

// Row width of the kernels' x: whole chunks of the widest kernel.
inline int paddedWidth(int cols) {
    return (cols + kMaxLanes - 1) / kMaxLanes * kMaxLanes;
}

// Rows [first, first + count) of W decoded (out is [count, cols]) or y = x·Wᵀ for up to
// kFusedBatch tokens (x[t], padded to paddedWidth(cols) and in the lane order of the kernel) by
// one instruction set's kernels; false where that set has none for m, so the next one must.
bool avx512Applies(const CompressedMatrix& m); // whether the AVX-512 kernels serve m
bool decodeRowsAvx512(const CompressedMatrix& m, int first, int count, float* out);
bool productAvx512(const CompressedMatrix& m, const float* const* x, int tokens, float* y,
                   std::ptrdiff_t yStride, bool accumulate);
bool decodeRowsAvx2(const CompressedMatrix& m, int first, int count, float* out);
bool productAvx2(const CompressedMatrix& m, const float* const* x, int tokens, float* y,
                 std::ptrdiff_t yStride, bool accumulate);
// y = x·Wᵀ for one token with x quantized to int8 in blocks of 32 (int8_activations.h), x in the
// kernels' column order, padded; false where the kernel does not apply to m (its *Applies) or the
// build lacks AVX2. int8_avx2.cpp: 4-bit min-max grids (RTN, GPTQ); int8_lut_avx2.cpp: 4-bit
// LUTs (SqueezeLLM) through the kernel layout's fixed-point tables; int8_w3_avx2.cpp: 3-bit codes
// on either (SpQR, SqueezeLLM, RTN, GPTQ).
bool int8GridApplies(const CompressedMatrix& m);
bool productInt8Grid(const CompressedMatrix& m, const float* x, float* y, bool accumulate);
bool int8LutApplies(const CompressedMatrix& m);
bool productInt8Lut(const CompressedMatrix& m, const float* x, float* y, bool accumulate);
bool int8ThreeBitApplies(const CompressedMatrix& m);
bool productInt8ThreeBit(const CompressedMatrix& m, const float* x, float* y, bool accumulate);
// int8_w3_avx512.cpp: 3-bit min-max grids on AVX-512 VBMI and VNNI, widths a multiple of 64.
bool int8ThreeBitAvx512Applies(const CompressedMatrix& m);
bool productInt8ThreeBitAvx512(const CompressedMatrix& m, const float* x, float* y,
                               bool accumulate);
// int8_w4_avx512.cpp: 4-bit min-max grids (RTN, GPTQ) on AVX-512 VNNI, groups of a multiple of
// 128 columns.
bool int8FourBitAvx512Applies(const CompressedMatrix& m);
bool productInt8FourBitAvx512(const CompressedMatrix& m, const float* x, float* y, bool accumulate);
// int8_lut_avx512.cpp: 4-bit LUTs (SqueezeLLM) on AVX-512 VNNI, widths a multiple of 128.
bool int8LutAvx512Applies(const CompressedMatrix& m);
bool productInt8LutAvx512(const CompressedMatrix& m, const float* x, float* y, bool accumulate);
// The portable scalar code, which serves every matrix.
void decodeRowPortable(const CompressedMatrix& m, int row, float* out);
void productRowsPortable(const CompressedMatrix& m, const float* const* x, int tokens, int first,
                         int last, float* y, std::ptrdiff_t yStride, bool accumulate);

} // namespace kernels
} // namespace quantlens
