#pragma once

// The int8 activations both int8 kernels read (int8_avx2.cpp: 4-bit grids; int8_lut_avx2.cpp:
// 4-bit LUTs), quantized once per product as ggml's q8 blocks are.

#include "runtime/kernels/kernel_common.h"

#include <cmath>
#include <cstdint>
#include <vector>

namespace quantlens::kernels {

constexpr int kInt8Block = 32; // columns per activation scale: one 256-bit register of int8

// x as the kernels read it, in the order of the nibbles a load of packed codes yields. One block
// (`paired` off): its 16 even columns, then its 16 odd ones. Pairs of blocks (groups of a multiple
// of 64 columns), read 64 codes a load: both blocks' even columns, then both blocks' odd ones.
// Then each block's scale (paired: per pair, the first block's four times, then the second's),
// and the exact sum of x over each group of W.
struct Int8Activations {
    bool paired = false;
    std::vector<std::int8_t> values; // [blocks · 32]
    std::vector<float> scales;       // [blocks] (paired: [blocks · 4])
    std::vector<float> groupSums;    // [groups]
};

// x_j ≈ d_b·q_j with d_b = max|x_b| / 127 and q_j = round(x_j / d_b), for blocks b of 32 columns
// (cols and groupsize multiples of 32).
inline void quantizeActivations(const float* x, int cols, int groupsize, Int8Activations& a) {
    const int blocks = cols / kInt8Block;
    a.paired = groupsize % (2 * kInt8Block) == 0;
    a.values.resize(static_cast<std::size_t>(cols));
    a.scales.resize(static_cast<std::size_t>(blocks) * (a.paired ? 4 : 1));
    a.groupSums.assign(static_cast<std::size_t>(cols / groupsize), 0.0f);
    for (int b = 0; b < blocks; ++b) {
        const float* in = x + b * kInt8Block;
        float peak = 0.0f;
        for (int j = 0; j < kInt8Block; ++j)
            peak = std::max(peak, std::abs(in[j]));
        const float scale = peak / 127.0f;
        const float inverse = scale > 0.0f ? 1.0f / scale : 0.0f;
        // Where column j of the block goes: within its 32 bytes, or its pair's 64.
        const int half = a.paired ? b % 2 : 0;
        std::int8_t* out = a.values.data() + (a.paired ? b - half : b) * kInt8Block;
        for (int j = 0; j < kInt8Block; ++j)
            out[(j % 2) * (a.paired ? 32 : 16) + half * 16 + j / 2] =
                static_cast<std::int8_t>(std::lround(in[j] * inverse));
        if (a.paired)
            std::fill_n(a.scales.begin() + (b - half) * 4 + half * 4, 4, scale);
        else
            a.scales[static_cast<std::size_t>(b)] = scale;
        float sum = 0.0f;
        for (int j = 0; j < kInt8Block; ++j)
            sum += in[j];
        a.groupSums[static_cast<std::size_t>(b * kInt8Block / groupsize)] += sum;
    }
}

// This thread's activations for one product, quantized from x (the row tasks share them).
inline const Int8Activations& int8Activations(const float* x, int cols, int groupsize) {
    thread_local Int8Activations buffer;
    quantizeActivations(x, cols, groupsize, buffer);
    return buffer;
}

} // namespace quantlens::kernels
