#pragma once

#include "quantlens/runtime/activations.h"
#include "quantlens/runtime/compressed_matrix.h"

#include <cstddef>
#include <memory>

namespace quantlens {

// Which instructions the fused kernels use: the widest the build targets (Auto: AVX-512 with VBMI,
// else AVX2/FMA), AVX2 even where AVX-512 is there, or the portable scalar code. Tests run all
// three; Avx2 and Auto fall back to what the build has.
enum class KernelIsa { Auto, Avx2, Portable };

// Up to this many tokens, each row of W is decoded once, in registers, and multiplied with every
// token (matrix-vector and small-batch products).
inline constexpr int kFusedBatch = 8;

// y = x·Wᵀ straight from the compressed arrays: x [tokens, cols] in the layer's original column
// order (rows `xStride` floats apart), y [tokens, rows] (`yStride` apart); with `accumulate`,
// y += x·Wᵀ. Small batches decode codes in registers and add each outlier as
// (value − decoded)·x at its column, so W is never materialised; larger batches decode tiles of
// rows into a small buffer and multiply them with Eigen. Parallel over rows on the engine's
// threads. The decoded weights equal QuantizedLayer::dequantize()'s bit for bit; only the order of
// the sums differs from a dense product (see docs/FORMAT.md for the tolerance).
void multiplyCompressed(const CompressedMatrix& m, const float* x, std::ptrdiff_t xStride,
                        int tokens, float* y, std::ptrdiff_t yStride, bool accumulate,
                        KernelIsa isa = KernelIsa::Auto,
                        Activations activations = Activations::Exact);
// The int8 kernel a batch-1 product with Activations::Int8 takes for m: none (the exact kernels
// run then), the AVX2 one, or (Auto only) the AVX-512 ones with VBMI and VNNI (3-bit min-max grids
// at widths a multiple of 64, 4-bit grids in groups of a multiple of 128 columns, 4-bit LUTs at
// widths a multiple of 128). Auto takes the fastest measured on each set: where the build has
// AVX-512, other LUTs (SqueezeLLM) keep exact activations, their 16-lane kernel being the faster.
enum class Int8Kernel { None, Avx2, Avx512Vnni };
Int8Kernel int8Kernel(const CompressedMatrix& m, KernelIsa isa = KernelIsa::Auto);
const char* int8KernelName(Int8Kernel kernel); // "avx2", "avx512-vnni"; "" for None
// Whether a batch-1 product with Activations::Int8 takes an int8 kernel for m.
bool int8ActivationsApply(const CompressedMatrix& m, KernelIsa isa = KernelIsa::Auto);

// What the vector kernels read besides the stored arrays, derived from them once
// (compressedMatrix() calls this): each outlier's value minus the weight decoded under it (fp32:
// 32 bits per outlier), and for SpQR its second-level codes and statistics regrouped by blocks of
// 8 rows (the stored arrays' size, which the kernels then no longer read).
std::shared_ptr<const KernelLayout> kernelLayout(const CompressedMatrix& m);
// The bytes of m's kernel layout: memory on top of the stored arrays.
std::size_t kernelLayoutBytes(const CompressedMatrix& m);

// Rows [first, first + count) of W exactly as QuantizedLayer::dequantize() gives them, but in
// permuted column order (act-order layers); out is [count, cols].
void decodeCompressedRows(const CompressedMatrix& m, int first, int count, float* out,
                          KernelIsa isa = KernelIsa::Auto);

} // namespace quantlens
