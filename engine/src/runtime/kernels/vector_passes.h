#pragma once

// The vector kernels' passes, written once for any lookup (a way of turning a chunk of codes into
// weights: avx2.cpp's 8-lane ones, avx512.cpp's 16-lane one). Needs AVX2: SpQR's second-level
// codes are unpacked 8 at a time in every set.

#include "runtime/kernels/kernel_common.h"

#ifdef QUANTLENS_KERNELS_AVX2

namespace quantlens::kernels {

// Where a pass gets its rows' decoding: a grid per (row, group) stored in fp16 (RTN, GPTQ) or
// decoded from SpQR's second level, or one LUT per row (SqueezeLLM).
enum class Source { Affine, Spqr, Lut };

// Codes of 8 consecutive columns, one per 32-bit lane, from the 64 bits starting at the first.
struct Unpack8 {
    explicit Unpack8(int bits)
        : shifts8(_mm256_setr_epi32(0, bits, 2 * bits, 3 * bits, 4 * bits, 5 * bits, 6 * bits,
                                    7 * bits)),
          shifts4(_mm256_setr_epi32(0, bits, 2 * bits, 3 * bits, 0, bits, 2 * bits, 3 * bits)),
          mask(_mm256_set1_epi32((1 << bits) - 1)), bits(bits) {}
    // ≤ 4-bit codes all sit in the low word: one broadcast and per-lane shifts; the bits above
    // each code are left in place.
    __m256i narrow(std::uint64_t v) const {
        return _mm256_srlv_epi32(_mm256_set1_epi32(static_cast<int>(v)), shifts8);
    }
    // Exact codes of up to 8 bits: wider ones take two 4-code halves of the 64 bits.
    __m256i masked(std::uint64_t v) const {
        if (bits <= 4) return _mm256_and_si256(narrow(v), mask);
        const __m256i both = _mm256_set_m128i(_mm_set1_epi32(static_cast<int>(v >> (4 * bits))),
                                              _mm_set1_epi32(static_cast<int>(v)));
        return _mm256_and_si256(_mm256_srlv_epi32(both, shifts4), mask);
    }
    __m256i shifts8, shifts4, mask;
    int bits;
};

// 0, 1, …, 2^bits − 1, repeated up to `lanes` entries: the code each table lane stands for.
template <class Vec> Vec tableCodes(int bits, Vec (*load)(const float*)) {
    alignas(64) float codes[kMaxLanes];
    for (int k = 0; k < kMaxLanes; ++k)
        codes[k] = static_cast<float>(k & ((1 << bits) - 1));
    return load(codes);
}

// What decoding the first-level grids of a pass needs (passGrids): the matrix, its kernel layout
// and the unpacking of SpQR's second-level codes.
struct GridSource {
    explicit GridSource(const CompressedMatrix& matrix)
        : m(matrix), layout(*matrix.kernel), unpackStats(matrix.qqBits) {}
    const CompressedMatrix& m;
    const KernelLayout& layout;
    Unpack8 unpackStats;
};

// What every pass of one product or decode shares: the grids' source, the lookup and the chunking
// of a row.
template <class Lookup> struct Plan : GridSource {
    static constexpr int kLanes = Lookup::kLanes;
    Plan(const CompressedMatrix& matrix, Lookup lookupOf)
        : GridSource(matrix), lookup(lookupOf), chunks((matrix.cols + kLanes - 1) / kLanes),
          chunksPerGroup(matrix.groups == 1 ? chunks : matrix.groupsize / kLanes),
          chunkBytes(static_cast<std::size_t>(kLanes) * matrix.wbits / 8),
          windowOffset(Lookup::windowOffset(matrix.wbits)), begin(matrix.codes),
          end(codesEnd(matrix)) {}
    Lookup lookup;
    int chunks, chunksPerGroup;
    std::size_t chunkBytes; // chunks start on a byte
    int windowOffset;       // a chunk's 64 bits start this many bytes before it
    const std::byte* begin; // the codes array
    const std::byte* end;
};

// The first-level grids of the 8 rows of SpQR block `block` in every group, row by row from the
// stored arrays, for the blocks that span two row groups: per group, 8 scales then 8 zeros.
inline void spqrGridsStored(const CompressedMatrix& m, int block, float* grids) {
    for (int g = 0; g < m.groups; ++g)
        for (int i = 0; i < kBlockRows; ++i) {
            const MinMaxGrid grid =
                firstLevelGrid(m, std::min(block * kBlockRows + i, m.rows - 1), g);
            grids[(static_cast<std::size_t>(g) * 2) * kBlockRows + i] = grid.scale;
            grids[(static_cast<std::size_t>(g) * 2 + 1) * kBlockRows + i] = grid.zero;
        }
}

// Row group `rowGroup`'s second-level statistics (KernelLayout::stats) in fp32, converted 8 at a
// time into this thread's scratch, so that spqrGrids broadcasts each straight from memory.
inline const float* statsInFloat(const KernelLayout& layout, int rowGroup, int groups) {
    thread_local std::vector<float> converted;
    const int count = groups * 4;
    converted.resize(static_cast<std::size_t>(count));
    const std::uint16_t* stats = layout.stats.data() + static_cast<std::size_t>(rowGroup) * count;
    int i = 0;
    for (; i + 8 <= count; i += 8)
        _mm256_storeu_ps(converted.data() + i, _mm256_cvtph_ps(_mm_loadu_si128(
                                                   reinterpret_cast<const __m128i*>(stats + i))));
    if (i < count) // one group's 4 left
        _mm_storeu_ps(converted.data() + i,
                      _mm_cvtph_ps(_mm_loadl_epi64(reinterpret_cast<const __m128i*>(stats + i))));
    return converted.data();
}

// The first-level grids of the 8 rows of SpQR block `block`, which lies in row group `rowGroup`,
// group by group, eight lanes at once from the block's records: exactly dequantize()'s values,
// as grid(g, scales, zeros).
template <class Grid>
inline void forEachSpqrGrid(const GridSource& plan, int block, int rowGroup, Grid&& grid) {
    // Locals, not members: the callers' stores could alias those.
    const int groups = plan.m.groups, qq = plan.m.qqBits;
    const Unpack8 unpack = plan.unpackStats;
    const std::byte* record = reinterpret_cast<const std::byte*>(plan.layout.statCodes.data()) +
                              block * plan.layout.statBlockBytes;
    const float* stats = statsInFloat(plan.layout, rowGroup, groups);
    const __m256 minimum = _mm256_set1_ps(kMinimumSpqrScale);
    for (int g = 0; g < groups; ++g, record += 2 * qq, stats += 4) {
        const __m256 scaleCodes = _mm256_cvtepi32_ps(unpack.masked(load64(record)));
        const __m256 zeroCodes = _mm256_cvtepi32_ps(unpack.masked(load64(record + qq)));
        const auto stat = [&](int k) { return _mm256_broadcast_ss(stats + k); };
        const __m256 scale = _mm256_mul_ps(stat(0), _mm256_sub_ps(scaleCodes, stat(1)));
        grid(g, _mm256_max_ps(scale, minimum),
             _mm256_mul_ps(stat(2), _mm256_sub_ps(zeroCodes, stat(3))));
    }
}

// The same into grids [groups][scales, zeros][8].
inline void spqrGrids(const GridSource& plan, int block, int rowGroup, float* grids) {
    forEachSpqrGrid(plan, block, rowGroup, [grids](int g, __m256 scales, __m256 zeros) {
        _mm256_storeu_ps(grids + static_cast<std::size_t>(g) * 2 * kBlockRows, scales);
        _mm256_storeu_ps(grids + (static_cast<std::size_t>(g) * 2 + 1) * kBlockRows, zeros);
    });
}

// A row's LUT as fp32, its entries repeated up to `count` (at most up to the larger of 16 and
// the number of levels: no lookup reads further).
inline void fillTable(const CompressedMatrix& m, int row, float* table, int count) {
    const int levels = 1 << m.wbits;
    const std::size_t first = static_cast<std::size_t>(row) << m.wbits;
    count = std::min(count, std::max(levels, kMaxLanes));
    for (int k = 0; k < count; ++k)
        table[k] = storedHalf(m.lut, first + (k & (levels - 1)));
}

// The first-level grids of `count` rows in every group, into grids [groups][scales, zeros][8]
// (SpQR: the 8 lanes of the block of rows[0], in which the rows lie; else the first `count`
// lanes), all before the pass's loop: its broadcasts then read memory written long before.
template <Source source>
void passGrids(const GridSource& plan, const int* rows, int count, float* grids) {
    const CompressedMatrix& m = plan.m;
    if constexpr (source == Source::Affine) {
        for (int i = 0; i < count; ++i) {
            const std::size_t at = static_cast<std::size_t>(rows[i]) * m.groups;
            for (int g = 0; g < m.groups; ++g) {
                grids[g * 2 * kBlockRows + i] = storedHalf(m.scales, at + g);
                grids[(g * 2 + 1) * kBlockRows + i] = storedHalf(m.zeros, at + g);
            }
        }
    } else {
        const int block = rows[0] / kBlockRows;
        const int rowGroup = plan.layout.blockRowGroup[static_cast<std::size_t>(block)];
        if (rowGroup < 0) return spqrGridsStored(m, block, grids);
        spqrGrids(plan, block, rowGroup, grids);
    }
}

// Chunks [c0, c1) of the pass's rows into sink.add(i, c, weights); windows[i] is the byte of the
// codes array where row i's first chunk's window starts (negative before the array). `bounded`
// loads read nothing outside the array.
template <bool bounded, int R, class Lookup, class Ahead, class Sink>
inline void runChunks(const Plan<Lookup>& plan, const std::ptrdiff_t* windows,
                      const typename Lookup::State* state, int c0, int c1, const Ahead& ahead,
                      Sink& sink) {
    for (int c = c0; c < c1; ++c) {
        sink.begin(c);
        ahead(c);
        const auto offset = static_cast<std::ptrdiff_t>(c) * plan.chunkBytes;
#pragma GCC unroll 8
        for (int i = 0; i < R; ++i) {
            const std::ptrdiff_t at = windows[i] + offset;
            const std::uint64_t v =
                bounded ? windowAt(plan.begin, at, plan.end) : load64(plan.begin + at);
            sink.add(i, c, Lookup::decode(state[i], plan.lookup.unpacked(v)));
        }
    }
}

// Chunks [c0, c1), with direct loads for chunks [safeFirst, safeEnd) and bounded ones around.
template <int R, class Lookup, class Ahead, class Sink>
inline void runChunkRange(const Plan<Lookup>& plan, const std::ptrdiff_t* windows,
                          const typename Lookup::State* state, int c0, int c1, int safeFirst,
                          int safeEnd, const Ahead& ahead, Sink& sink) {
    const int a = std::clamp(safeFirst, c0, c1), b = std::clamp(safeEnd, a, c1);
    runChunks<true, R>(plan, windows, state, c0, a, ahead, sink);
    runChunks<false, R>(plan, windows, state, a, b, ahead, sink);
    runChunks<true, R>(plan, windows, state, b, c1, ahead, sink);
}

// The pass's rows decoded chunk by chunk into `sink`, without outliers (SpQR: R dividing 8, the
// rows contiguous from a multiple of R, not `striped`), prefetching the next pass's. `grids`
// holds groups·16 floats.
template <Source source, bool striped, int R, class Lookup, class Sink>
void runPass(const Plan<Lookup>& plan, const PassRows<R>& pass, Sink& sink, float* grids) {
    const CompressedMatrix& m = plan.m;
    const int* rows = pass.rows;
    std::ptrdiff_t windows[R]; // where each row's first window starts in the codes array
    for (int i = 0; i < R; ++i)
        windows[i] = (rowCodes(m, rows[i]) - plan.begin) - plan.windowOffset;
    // Chunks whose 8-byte windows lie inside the codes array for every row: the first row's
    // start no earlier than the array, the last row's end no later.
    const auto step = static_cast<std::ptrdiff_t>(plan.chunkBytes);
    const std::ptrdiff_t before = -windows[0], room = (plan.end - plan.begin) - windows[R - 1] - 8;
    const int safeFirst = before <= 0 ? 0 : static_cast<int>((before + step - 1) / step);
    const int safeEnd =
        room < 0 ? 0 : static_cast<int>(std::min<std::ptrdiff_t>(plan.chunks, room / step + 1));
    typename Lookup::State state[R];
    const auto ahead = [&] {
        if constexpr (striped)
            return StripedAhead<R, true>(m, pass, plan.chunks);
        else
            return CodesAhead(m, rows[0] + R, R, plan.chunks);
    }();
    if constexpr (source == Source::Lut) {
        alignas(64) float tables[R][Lookup::kTableEntries];
#pragma GCC unroll 8
        for (int i = 0; i < R; ++i) {
            fillTable(m, rows[i], tables[i], Lookup::kTableEntries);
            state[i] = plan.lookup.table(tables[i]);
        }
        // Gather8 keeps pointers into `tables`: the chunks run while they live.
        runChunkRange<R>(plan, windows, state, 0, plan.chunks, safeFirst, safeEnd, ahead, sink);
    } else {
        passGrids<source>(plan, rows, R, grids);
        const int lane = source == Source::Spqr ? rows[0] % kBlockRows : 0;
        // All but the matrix's first and last passes load directly throughout.
        const bool inside = safeFirst == 0 && safeEnd == plan.chunks;
        for (int g = 0; g < m.groups; ++g) {
            const float* scales = grids + static_cast<std::size_t>(g) * 2 * kBlockRows + lane;
#pragma GCC unroll 8
            for (int i = 0; i < R; ++i)
                state[i] = plan.lookup.grid(scales[i], scales[kBlockRows + i]);
            const int c0 = g * plan.chunksPerGroup;
            const int c1 = std::min(plan.chunks, c0 + plan.chunksPerGroup);
            if (inside)
                runChunks<false, R>(plan, windows, state, c0, c1, ahead, sink);
            else
                runChunkRange<R>(plan, windows, state, c0, c1, safeFirst, safeEnd, ahead, sink);
        }
    }
}

// Decoded chunks multiplied with T tokens of x: acc[i][t] holds row i's lane-wise sums.
template <class Lanes, int R, int T> struct ProductSink {
    using Vec = typename Lanes::Vec;
    explicit ProductSink(const float* const* inputs) : x(inputs) {
#pragma GCC unroll 8
        for (int i = 0; i < R; ++i)
#pragma GCC unroll 8
            for (int t = 0; t < T; ++t)
                acc[i][t] = Lanes::zero();
    }
    void begin(int c) {
#pragma GCC unroll 8
        for (int t = 0; t < T; ++t)
            xv[t] = Lanes::load(x[t] + c * Lanes::kLanes);
    }
    void add(int i, int, Vec w) {
#pragma GCC unroll 8
        for (int t = 0; t < T; ++t)
            acc[i][t] = Lanes::fma(w, xv[t], acc[i][t]);
    }
    const float* const* x;
    Vec xv[T];
    Vec acc[R][T];
};

// Decoded chunks stored to out[i] in column order (rows with a null pointer are dropped).
template <class Lookup, int R> struct DecodeSink {
    void begin(int) {}
    void add(int i, int c, typename Lookup::Vec w) {
        const int j = c * Lookup::kLanes;
        if (out[i]) Lookup::store(out[i] + j, lookup.natural(w), cols - j);
    }
    const Lookup& lookup;
    float* out[R];
    int cols;
};

// This thread's buffer for a pass's grids (runPass).
inline std::vector<float>& gridScratch(const CompressedMatrix& m) {
    thread_local std::vector<float> grids;
    grids.resize(static_cast<std::size_t>(m.groups) * 2 * kBlockRows);
    return grids;
}

// Rows per pass for T tokens: up to 16 accumulators (R·T), so that each chunk of x, loaded once
// per pass, serves as many rows as the registers allow.
constexpr int rowsPerPass(int tokens) {
    return std::min(kBlockRows, 16 / tokens);
}

// Σ (value − decoded)·x[t][column] over row `row`'s outliers for T tokens, in four independent
// partial sums per token (one would make the CSR walk a serial chain of additions).
template <int T>
inline void outlierSums(const CompressedMatrix& m, const float* deltas, int row,
                        const float* const* x, float* sums) {
    float part[4][T] = {};
    std::int64_t k = m.outliers.rowBegin(row);
    const std::int64_t end = m.outliers.rowBegin(row + 1);
    for (; k + 4 <= end; k += 4)
#pragma GCC unroll 4
        for (int q = 0; q < 4; ++q) {
            const int j = m.outliers.column(k + q);
#pragma GCC unroll 8
            for (int t = 0; t < T; ++t)
                part[q][t] += deltas[k + q] * x[t][j];
        }
    for (; k < end; ++k) {
        const int j = m.outliers.column(k);
#pragma GCC unroll 8
        for (int t = 0; t < T; ++t)
            part[0][t] += deltas[k] * x[t][j];
    }
#pragma GCC unroll 8
    for (int t = 0; t < T; ++t)
        sums[t] = (part[0][t] + part[1][t]) + (part[2][t] + part[3][t]);
}

// Rows [first, last) (first a multiple of 8) of y = x·Wᵀ for T tokens, of which the first
// `tokens` are real (the rest point at zeros). `x` is in the lookup's lane order, `columns` the
// same rows in column order.
template <Source source, int T, class Lookup>
void productRows(const Plan<Lookup>& plan, const float* const* x, const float* const* columns,
                 int tokens, int first, int last, float* y, std::ptrdiff_t yStride,
                 bool accumulate) {
    constexpr int R = rowsPerPass(T);
    const CompressedMatrix& m = plan.m;
    const float* deltas = plan.layout.outlierDeltas.data();
    std::vector<float>& grids = gridScratch(m);
    // SpQR's passes share their block's grids: its rows stay contiguous. So do the 8-lane (AVX2)
    // passes, which measured about 5% faster so (bench gemv --isa avx2, Xeon), where striping made
    // the 16-lane ones 10–20% faster.
    constexpr bool striped = source != Source::Spqr && Lookup::kLanes == kMaxLanes;
    const int passes = striped ? stripeLength(first, last, R) : (last - first + R - 1) / R;
    for (int p = 0; p < passes; ++p) {
        const PassRows<R> pass =
            striped ? stripedRows<R>(first, last, p) : contiguousRows<R>(first + p * R, last);
        ProductSink<Lookup, R, T> sink(x);
        runPass<source, striped>(plan, pass, sink, grids.data());
        for (int i = 0; i < R; ++i) {
            if (!pass.kept[i]) continue;
            const int row = pass.rows[i];
            float rest[T] = {};
            if (m.outliers.count > 0) outlierSums<T>(m, deltas, row, columns, rest);
            for (int t = 0; t < tokens; ++t) {
                const float sum = Lookup::sum(sink.acc[i][t]) + rest[t];
                float& target = y[t * yStride + row];
                target = accumulate ? target + sum : sum;
            }
        }
    }
}

// Rows [first, first + count) decoded with outliers in place into out [count, cols].
template <Source source, class Lookup>
void decodeRows(const Plan<Lookup>& plan, int first, int count, float* out) {
    const CompressedMatrix& m = plan.m;
    std::vector<float>& grids = gridScratch(m);
    for (int p = first - first % kBlockRows; p < first + count; p += kBlockRows) {
        DecodeSink<Lookup, kBlockRows> sink{plan.lookup, {}, m.cols};
        for (int i = 0; i < kBlockRows; ++i) {
            const int r = p + i;
            sink.out[i] = r >= first && r < first + count
                              ? out + static_cast<std::size_t>(r - first) * m.cols
                              : nullptr;
        }
        runPass<source, false>(plan, contiguousRows<kBlockRows>(p, m.rows), sink, grids.data());
        for (int i = 0; i < kBlockRows; ++i)
            if (sink.out[i])
                forEachOutlier(
                    m, p + i, [&](std::int64_t k, int j) { sink.out[i][j] = m.outliers.value(k); });
    }
}

// Calls body.template operator()<source>(plan) with the matrix's source, where `Lookup` decodes it.
template <class Lookup, class Body> void withSource(const Plan<Lookup>& plan, Body&& body) {
    switch (plan.m.grid) {
    case CompressedMatrix::Grid::Lut:
        if constexpr (Lookup::kTables) body.template operator()<Source::Lut>(plan);
        return;
    case CompressedMatrix::Grid::Affine:
        if constexpr (Lookup::kGrids) body.template operator()<Source::Affine>(plan);
        return;
    case CompressedMatrix::Grid::Spqr:
        if constexpr (Lookup::kGrids) body.template operator()<Source::Spqr>(plan);
        return;
    }
}

// Calls body.template operator()<T>() with the token count the kernels run: 1, 2, 4 or 8.
template <class Body> void withTokens(int tokens, Body&& body) {
    if (tokens == 1) return body.template operator()<1>();
    if (tokens == 2) return body.template operator()<2>();
    if (tokens <= 4) return body.template operator()<4>();
    return body.template operator()<8>();
}

// The first `tokens` rows of x (padded to whole chunks) in the order of a chunk's lanes, into
// `buffer`; lanes[t] points at row t (the padding tokens keep their rows of zeros).
template <class Lookup>
void laneOrdered(int cols, const float* const* x, int tokens, std::vector<float>& buffer,
                 const float** lanes) {
    const int width = paddedWidth(cols);
    buffer.resize(static_cast<std::size_t>(tokens) * width);
    for (int t = 0; t < tokens; ++t) {
        float* row = buffer.data() + static_cast<std::size_t>(t) * width;
        for (int c = 0; c < width; c += Lookup::kLanes)
            for (int lane = 0; lane < Lookup::kLanes; ++lane)
                row[c + lane] = x[t][c + Lookup::laneColumn(lane)];
        lanes[t] = row;
    }
}

// Rows [first, first + count) of W decoded with `lookup`.
template <class Lookup>
void decodeWith(const CompressedMatrix& m, Lookup lookup, int first, int count, float* out) {
    withSource(Plan(m, lookup), [&]<Source source>(const auto& plan) {
        decodeRows<source>(plan, first, count, out);
    });
}

// y = x·Wᵀ for up to kFusedBatch tokens (rows of x: x[t]) with `lookup`.
template <class Lookup>
void productWith(const CompressedMatrix& m, Lookup lookup, const float* const* x, int tokens,
                 float* y, std::ptrdiff_t yStride, bool accumulate) {
    withSource(Plan(m, lookup), [&]<Source source>(const Plan<Lookup>& plan) {
        const float* lanes[kFusedBatch];
        std::copy(x, x + kFusedBatch, lanes);
        if constexpr (Lookup::kLaneOrdered) {
            thread_local std::vector<float> buffer;
            laneOrdered<Lookup>(m.cols, x, tokens, buffer, lanes);
        }
        withTokens(tokens, [&]<int T>() {
            forEachRowTask(m.rows, [&](int first, int last) {
                productRows<source, T>(plan, lanes, x, tokens, first, last, y, yStride, accumulate);
            });
        });
    });
}

} // namespace quantlens::kernels

#endif
