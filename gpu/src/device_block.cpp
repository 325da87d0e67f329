#include "device_block.h"

#include "transformer_kernels.h"

#include <cmath>
#include <vector>

namespace quantlens::gpu {
namespace {

DeviceBuffer<float> upload(const float* data, std::int64_t rows, std::int64_t cols) {
    return DeviceBuffer<float>(std::span<const float>(data, static_cast<std::size_t>(rows * cols)));
}

// A tensor only some architectures have: empty where `data` is null.
DeviceBuffer<float> uploadOptional(const float* data, std::int64_t count) {
    return data ? upload(data, 1, count) : DeviceBuffer<float>();
}

} // namespace

DeviceBlockWeights::DeviceBlockWeights(const BlockView& w, const ModelConfig& c)
    : attnNorm(upload(w.attnNorm, 1, c.hiddenSize)), wq(upload(w.wq, c.queryDim(), c.hiddenSize)),
      wk(upload(w.wk, c.kvDim(), c.hiddenSize)), wv(upload(w.wv, c.kvDim(), c.hiddenSize)),
      wo(upload(w.wo, c.hiddenSize, c.queryDim())), ffnNorm(upload(w.ffnNorm, 1, c.hiddenSize)),
      gate(upload(w.gate, c.intermediateSize, c.hiddenSize)),
      up(upload(w.up, c.intermediateSize, c.hiddenSize)),
      down(upload(w.down, c.hiddenSize, c.intermediateSize)),
      qBias(uploadOptional(w.qBias, c.queryDim())), kBias(uploadOptional(w.kBias, c.kvDim())),
      vBias(uploadOptional(w.vBias, c.kvDim())), qNorm(uploadOptional(w.qNorm, c.headDim)),
      kNorm(uploadOptional(w.kNorm, c.headDim)) {}

void DeviceBlockScratch::reserve(int tokens, const ModelConfig& c) {
    const auto grow = [&](DeviceBuffer<float>& buffer, int width) {
        const std::size_t needed = static_cast<std::size_t>(tokens) * width;
        if (buffer.size() < needed) buffer.resize(needed);
    };
    grow(normed, c.hiddenSize);
    grow(q, c.queryDim());
    grow(k, c.kvDim());
    grow(v, c.kvDim());
    grow(attended, c.queryDim());
    grow(gate, c.intermediateSize);
    grow(up, c.intermediateSize);
}

void DeviceRopeTables::ensure(int positions, const Eigen::VectorXf& frequencies, int headDim) {
    if (positions <= positions_) return;
    const int half = headDim / 2;
    std::vector<float> cosines(static_cast<std::size_t>(positions) * half), sines(cosines.size());
    // transformer_ops.cpp's applyRope: fp32 angle, std::cos and std::sin.
    for (int p = 0; p < positions; ++p)
        for (int i = 0; i < half; ++i) {
            const float angle = static_cast<float>(p) * frequencies[i];
            cosines[static_cast<std::size_t>(p) * half + i] = std::cos(angle);
            sines[static_cast<std::size_t>(p) * half + i] = std::sin(angle);
        }
    cosines_ = DeviceBuffer<float>(std::span<const float>(cosines));
    sines_ = DeviceBuffer<float>(std::span<const float>(sines));
    positions_ = positions;
}

void linearOnDevice(cublasHandle_t handle, const float* x, const float* w, int n, int out, int in,
                    float* y, bool accumulate) {
    // Row-major matrices are their column-major transposes: yᵀ = W·xᵀ.
    const float one = 1.0f, beta = accumulate ? 1.0f : 0.0f;
    checkCublas(cublasSgemm(handle, CUBLAS_OP_T, CUBLAS_OP_N, out, n, in, &one, w, in, x, in, &beta,
                            y, out),
                "cublasSgemm");
}

void runDeviceBlock(cublasHandle_t handle, const ModelConfig& c, const DeviceBlockWeights& w,
                    DeviceBlockScratch& s, const DeviceRopeTables& rope, float* hidden, int n,
                    const DeviceStageObserver& observer, std::optional<LinearStage> stopAfter) {
    const int dim = c.hiddenSize, qDim = c.queryDim(), kvDim = c.kvDim(), ffn = c.intermediateSize;
    const bool interleaved = c.ropeLayout == RopeLayout::Interleaved;
    // Reports a stage's input; true when the caller asked to stop there.
    const auto observe = [&](LinearStage stage, const float* input, int width) {
        if (observer) observer(stage, input, width);
        return stopAfter == stage;
    };

    rmsNorm(hidden, w.attnNorm.data(), n, dim, c.rmsNormEps, s.normed.data(), nullptr);
    if (observe(LinearStage::Attention, s.normed.data(), dim)) return;
    linearOnDevice(handle, s.normed.data(), w.wq.data(), n, qDim, dim, s.q.data(), false);
    linearOnDevice(handle, s.normed.data(), w.wk.data(), n, kvDim, dim, s.k.data(), false);
    linearOnDevice(handle, s.normed.data(), w.wv.data(), n, kvDim, dim, s.v.data(), false);
    if (w.qBias.size()) {
        addBias(s.q.data(), w.qBias.data(), n, qDim, nullptr);
        addBias(s.k.data(), w.kBias.data(), n, kvDim, nullptr);
        addBias(s.v.data(), w.vBias.data(), n, kvDim, nullptr);
    }
    if (w.qNorm.size()) {
        rmsNorm(s.q.data(), w.qNorm.data(), n * c.headCount, c.headDim, c.rmsNormEps, s.q.data(),
                nullptr);
        rmsNorm(s.k.data(), w.kNorm.data(), n * c.kvHeadCount, c.headDim, c.rmsNormEps, s.k.data(),
                nullptr);
    }
    applyRope(s.q.data(), n, c.headCount, c.headDim, interleaved, rope.cosines(), rope.sines(),
              nullptr);
    applyRope(s.k.data(), n, c.kvHeadCount, c.headDim, interleaved, rope.cosines(), rope.sines(),
              nullptr);
    causalAttention(s.q.data(), s.k.data(), s.v.data(), n, c.headCount, c.kvHeadCount, c.headDim,
                    1.0f / std::sqrt(static_cast<float>(c.headDim)), c.slidingWindow,
                    s.attended.data(), nullptr);
    if (observe(LinearStage::AttentionOutput, s.attended.data(), qDim)) return;
    linearOnDevice(handle, s.attended.data(), w.wo.data(), n, dim, qDim, hidden, true);

    rmsNorm(hidden, w.ffnNorm.data(), n, dim, c.rmsNormEps, s.normed.data(), nullptr);
    if (observe(LinearStage::Mlp, s.normed.data(), dim)) return;
    linearOnDevice(handle, s.normed.data(), w.gate.data(), n, ffn, dim, s.gate.data(), false);
    linearOnDevice(handle, s.normed.data(), w.up.data(), n, ffn, dim, s.up.data(), false);
    swiGlu(s.gate.data(), s.up.data(), static_cast<std::int64_t>(n) * ffn, nullptr);
    if (observe(LinearStage::MlpOutput, s.gate.data(), ffn)) return;
    linearOnDevice(handle, s.gate.data(), w.down.data(), n, dim, ffn, hidden, true);
}

} // namespace quantlens::gpu
