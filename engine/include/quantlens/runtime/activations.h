#pragma once

namespace quantlens {

// How a batch-1 product with a compressed layer treats x: exactly (fp32, every product), or
// quantized to int8 in blocks of 32 with integer dot products where the layout allows (on AVX2:
// 3- and 4-bit min-max grids — RTN, GPTQ, SpQR's first level — and 3- and 4-bit SqueezeLLM LUTs on
// a fixed point), as ggml's decoding kernels do. Int8's error per output is bounded in
// docs/FORMAT.md, "Fused kernels"; larger batches are always exact.
enum class Activations { Exact, Int8 };

} // namespace quantlens
