#include "quantlens/gpu/device_compressed_matrix.h"

#include "device_buffer.h"
#include "quantlens/core/dtype.h"
#include "quantlens/encoding/bit_packing.h"

#include <cuda_fp16.h>

#include <algorithm>
#include <cstdint>
#include <vector>

namespace quantlens::gpu {
namespace {

using Grid = CompressedMatrix::Grid;

constexpr int kWarpsPerBlock = 4;
constexpr int kCodesPerChunk = 32; // one lane's share of a row per step: `bits` words

// One row's first-level grid, decoded as QuantizedLayer::dequantize() decodes it: RTN/GPTQ from
// the fp16 pair, SpQR from its two statistic codes (low byte scale, high byte zero) on the
// second-level grids of its row group (scale grid, zero grid: scale and zero each).
struct AffineGrid {
    float scale, zero;
};

__host__ __device__ inline AffineGrid spqrGrid(std::uint16_t codes, float scaleScale,
                                               float scaleZero, float zeroScale, float zeroZero) {
    const float scale = scaleScale * (static_cast<float>(codes & 0xff) - scaleZero);
    return {scale > 1e-8f ? scale : 1e-8f, // kMinimumSpqrScale
            zeroScale * (static_cast<float>(codes >> 8) - zeroZero)};
}

__host__ __device__ inline float decodeAffine(AffineGrid grid, std::uint32_t code) {
    return grid.scale * (static_cast<float>(code) - grid.zero);
}

struct GemvParams {
    const std::uint32_t* codes;
    int wordsPerRow, rows, cols, groupsize, groups;
    const __half2* affine;          // Affine: (scale, zero) [rows, groups]
    const std::uint16_t* statCodes; // Spqr: [rows, groups]
    const ushort4* stats;           // Spqr: fp16 [rowGroups, groups, 4]
    int statsGroupsize;
    const __half* lut; // Lut: [rows, levels]
    int levels;
    const int* rowPointers; // CSR, may be null
    const int* columns;
    const float* deltas;
    const float* x; // permuted order, padded with zeros to whole chunks
    float* y;
};

template <int Bits>
__device__ inline std::uint32_t extractCode(const std::uint32_t (&w)[Bits], int i) {
    const int bit = i * Bits, word = bit / 32, shift = bit % 32;
    std::uint32_t value = w[word] >> shift;
    if (shift + Bits > 32) value |= w[word + 1] << (32 - shift);
    return value & ((1u << Bits) - 1);
}

template <Grid G> __device__ inline AffineGrid groupGrid(const GemvParams& p, int row, int group) {
    if constexpr (G == Grid::Affine) {
        const float2 pair =
            __half22float2(p.affine[static_cast<std::size_t>(row) * p.groups + group]);
        return {pair.x, pair.y};
    } else {
        const ushort4 s =
            p.stats[static_cast<std::size_t>(row / p.statsGroupsize) * p.groups + group];
        return spqrGrid(p.statCodes[static_cast<std::size_t>(row) * p.groups + group],
                        __half2float(__ushort_as_half(s.x)), __half2float(__ushort_as_half(s.y)),
                        __half2float(__ushort_as_half(s.z)), __half2float(__ushort_as_half(s.w)));
    }
}

template <int Bits, Grid G> __global__ void gemvKernel(GemvParams p) {
    extern __shared__ float sharedLuts[]; // Lut: [kWarpsPerBlock, levels]
    const int warp = threadIdx.x / 32, lane = threadIdx.x % 32;
    const int row = blockIdx.x * kWarpsPerBlock + warp;
    if (row >= p.rows) return; // whole warps leave; the kernel has no block-wide barrier

    float* lut = sharedLuts + warp * p.levels;
    if constexpr (G == Grid::Lut) {
        for (int k = lane; k < p.levels; k += 32)
            lut[k] = __half2float(p.lut[static_cast<std::size_t>(row) * p.levels + k]);
        __syncwarp();
    }
    const std::uint32_t* codes = p.codes + static_cast<std::size_t>(row) * p.wordsPerRow;
    const int chunks = (p.cols + kCodesPerChunk - 1) / kCodesPerChunk;
    float sum = 0.0f;
    for (int chunk = lane; chunk < chunks; chunk += 32) {
        std::uint32_t w[Bits];
#pragma unroll
        for (int k = 0; k < Bits; ++k) {
            const int index = chunk * Bits + k;
            w[k] = index < p.wordsPerRow ? __ldg(codes + index) : 0u;
        }
        float x[kCodesPerChunk];
        const float4* x4 = reinterpret_cast<const float4*>(p.x + chunk * kCodesPerChunk);
#pragma unroll
        for (int k = 0; k < kCodesPerChunk / 4; ++k) {
            const float4 v = __ldg(x4 + k);
            x[4 * k] = v.x;
            x[4 * k + 1] = v.y;
            x[4 * k + 2] = v.z;
            x[4 * k + 3] = v.w;
        }
        const int first = chunk * kCodesPerChunk;
        int group = 0, nextGroupStart = 0;
        AffineGrid grid{0.0f, 0.0f};
        if constexpr (G != Grid::Lut) {
            group = first / p.groupsize;
            nextGroupStart = (group + 1) * p.groupsize;
            grid = groupGrid<G>(p, row, group);
        }
#pragma unroll
        for (int i = 0; i < kCodesPerChunk; ++i) {
            const std::uint32_t code = extractCode<Bits>(w, i);
            if constexpr (G == Grid::Lut) {
                sum = fmaf(lut[code], x[i], sum);
            } else {
                if (first + i == nextGroupStart && ++group < p.groups) {
                    nextGroupStart += p.groupsize;
                    grid = groupGrid<G>(p, row, group);
                }
                sum = fmaf(decodeAffine(grid, code), x[i], sum);
            }
        }
    }
    if (p.rowPointers)
        for (int k = p.rowPointers[row] + lane; k < p.rowPointers[row + 1]; k += 32)
            sum = fmaf(p.deltas[k], p.x[p.columns[k]], sum);
#pragma unroll
    for (int offset = 16; offset > 0; offset /= 2)
        sum += __shfl_xor_sync(0xffffffffu, sum, offset);
    if (lane == 0) p.y[row] = sum;
}

// xPermuted[j] = x[perm[j]]; zeros past cols.
__global__ void gatherKernel(const float* x, const int* perm, int cols, int padded,
                             float* xPermuted) {
    const int j = blockIdx.x * blockDim.x + threadIdx.x;
    if (j < padded) xPermuted[j] = j < cols ? x[perm ? perm[j] : j] : 0.0f;
}

template <Grid G> void launchForGrid(int bits, const GemvParams& p, cudaStream_t stream) {
    const dim3 blocks((p.rows + kWarpsPerBlock - 1) / kWarpsPerBlock), threads(32 * kWarpsPerBlock);
    const std::size_t shared = G == Grid::Lut ? sizeof(float) * kWarpsPerBlock * p.levels : 0;
    switch (bits) {
    case 1:
        gemvKernel<1, G><<<blocks, threads, shared, stream>>>(p);
        break;
    case 2:
        gemvKernel<2, G><<<blocks, threads, shared, stream>>>(p);
        break;
    case 3:
        gemvKernel<3, G><<<blocks, threads, shared, stream>>>(p);
        break;
    case 4:
        gemvKernel<4, G><<<blocks, threads, shared, stream>>>(p);
        break;
    case 5:
        gemvKernel<5, G><<<blocks, threads, shared, stream>>>(p);
        break;
    case 6:
        gemvKernel<6, G><<<blocks, threads, shared, stream>>>(p);
        break;
    case 7:
        gemvKernel<7, G><<<blocks, threads, shared, stream>>>(p);
        break;
    case 8:
        gemvKernel<8, G><<<blocks, threads, shared, stream>>>(p);
        break;
    default:
        throw Error("cuda", "no GEMV kernel for " + std::to_string(bits) + "-bit codes");
    }
}

std::vector<std::uint16_t> storedF16(const std::byte* data, std::size_t count) {
    std::vector<std::uint16_t> values(count);
    for (std::size_t i = 0; i < count; ++i)
        values[i] = loadStored<std::uint16_t>(data, i);
    return values;
}

} // namespace

struct DeviceCompressedMatrix::Arrays {
    Grid grid;
    int rows, cols, wbits, groupsize, groups, wordsPerRow, statsGroupsize = 1, levels = 0;
    int paddedCols;
    bool permuted, hasOutliers;
    DeviceBuffer<std::uint32_t> codes;
    DeviceBuffer<std::uint32_t> affine; // __half2 bits
    DeviceBuffer<std::uint16_t> statCodes;
    DeviceBuffer<std::uint16_t> stats; // 4 per (row group, group)
    DeviceBuffer<std::uint16_t> lut;
    DeviceBuffer<int> rowPointers, columns, perm;
    DeviceBuffer<float> deltas;
    mutable DeviceBuffer<float> xPermuted;

