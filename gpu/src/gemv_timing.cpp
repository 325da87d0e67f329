#include "quantlens/gpu/gemv_timing.h"

#include "cublas_handle.h"
#include "device_binding.h"
#include "device_buffer.h"
#include "quantlens/gpu/device_compressed_matrix.h"

#include <cuda_fp16.h>

#include <algorithm>
#include <functional>
#include <random>
#include <vector>

namespace quantlens::gpu {
namespace {

class Event {
public:
    Event() { checkCuda(cudaEventCreate(&event_), "cudaEventCreate"); }
    Event(const Event&) = delete;
    Event& operator=(const Event&) = delete;
    ~Event() { cudaEventDestroy(event_); }
    operator cudaEvent_t() const { return event_; }

private:
    cudaEvent_t event_ = nullptr;
};

KernelTiming timeRounds(int repeat, const std::function<void()>& product) {
    for (int i = 0; i < kProductsPerRound; ++i) // warm-up: clocks, caches, lazy module loading
        product();
    checkCuda(cudaDeviceSynchronize(), "warm-up");
    const Event start, stop;
    std::vector<double> seconds;
    for (int round = 0; round < repeat; ++round) {
        checkCuda(cudaEventRecord(start), "cudaEventRecord");
        for (int i = 0; i < kProductsPerRound; ++i)
            product();
        checkCuda(cudaEventRecord(stop), "cudaEventRecord");
        checkCuda(cudaEventSynchronize(stop), "cudaEventSynchronize");
        float ms = 0.0f;
        checkCuda(cudaEventElapsedTime(&ms, start, stop), "cudaEventElapsedTime");
        seconds.push_back(ms * 1e-3 / kProductsPerRound);
    }
    std::sort(seconds.begin(), seconds.end());
    return {seconds[seconds.size() / 2], seconds.front()};
}

template <typename T> DeviceBuffer<T> randomBuffer(std::size_t count, float scale) {
    std::mt19937 engine(7);
    std::normal_distribution<float> normal(0.0f, scale);
    std::vector<T> host(count);
    for (T& v : host)
        v = static_cast<T>(normal(engine));
    return DeviceBuffer<T>(std::span<const T>(host));
}

} // namespace

KernelTiming timeCompressedGemv(int device, const CompressedMatrix& m, int repeat,
                                std::size_t& deviceBytes) {
    useDevice(device);
    const DeviceCompressedMatrix matrix(m);
    deviceBytes = matrix.deviceBytes();
    const DeviceBuffer<float> x = randomBuffer<float>(static_cast<std::size_t>(m.cols), 1.0f);
    DeviceBuffer<float> y(static_cast<std::size_t>(m.rows));
    return timeRounds(repeat, [&] { matrix.multiply(x.data(), y.data()); });
}

KernelTiming timeCublasF16Gemv(int device, int rows, int cols, int repeat) {
    useDevice(device);
    const DeviceBuffer<__half> w =
        randomBuffer<__half>(static_cast<std::size_t>(rows) * cols, 0.02f);
    const DeviceBuffer<__half> x = randomBuffer<__half>(static_cast<std::size_t>(cols), 1.0f);
    DeviceBuffer<__half> y(static_cast<std::size_t>(rows));
    const CublasHandle handle;
    checkCublas(cublasSetMathMode(handle, CUBLAS_DEFAULT_MATH), "cublasSetMathMode");
    const float one = 1.0f, zero = 0.0f;
    // Row-major W [rows, cols] is column-major Wᵀ [cols, rows]: y = (Wᵀ)ᵀ·x.
    return timeRounds(repeat, [&] {
        checkCublas(cublasGemmEx(handle, CUBLAS_OP_T, CUBLAS_OP_N, rows, 1, cols, &one, w.data(),
                                 CUDA_R_16F, cols, x.data(), CUDA_R_16F, cols, &zero, y.data(),
                                 CUDA_R_16F, rows, CUBLAS_COMPUTE_32F, CUBLAS_GEMM_DEFAULT),
                    "cublasGemmEx");
    });
}

} // namespace quantlens::gpu
