#pragma once

// What the 3-bit int8 kernels' passes over one block of 8 rows share on a min-max grid
// (int8_w3_avx2.cpp, int8_w3_avx512.cpp): each activation block's scale times its grid scale and
// the zero-point terms, computed once for the passes of the block.

#include "runtime/kernels/int8_activations.h"
#include "runtime/kernels/vector_passes.h"

#ifdef QUANTLENS_KERNELS_AVX2

namespace quantlens::kernels {

// Unit scales [units][8 rows], a unit being the columns of one activation block under one grid
// scale (32, or 16 for groups of 16: two a block), each d_b·s_g; and each row's zero-point term
// Σ_g s_g·z_g·Σ_{j∈g} x_j.
struct RowBlock {
    float* unitScales = nullptr;
    alignas(32) float zeroTerms[kBlockRows] = {};
};

// Units a block of 32 activations spans: two for groups of 16, else one.
constexpr int unitsPerBlock(bool halfGroups) {
    return halfGroups ? 2 : 1;
}

// The unit scales' floats for m's rows blocks (RowBlock::unitScales).
inline std::size_t unitScaleFloats(const CompressedMatrix& m) {
    return static_cast<std::size_t>(m.cols / kInt8Block) * 2 * kBlockRows;
}

template <Source source, bool halfGroups>
void prepareRowBlock(const GridSource& plan, const Int8Activations& a, int first, RowBlock& block) {
    if constexpr (source != Source::Lut) {
        // Group g's units: groups of 16 are unit g (half a block), else its blocks.
        const int blocksPerGroup = halfGroups ? 1 : plan.m.groupsize / kInt8Block;
        float* unitScales = block.unitScales;
        const float* activationScales = a.scales.data();
        const float* groupSums = a.groupSums.data();
        __m256 zeros = _mm256_setzero_ps();
        const auto grid = [&](int g, __m256 scale, __m256 zero) {
            if constexpr (halfGroups) {
                _mm256_storeu_ps(
                    unitScales + g * kBlockRows,
                    _mm256_mul_ps(_mm256_broadcast_ss(activationScales + g / 2), scale));
            } else {
                for (int k = g * blocksPerGroup; k < (g + 1) * blocksPerGroup; ++k)
                    _mm256_storeu_ps(
                        unitScales + k * kBlockRows,
                        _mm256_mul_ps(_mm256_broadcast_ss(activationScales + k), scale));
            }
            zeros = _mm256_fmadd_ps(_mm256_mul_ps(scale, zero), _mm256_broadcast_ss(groupSums + g),
                                    zeros);
        };
        const int rowBlock = first / kBlockRows;
        const int rowGroup = source == Source::Spqr
                                 ? plan.layout.blockRowGroup[static_cast<std::size_t>(rowBlock)]
                                 : -1;
        if (rowGroup >= 0) {
            forEachSpqrGrid(plan, rowBlock, rowGroup, grid); // straight from the records
        } else {
            float* grids = gridScratch(plan.m).data();
            passGrids<source>(plan, contiguousRows<kBlockRows>(first, plan.m.rows).rows, kBlockRows,
                              grids);
            for (int g = 0; g < plan.m.groups; ++g) {
                const float* stored = grids + static_cast<std::size_t>(g) * 2 * kBlockRows;
                grid(g, _mm256_loadu_ps(stored), _mm256_loadu_ps(stored + kBlockRows));
            }
        }
        _mm256_store_ps(block.zeroTerms, zeros);
    }
}

// Calls pass(block, first) for the row blocks of each row task of m (grid sources: block
// prepared), with this thread's scratch. (Blocks stay contiguous: passes over rows of several
// blocks at once, striped as forEachStripedPass takes rows, measured slower here — their unit
// scales crowd L1 — bench gemv.)
template <Source source, bool halfGroups, class Pass>
void forEachRowBlock(const GridSource& plan, const Int8Activations& a, Pass&& pass) {
    const CompressedMatrix& m = plan.m;
    forEachRowTask(m.rows, [&](int first, int last) {
        thread_local std::vector<float> unitScales;
        unitScales.resize(unitScaleFloats(m));
        RowBlock block;
        block.unitScales = unitScales.data();
        for (int p = first; p < last; p += kBlockRows) {
            prepareRowBlock<source, halfGroups>(plan, a, p, block);
            pass(block, p, last);
        }
    });
}

// Row `row`'s sum of a pass: the outliers' exact corrections added, the zero-point term taken
// (grids) or the LUT's unit applied, and into y (added with `accumulate`).
template <Source source>
inline void finishRow(const GridSource& plan, const RowBlock& block, int lane, int row, float sum,
                      const float* x, float* y, bool accumulate) {
    const CompressedMatrix& m = plan.m;
    float outliers = 0.0f;
    if (m.outliers.count > 0)
        outlierSums<1>(m, plan.layout.outlierDeltas.data(), row, &x, &outliers);
    if constexpr (source == Source::Lut)
        sum *= plan.layout.lutUnit[static_cast<std::size_t>(row)];
    else
        sum -= block.zeroTerms[lane];
    y[row] = accumulate ? y[row] + sum + outliers : sum + outliers;
}

// Runs body.template operator()<source, halfGroups>() for m's min-max grid (not a LUT).
template <class Body> void dispatchGrid(const CompressedMatrix& m, Body&& body) {
    const bool halfGroups = m.groupsize == 16;
    if (m.grid == CompressedMatrix::Grid::Spqr)
        return halfGroups ? body.template operator()<Source::Spqr, true>()
                          : body.template operator()<Source::Spqr, false>();
    return halfGroups ? body.template operator()<Source::Affine, true>()
                      : body.template operator()<Source::Affine, false>();
}

} // namespace quantlens::kernels

#endif
