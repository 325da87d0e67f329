#include "quantlens/compressed_kernels.h"

#include "min_max_grid.h"
#include "quantlens/bit_packing.h"
#include "quantlens/dtype.h"
#include "quantlens/float_tensor.h"
#include "quantlens/parallel.h"

#include <algorithm>
#include <cstring>
#include <memory>
#include <vector>

#if defined(__AVX2__) && defined(__FMA__) && defined(__F16C__)
#include <immintrin.h>
#define QUANTLENS_KERNELS_AVX2 1
// 16-lane kernels where the build targets AVX-512.
#if defined(__AVX512F__)
#define QUANTLENS_KERNELS_AVX512 1
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

    std::size_t bytes() const {
        return outlierDeltas.size() * sizeof(float) + statCodes.size() * 4 + stats.size() * 2 +
               blockRowGroup.size() * 4;
    }
};

namespace {

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

const std::byte* codesEnd(const CompressedMatrix& m) {
    return m.codes + static_cast<std::size_t>(m.rows) * m.codeRowBytes;
}

const std::byte* rowCodes(const CompressedMatrix& m, int row) {
    return m.codes + static_cast<std::size_t>(row) * m.codeRowBytes;
}

// The first-level grid of (row, group g), decoded from the stored arrays exactly as
// QuantizedLayer::dequantize() does.
MinMaxGrid firstLevelGrid(const CompressedMatrix& m, int row, int g) {
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
void decodeRun(const CompressedMatrix& m, int row, int j0, int j1, float* out) {
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

// Row `row` decoded into out[cols] with outliers in place: dequantize()'s values.
void decodeRowPortable(const CompressedMatrix& m, int row, float* out) {
    for (int j0 = 0; j0 < m.cols; j0 += m.groupsize)
        decodeRun(m, row, j0, std::min(m.cols, j0 + m.groupsize), out + j0);
    forEachOutlier(m, row, [&](std::int64_t k, int j) { out[j] = m.outliers.value(k); });
}

// Rows [first, last) of y = x·Wᵀ, decoding one row at a time into memory.
void productRowsPortable(const CompressedMatrix& m, const float* const* x, int tokens, int first,
                         int last, float* y, std::ptrdiff_t yStride, bool accumulate) {
    thread_local std::vector<float> w;
    w.resize(static_cast<std::size_t>(m.cols));
    for (int r = first; r < last; ++r) {
        decodeRowPortable(m, r, w.data());
        for (int t = 0; t < tokens; ++t) {
            float sum = 0.0f;
            for (int j = 0; j < m.cols; ++j)
                sum += w[j] * x[t][j];
            float& target = y[t * yStride + r];
            target = accumulate ? target + sum : sum;
        }
    }
}

// SpQR's record layout (KernelLayout::statCodes) and its fp32 second-level grids.
void buildSpqrLayout(const CompressedMatrix& m, KernelLayout& k) {
    const int blocks = (m.rows + kBlockRows - 1) / kBlockRows;
    const std::size_t recordCodes = 2 * kBlockRows;
    std::vector<std::uint16_t> codes(static_cast<std::size_t>(blocks) * m.groups * recordCodes, 0);
    const std::byte* scaleEnd = m.scaleCodes + m.groups * m.statCodeRowBytes;
    const std::byte* zeroEnd = m.zeroCodes + m.groups * m.statCodeRowBytes;
    for (int b = 0; b < blocks; ++b)
        for (int g = 0; g < m.groups; ++g) {
            std::uint16_t* record =
                codes.data() + (static_cast<std::size_t>(b) * m.groups + g) * recordCodes;
            for (int i = 0; i < kBlockRows && b * kBlockRows + i < m.rows; ++i) {
                const std::size_t row = static_cast<std::size_t>(b) * kBlockRows + i;
                record[i] = static_cast<std::uint16_t>(
                    codeAt(m.scaleCodes + g * m.statCodeRowBytes, row, m.qqBits, scaleEnd));
                record[kBlockRows + i] = static_cast<std::uint16_t>(
                    codeAt(m.zeroCodes + g * m.statCodeRowBytes, row, m.qqBits, zeroEnd));
            }
        }
    const std::size_t blockCodes = static_cast<std::size_t>(m.groups) * recordCodes;
    k.statCodes = packRows(codes, blockCodes, m.qqBits);
    k.statCodes.insert(k.statCodes.end(), 2, 0u);
    k.statBlockBytes = wordsPerRow(blockCodes, m.qqBits) * 4;

    k.stats.resize(static_cast<std::size_t>(m.rowGroups) * m.groups * 4);
    for (int rg = 0; rg < m.rowGroups; ++rg)
        for (int g = 0; g < m.groups; ++g) {
            const std::size_t from = (static_cast<std::size_t>(g) * m.rowGroups + rg) * 2;
            std::uint16_t* to = k.stats.data() + (static_cast<std::size_t>(rg) * m.groups + g) * 4;
            to[0] = loadStored<std::uint16_t>(m.scaleStats, from);
            to[1] = loadStored<std::uint16_t>(m.scaleStats, from + 1);
            to[2] = loadStored<std::uint16_t>(m.zeroStats, from);
            to[3] = loadStored<std::uint16_t>(m.zeroStats, from + 1);
        }
    k.blockRowGroup.resize(static_cast<std::size_t>(blocks));
    for (int b = 0; b < blocks; ++b) {
        const int first = b * kBlockRows / m.statsGroupsize;
        const int last = std::min(b * kBlockRows + kBlockRows - 1, m.rows - 1) / m.statsGroupsize;
        k.blockRowGroup[static_cast<std::size_t>(b)] = first == last ? first : -1;
    }
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

// Row width of the kernels' x: whole chunks of the widest kernel.
int paddedWidth(int cols) {
    return (cols + kMaxLanes - 1) / kMaxLanes * kMaxLanes;
}

template <typename Index>
void gatherColumns(const std::byte* perm, const float* in, int cols, float* out) {
    for (int j = 0; j < cols; ++j)
        out[j] = in[loadStored<Index>(perm, static_cast<std::size_t>(j))];
}

// x in the kernels' column order (act-order layers permute x once instead of W), each row padded
// with zeros to paddedWidth(cols), and one more row of zeros: into `buffer`.
void kernelInputs(const CompressedMatrix& m, const float* x, std::ptrdiff_t xStride, int tokens,
                  std::vector<float>& buffer) {
    const std::size_t width = static_cast<std::size_t>(paddedWidth(m.cols));
    buffer.assign((static_cast<std::size_t>(tokens) + 1) * width, 0.0f);
    for (int t = 0; t < tokens; ++t) {
        const float* in = x + t * xStride;
        float* out = buffer.data() + t * width;
        if (!m.permuted())
            std::copy(in, in + m.cols, out);
        else if (m.perm.bytes == 1)
            gatherColumns<std::uint8_t>(m.perm.data, in, m.cols, out);
        else if (m.perm.bytes == 2)
            gatherColumns<std::uint16_t>(m.perm.data, in, m.cols, out);
        else
            gatherColumns<std::int32_t>(m.perm.data, in, m.cols, out);
    }
}

#ifdef QUANTLENS_KERNELS_AVX2

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

struct Lanes8 {
    static constexpr int kLanes = 8;
    using Vec = __m256;
    // Lane j holds column j of its chunk, read from the 64 bits starting at the chunk.
    static constexpr bool kLaneOrdered = false;
    static int laneColumn(int lane) { return lane; }
    static int windowOffset(int) { return 0; }
    static Vec natural(Vec w) { return w; }
    static Vec zero() { return _mm256_setzero_ps(); }
    static Vec load(const float* p) { return _mm256_loadu_ps(p); }
    static Vec fma(Vec a, Vec b, Vec c) { return _mm256_fmadd_ps(a, b, c); }
    static float sum(Vec v) {
        __m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
        s = _mm_add_ps(s, _mm_movehl_ps(s, s));
        s = _mm_add_ss(s, _mm_movehdup_ps(s));
        return _mm_cvtss_f32(s);
    }
    // The first n lanes of v to p.
    static void store(float* p, Vec v, int n) {
        if (n >= kLanes) return _mm256_storeu_ps(p, v);
        const __m256i lanes = _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7);
        _mm256_maskstore_ps(p, _mm256_cmpgt_epi32(_mm256_set1_epi32(n), lanes), v);
    }
};

// The lookups: how a row's codes become weights, per chunk of lanes. Each gives the state a row
// needs — from its LUT (`table`, where kTables) or from its group's grid (`grid`, where kGrids) —
// and decodes codes with it.

// ≤ 3-bit codes through an 8-entry table in one register: vpermps reads each lane's low 3 bits,
// so tables of narrower codes repeat their entries.
struct Permute8 : Lanes8 {
    static constexpr bool kTables = true, kGrids = true;
    static constexpr int kTableEntries = 8;
    using State = __m256;
    explicit Permute8(int bits) : unpack(bits), codes(tableCodes<__m256>(bits, &load)) {}
    __m256i unpacked(std::uint64_t v) const { return unpack.narrow(v); }
    State table(const float* entries) const { return _mm256_load_ps(entries); }
    State grid(float scale, float zero) const {
        return _mm256_mul_ps(_mm256_set1_ps(scale), _mm256_sub_ps(codes, _mm256_set1_ps(zero)));
    }
    static Vec decode(State s, __m256i c) { return _mm256_permutevar8x32_ps(s, c); }
    Unpack8 unpack;
    __m256 codes;
};

// 4-bit codes through a 16-entry table in two registers: bit 3 of the code picks the half
// (blendv reads each lane's sign bit).
struct Permute8x2 : Lanes8 {
    static constexpr bool kTables = true, kGrids = true;
    static constexpr int kTableEntries = 16;
    struct State {
        __m256 low, high;
    };
    explicit Permute8x2(int bits)
        : unpack(bits), codes(tableCodes<__m256>(bits, &load)),
          highCodes(_mm256_add_ps(codes, _mm256_set1_ps(8.0f))) {}
    __m256i unpacked(std::uint64_t v) const { return unpack.narrow(v); }
    State table(const float* entries) const {
        return {_mm256_load_ps(entries), _mm256_load_ps(entries + 8)};
    }
    State grid(float scale, float zero) const {
        const __m256 s = _mm256_set1_ps(scale), z = _mm256_set1_ps(zero);
        return {_mm256_mul_ps(s, _mm256_sub_ps(codes, z)),
                _mm256_mul_ps(s, _mm256_sub_ps(highCodes, z))};
    }
    static Vec decode(const State& s, __m256i c) {
        return _mm256_blendv_ps(_mm256_permutevar8x32_ps(s.low, c),
                                _mm256_permutevar8x32_ps(s.high, c),
                                _mm256_castsi256_ps(_mm256_slli_epi32(c, 28)));
    }
    Unpack8 unpack;
    __m256 codes, highCodes;
};

// Wider codes with a LUT: gathered from the row's fp32 table.
struct Gather8 : Lanes8 {
    static constexpr bool kTables = true, kGrids = false;
    static constexpr int kTableEntries = 256;
    using State = const float*;
    explicit Gather8(int bits) : unpack(bits) {}
    __m256i unpacked(std::uint64_t v) const { return unpack.masked(v); }
    static State table(const float* entries) { return entries; }
    static Vec decode(State s, __m256i c) { return _mm256_i32gather_ps(s, c, 4); }
    Unpack8 unpack;
};

// Wider codes on a grid: scale·(code − zero) lane by lane.
struct Arithmetic8 : Lanes8 {
    static constexpr bool kTables = false, kGrids = true;
    struct State {
        __m256 scale, zero;
    };
    explicit Arithmetic8(int bits) : unpack(bits) {}
    __m256i unpacked(std::uint64_t v) const { return unpack.masked(v); }
    static State grid(float scale, float zero) {
        return {_mm256_set1_ps(scale), _mm256_set1_ps(zero)};
    }
    static Vec decode(const State& s, __m256i c) {
        return _mm256_mul_ps(s.scale, _mm256_sub_ps(_mm256_cvtepi32_ps(c), s.zero));
    }
    Unpack8 unpack;
};

#ifdef QUANTLENS_KERNELS_AVX512

struct Lanes16 {
    static constexpr int kLanes = 16;
    using Vec = __m512;
    static Vec zero() { return _mm512_setzero_ps(); }
    static Vec load(const float* p) { return _mm512_loadu_ps(p); }
    static Vec fma(Vec a, Vec b, Vec c) { return _mm512_fmadd_ps(a, b, c); }
    static float sum(Vec v) { return _mm512_reduce_add_ps(v); }
    static void store(float* p, Vec v, int n) {
        if (n >= kLanes) return _mm512_storeu_ps(p, v);
        _mm512_mask_storeu_ps(p, static_cast<__mmask16>((1u << n) - 1u), v);
    }
};

// ≤ 4-bit codes through a 16-entry table in one register, shifts and no shuffle to unpack them:
// the 64 bits starting 4 − bits bytes before a chunk hold its first 8 codes in the low 32 and its
// last 8 in the high 32, so one broadcast and a per-lane shift leave code k in lane 2k and code
// 8 + k in lane 2k + 1 (x is laid out in that order), above bits left in place. vpermps reads each
// lane's low 4 bits, so tables of narrower codes repeat their entries.
struct Permute16 : Lanes16 {
    static constexpr bool kTables = true, kGrids = true;
    static constexpr int kTableEntries = 16;
    static constexpr bool kLaneOrdered = true;
    using State = __m512;
    explicit Permute16(int bits) : codes(tableCodes<__m512>(bits, &load)) {
        alignas(64) std::int32_t shift[16], lane[16];
        for (int k = 0; k < 8; ++k) {
            shift[2 * k] = 8 * windowOffset(bits) + k * bits;
            shift[2 * k + 1] = k * bits;
            lane[k] = 2 * k;
            lane[8 + k] = 2 * k + 1;
        }
        shifts = _mm512_load_si512(shift);
        naturalOrder = _mm512_load_si512(lane);
    }
    static int laneColumn(int lane) { return lane / 2 + lane % 2 * 8; }
    static int windowOffset(int bits) { return 4 - bits; }
    Vec natural(Vec w) const { return _mm512_permutexvar_ps(naturalOrder, w); }
    __m512i unpacked(std::uint64_t v) const {
        return _mm512_srlv_epi32(_mm512_set1_epi64(static_cast<long long>(v)), shifts);
    }
    State table(const float* entries) const { return _mm512_load_ps(entries); }
    State grid(float scale, float zero) const {
        return _mm512_mul_ps(_mm512_set1_ps(scale), _mm512_sub_ps(codes, _mm512_set1_ps(zero)));
    }
    static Vec decode(State s, __m512i c) { return _mm512_permutexvar_ps(c, s); }
    __m512i shifts, naturalOrder;
    __m512 codes;
};

#endif

// What every pass of one product or decode shares: the matrix, its kernel layout, the lookup and
// the chunking of a row.
template <class Lookup> struct Plan {
    static constexpr int kLanes = Lookup::kLanes;
    Plan(const CompressedMatrix& matrix, Lookup lookupOf)
        : m(matrix), layout(*matrix.kernel), lookup(lookupOf), unpackStats(matrix.qqBits),
          chunks((matrix.cols + kLanes - 1) / kLanes),
          chunksPerGroup(matrix.groups == 1 ? chunks : matrix.groupsize / kLanes),
          chunkBytes(static_cast<std::size_t>(kLanes) * matrix.wbits / 8),
          windowOffset(Lookup::windowOffset(matrix.wbits)), begin(matrix.codes),
          end(codesEnd(matrix)) {}
    const CompressedMatrix& m;
    const KernelLayout& layout;
    Lookup lookup;
    Unpack8 unpackStats; // SpQR's second-level codes
    int chunks, chunksPerGroup;
    std::size_t chunkBytes; // chunks start on a byte
    int windowOffset;       // a chunk's 64 bits start this many bytes before it
    const std::byte* begin; // the codes array
    const std::byte* end;
};

// The first-level grids of the 8 rows of SpQR block `block` in every group, row by row from the
// stored arrays, for the blocks that span two row groups: per group, 8 scales then 8 zeros.
void spqrGridsStored(const CompressedMatrix& m, int block, float* grids) {
    for (int g = 0; g < m.groups; ++g)
        for (int i = 0; i < kBlockRows; ++i) {
            const MinMaxGrid grid =
                firstLevelGrid(m, std::min(block * kBlockRows + i, m.rows - 1), g);
            grids[(static_cast<std::size_t>(g) * 2) * kBlockRows + i] = grid.scale;
            grids[(static_cast<std::size_t>(g) * 2 + 1) * kBlockRows + i] = grid.zero;
        }
}

// The first-level grids of the 8 rows of SpQR block `block`, which lies in row group `rowGroup`,
// in every group, eight lanes at once from the block's records: exactly dequantize()'s values,
// into grids [groups][scales, zeros][8].
template <class Lookup>
void spqrGrids(const Plan<Lookup>& plan, int block, int rowGroup, float* grids) {
    // Locals, not members: stores to `grids` could alias those.
    const int groups = plan.m.groups, qq = plan.m.qqBits;
    const Unpack8 unpack = plan.unpackStats;
    const std::byte* record = reinterpret_cast<const std::byte*>(plan.layout.statCodes.data()) +
                              block * plan.layout.statBlockBytes;
    const std::uint16_t* stats =
        plan.layout.stats.data() + static_cast<std::size_t>(rowGroup) * groups * 4;
    const __m256 minimum = _mm256_set1_ps(kMinimumSpqrScale);
    for (int g = 0; g < groups; ++g, record += 2 * qq, stats += 4, grids += 2 * kBlockRows) {
        const __m256 scaleCodes = _mm256_cvtepi32_ps(unpack.masked(load64(record)));
        const __m256 zeroCodes = _mm256_cvtepi32_ps(unpack.masked(load64(record + qq)));
        // The four fp16 statistics, converted at once (exactly) and broadcast lane by lane.
        const __m256 four = _mm256_castps128_ps256(
            _mm_cvtph_ps(_mm_loadl_epi64(reinterpret_cast<const __m128i*>(stats))));
        const auto stat = [&](int k) {
            return _mm256_permutevar8x32_ps(four, _mm256_set1_epi32(k));
        };
        const __m256 scale = _mm256_mul_ps(stat(0), _mm256_sub_ps(scaleCodes, stat(1)));
        _mm256_storeu_ps(grids, _mm256_max_ps(scale, minimum));
        _mm256_storeu_ps(grids + kBlockRows,
                         _mm256_mul_ps(stat(2), _mm256_sub_ps(zeroCodes, stat(3))));
    }
}

// A row's LUT as fp32, its entries repeated up to `count` (at most up to the larger of 16 and
// the number of levels: no lookup reads further).
void fillTable(const CompressedMatrix& m, int row, float* table, int count) {
    const int levels = 1 << m.wbits;
    const std::size_t first = static_cast<std::size_t>(row) << m.wbits;
    count = std::min(count, std::max(levels, kMaxLanes));
    for (int k = 0; k < count; ++k)
        table[k] = storedHalf(m.lut, first + (k & (levels - 1)));
}

// The first-level grids of rows first…first+count−1 (inside one 8-row block) in every group, into
// grids [groups][scales, zeros][8] (SpQR: lanes of the block; else the first `count` lanes), all
// before the pass's loop: its broadcasts then read memory written long before.
template <Source source, class Lookup>
void passGrids(const Plan<Lookup>& plan, int first, int count, float* grids) {
    const CompressedMatrix& m = plan.m;
    if constexpr (source == Source::Affine) {
        for (int i = 0; i < count; ++i) {
            const int row = std::min(first + i, m.rows - 1);
            const std::size_t at = static_cast<std::size_t>(row) * m.groups;
            for (int g = 0; g < m.groups; ++g) {
                grids[g * 2 * kBlockRows + i] = storedHalf(m.scales, at + g);
                grids[(g * 2 + 1) * kBlockRows + i] = storedHalf(m.zeros, at + g);
            }
        }
    } else {
        const int block = first / kBlockRows;
        const int rowGroup = plan.layout.blockRowGroup[static_cast<std::size_t>(block)];
        if (rowGroup < 0) return spqrGridsStored(m, block, grids);
        spqrGrids(plan, block, rowGroup, grids);
    }
}

// Chunks [c0, c1) of the pass's rows into sink.add(i, c, weights); windows[i] is the byte of the
// codes array where row i's first chunk's window starts (negative before the array). `bounded`
// loads read nothing outside the array.
template <bool bounded, int R, class Lookup, class Sink>
inline void runChunks(const Plan<Lookup>& plan, const std::ptrdiff_t* windows,
                      const typename Lookup::State* state, int c0, int c1, Sink& sink) {
    for (int c = c0; c < c1; ++c) {
        sink.begin(c);
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
template <int R, class Lookup, class Sink>
inline void runChunkRange(const Plan<Lookup>& plan, const std::ptrdiff_t* windows,
                          const typename Lookup::State* state, int c0, int c1, int safeFirst,
                          int safeEnd, Sink& sink) {
    const int a = std::clamp(safeFirst, c0, c1), b = std::clamp(safeEnd, a, c1);
    runChunks<true, R>(plan, windows, state, c0, a, sink);
    runChunks<false, R>(plan, windows, state, a, b, sink);
    runChunks<true, R>(plan, windows, state, b, c1, sink);
}

// Rows first…first+R−1 (first a multiple of R, R dividing 8) decoded chunk by chunk into `sink`,
// without outliers. Rows past the matrix repeat its last row; callers drop them. `grids` holds
// groups·16 floats.
template <Source source, int R, class Lookup, class Sink>
void runPass(const Plan<Lookup>& plan, int first, Sink& sink, float* grids) {
    const CompressedMatrix& m = plan.m;
    int rows[R];
    std::ptrdiff_t windows[R]; // where each row's first window starts in the codes array
    for (int i = 0; i < R; ++i) {
        rows[i] = std::min(first + i, m.rows - 1);
        windows[i] = (rowCodes(m, rows[i]) - plan.begin) - plan.windowOffset;
    }
    // Chunks whose 8-byte windows lie inside the codes array for every row: the first row's
    // start no earlier than the array, the last row's end no later.
    const auto step = static_cast<std::ptrdiff_t>(plan.chunkBytes);
    const std::ptrdiff_t before = -windows[0], room = (plan.end - plan.begin) - windows[R - 1] - 8;
    const int safeFirst = before <= 0 ? 0 : static_cast<int>((before + step - 1) / step);
    const int safeEnd =
        room < 0 ? 0 : static_cast<int>(std::min<std::ptrdiff_t>(plan.chunks, room / step + 1));
    typename Lookup::State state[R];
    if constexpr (source == Source::Lut) {
        alignas(64) float tables[R][Lookup::kTableEntries];
#pragma GCC unroll 8
        for (int i = 0; i < R; ++i) {
            fillTable(m, rows[i], tables[i], Lookup::kTableEntries);
            state[i] = plan.lookup.table(tables[i]);
        }
        // Gather8 keeps pointers into `tables`: the chunks run while they live.
        runChunkRange<R>(plan, windows, state, 0, plan.chunks, safeFirst, safeEnd, sink);
    } else {
        passGrids<source>(plan, first, R, grids);
        const int lane = source == Source::Spqr ? first % kBlockRows : 0;
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
                runChunks<false, R>(plan, windows, state, c0, c1, sink);
            else
                runChunkRange<R>(plan, windows, state, c0, c1, safeFirst, safeEnd, sink);
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
std::vector<float>& gridScratch(const CompressedMatrix& m) {
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
    for (int p = first; p < last; p += R) {
        ProductSink<Lookup, R, T> sink(x);
        runPass<source, R>(plan, p, sink, grids.data());
        for (int i = 0; i < R && p + i < last; ++i) {
            float rest[T] = {};
            if (m.outliers.count > 0) outlierSums<T>(m, deltas, p + i, columns, rest);
            for (int t = 0; t < tokens; ++t) {
                const float sum = Lookup::sum(sink.acc[i][t]) + rest[t];
                float& target = y[t * yStride + p + i];
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
        runPass<source, kBlockRows>(plan, p, sink, grids.data());
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

// Calls body.template operator()<source>(plan) with the plan of the widest vector kernel `isa`
// allows for m; false when none applies (groups off the chunk grid) and the portable code must.
template <class Body> bool withPlan(const CompressedMatrix& m, KernelIsa isa, Body&& body) {
    if (isa == KernelIsa::Portable || !m.kernel) return false;
    // Every chunk must lie in one group.
    const auto fits = [&](int lanes) { return m.groups == 1 || m.groupsize % lanes == 0; };
#ifdef QUANTLENS_KERNELS_AVX512
    if (isa == KernelIsa::Auto && m.wbits <= 4 && fits(16)) {
        withSource(Plan(m, Permute16(m.wbits)), body);
        return true;
    }
#endif
    if (!fits(8)) return false;
    if (m.wbits <= 3)
        withSource(Plan(m, Permute8(m.wbits)), body);
    else if (m.wbits == 4)
        withSource(Plan(m, Permute8x2(m.wbits)), body);
    else if (m.grid == CompressedMatrix::Grid::Lut)
        withSource(Plan(m, Gather8(m.wbits)), body);
    else
        withSource(Plan(m, Arithmetic8(m.wbits)), body);
    return true;
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

// Rows [first, first + count) of W decoded by the vector kernels; false where none applies.
bool decodeVector(const CompressedMatrix& m, int first, int count, float* out, KernelIsa isa) {
    return withPlan(m, isa, [&]<Source source>(const auto& plan) {
        decodeRows<source>(plan, first, count, out);
    });
}

// y = x·Wᵀ for up to kFusedBatch tokens (rows of x: x[t]) by the vector kernels; false where none
// applies.
bool productVector(const CompressedMatrix& m, const float* const* x, int tokens, float* y,
                   std::ptrdiff_t yStride, bool accumulate, KernelIsa isa) {
    return withPlan(m, isa, [&]<Source source, class Lookup>(const Plan<Lookup>& plan) {
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

#else

bool decodeVector(const CompressedMatrix&, int, int, float*, KernelIsa) {
    return false;
}

bool productVector(const CompressedMatrix&, const float* const*, int, float*, std::ptrdiff_t, bool,
                   KernelIsa) {
    return false;
}

#endif

} // namespace

std::shared_ptr<const KernelLayout> kernelLayout(const CompressedMatrix& m) {
    auto k = std::make_shared<KernelLayout>();
    if (m.outliers.count > 0) {
        k->outlierDeltas.resize(static_cast<std::size_t>(m.outliers.count));
        for (int r = 0; r < m.rows; ++r)
            forEachOutlier(m, r, [&](std::int64_t i, int j) {
                float decoded;
                decodeRun(m, r, j, j + 1, &decoded);
                k->outlierDeltas[static_cast<std::size_t>(i)] = m.outliers.value(i) - decoded;
            });
    }
    if (m.grid == CompressedMatrix::Grid::Spqr) buildSpqrLayout(m, *k);
    return k;
}

std::size_t kernelLayoutBytes(const CompressedMatrix& m) {
    return m.kernel ? m.kernel->bytes() : 0;
}

void decodeCompressedRows(const CompressedMatrix& m, int first, int count, float* out,
                          KernelIsa isa) {
    if (count <= 0 || decodeVector(m, first, count, out, isa)) return;
    for (int i = 0; i < count; ++i)
        decodeRowPortable(m, first + i, out + static_cast<std::size_t>(i) * m.cols);
}

void multiplyCompressed(const CompressedMatrix& m, const float* x, std::ptrdiff_t xStride,
                        int tokens, float* y, std::ptrdiff_t yStride, bool accumulate,
                        KernelIsa isa) {
    if (tokens <= 0 || m.rows == 0) return;
    thread_local std::vector<float> buffer;
    kernelInputs(m, x, xStride, tokens, buffer);
    const std::ptrdiff_t width = paddedWidth(m.cols);

    if (tokens <= kFusedBatch) {
        // Token rows of x for the kernels; the padding tokens of a kernel for more read zeros.
        const float* rows[kFusedBatch];
        for (int t = 0; t < kFusedBatch; ++t)
            rows[t] = buffer.data() + std::min(t, tokens) * width;
        if (!productVector(m, rows, tokens, y, yStride, accumulate, isa))
            forEachRowTask(m.rows, [&](int first, int last) {
                productRowsPortable(m, rows, tokens, first, last, y, yStride, accumulate);
            });
        return;
    }

    using StridedMap = Eigen::Map<const RowMatrix, 0, Eigen::OuterStride<>>;
    const StridedMap input(buffer.data(), tokens, m.cols, Eigen::OuterStride<>(width));
    parallelFor((m.rows + kTileRows - 1) / kTileRows, [&](std::int64_t task) {
        const int first = static_cast<int>(task) * kTileRows;
        const int count = std::min(kTileRows, m.rows - first);
        thread_local std::vector<float> tile;
        tile.resize(static_cast<std::size_t>(count) * m.cols);
        decodeCompressedRows(m, first, count, tile.data(), isa);
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
