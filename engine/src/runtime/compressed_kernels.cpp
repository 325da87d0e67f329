#include "quantlens/runtime/compressed_kernels.h"

#include "quantlens/core/float_tensor.h"
#include "quantlens/encoding/bit_packing.h"
#include "runtime/kernels/kernel_common.h"

#include <cmath>
#include <memory>
#include <vector>

// The fused kernels' entry points: the kernel layout, the inputs in the kernels' order, and the
// choice of instruction set (kernels/: portable, AVX2, AVX-512).

namespace quantlens {

using namespace kernels;

namespace {

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

// 3- and 4-bit LUTs as the int8 kernels' fixed-point tables (KernelLayout::fixedLuts; 3-bit
// tables repeat their 8 entries).
void buildFixedLuts(const CompressedMatrix& m, KernelLayout& k) {
    constexpr int kLevels = 16;
    const int levels = 1 << m.wbits;
    k.fixedLuts.resize(static_cast<std::size_t>(m.rows) * 2 * kLevels);
    k.lutUnit.resize(static_cast<std::size_t>(m.rows));
    for (int r = 0; r < m.rows; ++r) {
        float entries[kLevels], peak = 0.0f;
        for (int c = 0; c < kLevels; ++c) {
            entries[c] =
                storedHalf(m.lut, static_cast<std::size_t>(r) * levels + (c & (levels - 1)));
            peak = std::max(peak, std::abs(entries[c]));
        }
        const float unit = peak > 0.0f ? peak / kFixedLutPeak : 1.0f;
        std::int8_t* table = k.fixedLuts.data() + static_cast<std::size_t>(r) * 2 * kLevels;
        for (int c = 0; c < kLevels; ++c) {
            const int t = static_cast<int>(std::lround(entries[c] / unit));
            static_assert(kFixedLutHighWeight == 1 << 6);
            const int high = t >> 6; // floor(t / 64), so the low part is in [0, 64)
            table[c] = static_cast<std::int8_t>(t - kFixedLutHighWeight * high);
            table[kLevels + c] = static_cast<std::int8_t>(high);
        }
        k.lutUnit[static_cast<std::size_t>(r)] = unit;
    }
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

// Rows [first, first + count) of W decoded by the widest vector kernels `isa` allows for m; false
// where none applies (groups off the chunk grid) and the portable code must.
bool decodeVector(const CompressedMatrix& m, int first, int count, float* out, KernelIsa isa) {
    if (isa == KernelIsa::Portable || !m.kernel) return false;
    return (isa == KernelIsa::Auto && decodeRowsAvx512(m, first, count, out)) ||
           decodeRowsAvx2(m, first, count, out);
}

// y = x·Wᵀ for up to kFusedBatch tokens by the vector kernels; false where none applies.
bool productVector(const CompressedMatrix& m, const float* const* x, int tokens, float* y,
                   std::ptrdiff_t yStride, bool accumulate, KernelIsa isa) {
    if (isa == KernelIsa::Portable || !m.kernel) return false;
    return (isa == KernelIsa::Auto && productAvx512(m, x, tokens, y, yStride, accumulate)) ||
           productAvx2(m, x, tokens, y, yStride, accumulate);
}

// y = x·Wᵀ for one token by `kernel`, x in the kernels' order; false for Int8Kernel::None.
bool productInt8(const CompressedMatrix& m, const float* x, float* y, bool accumulate,
                 Int8Kernel kernel) {
    switch (kernel) {
    case Int8Kernel::None:
        return false;
    case Int8Kernel::Avx2:
        return productInt8Grid(m, x, y, accumulate) || productInt8Lut(m, x, y, accumulate) ||
               productInt8ThreeBit(m, x, y, accumulate);
    case Int8Kernel::Avx512Vnni:
        return productInt8ThreeBitAvx512(m, x, y, accumulate) ||
               productInt8FourBitAvx512(m, x, y, accumulate) ||
               productInt8LutAvx512(m, x, y, accumulate);
    }
    return false;
}

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
    if (m.grid == CompressedMatrix::Grid::Lut && (m.wbits == 3 || m.wbits == 4))
        buildFixedLuts(m, *k);
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

Int8Kernel int8Kernel(const CompressedMatrix& m, KernelIsa isa) {
    if (isa == KernelIsa::Portable || !m.kernel) return Int8Kernel::None;
    if (isa == KernelIsa::Auto) {
        if (int8ThreeBitAvx512Applies(m) || int8FourBitAvx512Applies(m) || int8LutAvx512Applies(m))
            return Int8Kernel::Avx512Vnni;
        // The 16-lane exact kernels look a LUT up in one vpermps per 16 weights, faster than the
        // AVX2 int8 LUT kernels (bench gemv): there other LUTs keep exact activations.
        if (m.grid == CompressedMatrix::Grid::Lut && avx512Applies(m)) return Int8Kernel::None;
    }
    if (int8GridApplies(m) || int8LutApplies(m) || int8ThreeBitApplies(m)) return Int8Kernel::Avx2;
    return Int8Kernel::None;
}

const char* int8KernelName(Int8Kernel kernel) {
    switch (kernel) {
    case Int8Kernel::None:
        return "";
    case Int8Kernel::Avx2:
        return "avx2";
    case Int8Kernel::Avx512Vnni:
        return "avx512-vnni";
    }
    return "";
}

bool int8ActivationsApply(const CompressedMatrix& m, KernelIsa isa) {
    return int8Kernel(m, isa) != Int8Kernel::None;
}

void multiplyCompressed(const CompressedMatrix& m, const float* x, std::ptrdiff_t xStride,
                        int tokens, float* y, std::ptrdiff_t yStride, bool accumulate,
                        KernelIsa isa, Activations activations) {
    if (tokens <= 0 || m.rows == 0) return;
    thread_local std::vector<float> buffer;
    kernelInputs(m, x, xStride, tokens, buffer);
    const std::ptrdiff_t width = paddedWidth(m.cols);

    if (tokens == 1 && activations == Activations::Int8 &&
        productInt8(m, buffer.data(), y, accumulate, int8Kernel(m, isa)))
        return;

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
