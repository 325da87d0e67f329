#include "runtime/kernels/vector_passes.h"

namespace quantlens::kernels {

#ifdef QUANTLENS_KERNELS_AVX512

namespace {

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

} // namespace

// Chunks of 16 columns must lie in one group; wider codes than 4 bits take the 8-lane kernels.
bool avx512Applies(const CompressedMatrix& m) {
    return m.wbits <= 4 && (m.groups == 1 || m.groupsize % 16 == 0);
}

bool decodeRowsAvx512(const CompressedMatrix& m, int first, int count, float* out) {
    if (!avx512Applies(m)) return false;
    decodeWith(m, Permute16(m.wbits), first, count, out);
    return true;
}

bool productAvx512(const CompressedMatrix& m, const float* const* x, int tokens, float* y,
                   std::ptrdiff_t yStride, bool accumulate) {
    if (!avx512Applies(m)) return false;
    productWith(m, Permute16(m.wbits), x, tokens, y, yStride, accumulate);
    return true;
}

#else

bool avx512Applies(const CompressedMatrix&) {
    return false;
}

bool decodeRowsAvx512(const CompressedMatrix&, int, int, float*) {
    return false;
}

bool productAvx512(const CompressedMatrix&, const float* const*, int, float*, std::ptrdiff_t,
                   bool) {
    return false;
}

#endif

} // namespace quantlens::kernels
