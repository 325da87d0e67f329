#include "runtime/kernels/vector_passes.h"

namespace quantlens::kernels {

#ifdef QUANTLENS_KERNELS_AVX2

namespace {

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
    static float sum(Vec v) { return horizontalSum(v); }
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

// Calls body(lookup) with the 8-lane lookup for m's code width and grid; false where chunks of 8
// columns would span two groups.
template <class Body> bool withAvx2Lookup(const CompressedMatrix& m, Body&& body) {
    if (m.groups != 1 && m.groupsize % 8 != 0) return false;
    if (m.wbits <= 3)
        body(Permute8(m.wbits));
    else if (m.wbits == 4)
        body(Permute8x2(m.wbits));
    else if (m.grid == CompressedMatrix::Grid::Lut)
        body(Gather8(m.wbits));
    else
        body(Arithmetic8(m.wbits));
    return true;
}

} // namespace

bool decodeRowsAvx2(const CompressedMatrix& m, int first, int count, float* out) {
    return withAvx2Lookup(m, [&](auto lookup) { decodeWith(m, lookup, first, count, out); });
}

bool productAvx2(const CompressedMatrix& m, const float* const* x, int tokens, float* y,
                 std::ptrdiff_t yStride, bool accumulate) {
    return withAvx2Lookup(
        m, [&](auto lookup) { productWith(m, lookup, x, tokens, y, yStride, accumulate); });
}

#else

bool decodeRowsAvx2(const CompressedMatrix&, int, int, float*) {
    return false;
}

bool productAvx2(const CompressedMatrix&, const float* const*, int, float*, std::ptrdiff_t, bool) {
    return false;
}

#endif

} // namespace quantlens::kernels