    std::size_t bytes() const {
        return codes.size() * 4 + affine.size() * 4 + statCodes.size() * 2 + stats.size() * 2 +
               lut.size() * 2 + rowPointers.size() * 4 + columns.size() * 4 + deltas.size() * 4 +
               perm.size() * 4;
    }
};

DeviceCompressedMatrix::DeviceCompressedMatrix(const CompressedMatrix& m)
    : arrays_(std::make_unique<Arrays>()) {
    Arrays& a = *arrays_;
    a.grid = m.grid;
    a.rows = m.rows;
    a.cols = m.cols;
    a.wbits = m.wbits;
    a.groupsize = m.groupsize;
    a.groups = m.groups;
    a.wordsPerRow = static_cast<int>(m.codeRowBytes / 4);
    a.paddedCols = (m.cols + kCodesPerChunk - 1) / kCodesPerChunk * kCodesPerChunk;
    a.permuted = m.permuted();
    a.hasOutliers = m.outliers.count > 0;

    const std::size_t rows = static_cast<std::size_t>(m.rows),
                      groups = static_cast<std::size_t>(m.groups);
    std::vector<std::uint32_t> codes(rows * a.wordsPerRow);
    for (std::size_t i = 0; i < codes.size(); ++i)
        codes[i] = loadStored<std::uint32_t>(m.codes, i);
    a.codes = DeviceBuffer<std::uint32_t>(std::span<const std::uint32_t>(codes));

    // The weight the grid gives at (row, permuted column j), for the outlier corrections.
    std::vector<AffineGrid> grids;
    std::vector<float> luts;
    if (m.grid == Grid::Affine) {
        std::vector<std::uint32_t> pairs(rows * groups);
        for (std::size_t i = 0; i < pairs.size(); ++i) {
            const std::uint16_t scale = loadStored<std::uint16_t>(m.scales, i);
            const std::uint16_t zero = loadStored<std::uint16_t>(m.zeros, i);
            pairs[i] = scale | (std::uint32_t{zero} << 16);
            grids.push_back({f16ToFloat(scale), f16ToFloat(zero)});
        }
        a.affine = DeviceBuffer<std::uint32_t>(std::span<const std::uint32_t>(pairs));
    } else if (m.grid == Grid::Spqr) {
        if (m.qqBits > 8)
            throw Error("cuda", "SpQR statistics of more than 8 bits are not supported on CUDA");
        a.statsGroupsize = m.statsGroupsize;
        const std::size_t rowGroups = static_cast<std::size_t>(m.rowGroups);
        const std::size_t statWords = m.statCodeRowBytes / 4;
        std::vector<std::uint32_t> scaleWords(groups * statWords), zeroWords(groups * statWords);
        for (std::size_t i = 0; i < scaleWords.size(); ++i) {
            scaleWords[i] = loadStored<std::uint32_t>(m.scaleCodes, i);
            zeroWords[i] = loadStored<std::uint32_t>(m.zeroCodes, i);
        }
        const std::vector<std::uint16_t> scaleStats =
            storedF16(m.scaleStats, groups * rowGroups * 2);
        const std::vector<std::uint16_t> zeroStats = storedF16(m.zeroStats, groups * rowGroups * 2);
        std::vector<std::uint16_t> statCodes(rows * groups), stats(rowGroups * groups * 4);
        for (std::size_t g = 0; g < groups; ++g)
            for (std::size_t rg = 0; rg < rowGroups; ++rg) {
                std::uint16_t* s = &stats[(rg * groups + g) * 4];
                s[0] = scaleStats[(g * rowGroups + rg) * 2];
                s[1] = scaleStats[(g * rowGroups + rg) * 2 + 1];
                s[2] = zeroStats[(g * rowGroups + rg) * 2];
                s[3] = zeroStats[(g * rowGroups + rg) * 2 + 1];
            }
        grids.resize(rows * groups);
        for (std::size_t r = 0; r < rows; ++r)
            for (std::size_t g = 0; g < groups; ++g) {
                const auto scaleCode = unpackCode(scaleWords.data() + g * statWords, r, m.qqBits);
                const auto zeroCode = unpackCode(zeroWords.data() + g * statWords, r, m.qqBits);
                const std::uint16_t packed =
                    static_cast<std::uint16_t>(scaleCode | (zeroCode << 8));
                statCodes[r * groups + g] = packed;
                const std::uint16_t* s = &stats[((r / m.statsGroupsize) * groups + g) * 4];
                grids[r * groups + g] = spqrGrid(packed, f16ToFloat(s[0]), f16ToFloat(s[1]),
                                                 f16ToFloat(s[2]), f16ToFloat(s[3]));
            }
        a.statCodes = DeviceBuffer<std::uint16_t>(std::span<const std::uint16_t>(statCodes));
        a.stats = DeviceBuffer<std::uint16_t>(std::span<const std::uint16_t>(stats));
    } else {
        a.levels = 1 << m.wbits;
        const std::vector<std::uint16_t> lut = storedF16(m.lut, rows * a.levels);
        for (const std::uint16_t v : lut)
            luts.push_back(f16ToFloat(v));
        a.lut = DeviceBuffer<std::uint16_t>(std::span<const std::uint16_t>(lut));
    }

    if (a.hasOutliers) {
        std::vector<int> rowPointers(rows + 1), columns(static_cast<std::size_t>(m.outliers.count));
        std::vector<float> deltas(columns.size());
        for (int r = 0; r <= m.rows; ++r)
            rowPointers[static_cast<std::size_t>(r)] = static_cast<int>(m.outliers.rowBegin(r));
        for (int r = 0; r < m.rows; ++r)
            for (std::int64_t k = rowPointers[r]; k < rowPointers[r + 1]; ++k) {
                const int j = m.outliers.column(k);
                const std::uint32_t code =
                    unpackCode(codes.data() + static_cast<std::size_t>(r) * a.wordsPerRow,
                               static_cast<std::size_t>(j), m.wbits);
                const float decoded =
                    m.grid == Grid::Lut
                        ? luts[static_cast<std::size_t>(r) * a.levels + code]
                        : decodeAffine(
                              grids[static_cast<std::size_t>(r) * groups + j / m.groupsize], code);
                columns[static_cast<std::size_t>(k)] = j;
                deltas[static_cast<std::size_t>(k)] = m.outliers.value(k) - decoded;
            }
        a.rowPointers = DeviceBuffer<int>(std::span<const int>(rowPointers));
        a.columns = DeviceBuffer<int>(std::span<const int>(columns));
        a.deltas = DeviceBuffer<float>(std::span<const float>(deltas));
    }
    if (a.permuted) {
        std::vector<int> perm(static_cast<std::size_t>(m.cols));
        for (int j = 0; j < m.cols; ++j)
            perm[static_cast<std::size_t>(j)] = m.originalColumn(j);
        a.perm = DeviceBuffer<int>(std::span<const int>(perm));
    }
    a.xPermuted.resize(static_cast<std::size_t>(a.paddedCols));
}

DeviceCompressedMatrix::~DeviceCompressedMatrix() = default;
DeviceCompressedMatrix::DeviceCompressedMatrix(DeviceCompressedMatrix&&) noexcept = default;
DeviceCompressedMatrix&
DeviceCompressedMatrix::operator=(DeviceCompressedMatrix&&) noexcept = default;

int DeviceCompressedMatrix::rows() const {
    return arrays_->rows;
}
int DeviceCompressedMatrix::cols() const {
    return arrays_->cols;
}
std::size_t DeviceCompressedMatrix::deviceBytes() const {
    return arrays_->bytes();
}

void DeviceCompressedMatrix::multiply(const float* x, float* y, cudaStream_t stream) const {
    const Arrays& a = *arrays_;
    if (a.rows == 0) return;
    // The kernel reads x in permuted order, in whole chunks, as float4: a layer without act-order
    // and with whole chunks reads an aligned x in place.
    const bool inPlace = !a.permuted && a.paddedCols == a.cols &&
                         reinterpret_cast<std::uintptr_t>(x) % alignof(float4) == 0;
    const float* xKernel = x;
    if (!inPlace) {
        constexpr int kThreads = 256;
        gatherKernel<<<(a.paddedCols + kThreads - 1) / kThreads, kThreads, 0, stream>>>(
            x, a.permuted ? a.perm.data() : nullptr, a.cols, a.paddedCols, a.xPermuted.data());
        xKernel = a.xPermuted.data();
    }
    GemvParams p{};
    p.codes = a.codes.data();
    p.wordsPerRow = a.wordsPerRow;
    p.rows = a.rows;
    p.cols = a.cols;
    p.groupsize = a.groupsize;
    p.groups = a.groups;
    p.affine = reinterpret_cast<const __half2*>(a.affine.data());
    p.statCodes = a.statCodes.data();
    p.stats = reinterpret_cast<const ushort4*>(a.stats.data());
    p.statsGroupsize = a.statsGroupsize;
    p.lut = reinterpret_cast<const __half*>(a.lut.data());
    p.levels = a.levels;
    p.rowPointers = a.hasOutliers ? a.rowPointers.data() : nullptr;
    p.columns = a.columns.data();
    p.deltas = a.deltas.data();
    p.x = xKernel;
    p.y = y;
    switch (a.grid) {
    case Grid::Affine:
        launchForGrid<Grid::Affine>(a.wbits, p, stream);
        break;
    case Grid::Spqr:
        launchForGrid<Grid::Spqr>(a.wbits, p, stream);
        break;
    case Grid::Lut:
        launchForGrid<Grid::Lut>(a.wbits, p, stream);
        break;
    }
    checkCuda(cudaGetLastError(), "compressed GEMV launch");
}

} // namespace quantlens::gpu
