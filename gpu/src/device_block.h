#pragma once

// One LLaMA block on the device: the weights, the activations it needs, and the pass itself,
// mirroring Transformer::runBlock (engine/src/runtime/transformer.cpp). Shared by the perplexity
// forward pass and the calibration walk.

#include "device_buffer.h"
#include "quantlens/runtime/transformer.h"

#include <cublas_v2.h>

#include <functional>
#include <optional>

namespace quantlens::gpu {

// A block's fp32 weights on the current device, uploaded from host pointers shaped by the config.
struct DeviceBlockWeights {
    DeviceBlockWeights(const BlockView& weights, const ModelConfig& config);
    DeviceBuffer<float> attnNorm, wq, wk, wv, wo, ffnNorm, gate, up, down;
    DeviceBuffer<float> qBias, kBias, vBias, qNorm, kNorm; // empty where the model has none
};

// The intermediates of one sequence's pass, grown to the longest seen.
struct DeviceBlockScratch {
    void reserve(int tokens, const ModelConfig& config);
    DeviceBuffer<float> normed, q, k, v, attended, gate, up;
};

// RoPE angles for positions [0, n) exactly as the CPU computes them, grown to the longest seen.
class DeviceRopeTables {
public:
    void ensure(int positions, const Eigen::VectorXf& inverseFrequencies, int headDim);
    const float* cosines() const { return cosines_.data(); }
    const float* sines() const { return sines_.data(); }

private:
    DeviceBuffer<float> cosines_, sines_;
    int positions_ = 0;
};

// y [n, out] = x [n, in] · Wᵀ (W row-major [out, in]), or y += with `accumulate`.
void linearOnDevice(cublasHandle_t handle, const float* x, const float* w, int n, int out, int in,
                    float* y, bool accumulate);

// A linear stage's input on the device: [tokens, width].
using DeviceStageObserver = std::function<void(LinearStage, const float* input, int width)>;

// Runs a block on hidden [tokens, dim] in place, all positions from 0. `observe` sees each
// linear stage's input; with `stopAfter` the pass returns right after that stage was observed,
// leaving `hidden` incomplete. Needs scratch reserved and RoPE tables for `tokens`.
void runDeviceBlock(cublasHandle_t handle, const ModelConfig& config,
                    const DeviceBlockWeights& weights, DeviceBlockScratch& scratch,
                    const DeviceRopeTables& rope, float* hidden, int tokens,
                    const DeviceStageObserver& observe = {},
                    std::optional<LinearStage> stopAfter = {});

} // namespace quantlens::gpu
