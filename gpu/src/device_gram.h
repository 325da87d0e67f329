#pragma once

#include "device_buffer.h"

#include <Eigen/Core>

#include <cublas_v2.h>

namespace quantlens::gpu {

// G = Σ XᵀX over batches X [tokens, n] already on the device, summed by SYRK into an upper
// triangle that stays there until result().
class DeviceGram {
public:
    explicit DeviceGram(int n) : n_(n), gram_(static_cast<std::size_t>(n) * n) { gram_.zero(); }

    int width() const { return n_; }

    void add(cublasHandle_t handle, const float* x, int tokens) {
        if (tokens == 0) return;
        // Row-major X [tokens, n] is column-major Xᵀ [n, tokens]: G += Xᵀ·(Xᵀ)ᵀ.
        const float one = 1.0f;
        checkCublas(cublasSsyrk(handle, CUBLAS_FILL_MODE_UPPER, CUBLAS_OP_N, n_, tokens, &one, x,
                                n_, &one, gram_.data(), n_),
                    "cublasSsyrk");
    }

    // The whole symmetric sum, [n, n].
    Eigen::MatrixXf result() const {
        Eigen::MatrixXf upper(n_, n_);
        gram_.download({upper.data(), static_cast<std::size_t>(upper.size())});
        return upper.selfadjointView<Eigen::Upper>();
    }

private:
    int n_;
    DeviceBuffer<float> gram_;
};

} // namespace quantlens::gpu
