#include "quantlens/gpu/cuda_backend.h"

#include "cublas_handle.h"
#include "cuda_calibration_walk.h"
#include "cuda_sequence_forward.h"
#include "cusolver_handle.h"
#include "device_binding.h"
#include "device_buffer.h"
#include "device_gram.h"
#include "nearest_centroid.h"

#include <algorithm>

namespace quantlens::gpu {
namespace {

// G += XᵀX for host batches, each uploaded and summed on the device.
class CudaGram final : public GramAccumulator {
public:
    CudaGram(int device, Eigen::Index n) : device_(device), gram_(static_cast<int>(n)) {}
    void add(const RowMatrix& x) override {
        if (x.cols() != gram_.width()) throw Error("cuda", "Gram batch has the wrong width");
        if (x.rows() == 0) return;
        useDevice(device_);
        batch_.resize(static_cast<std::size_t>(x.size()));
        batch_.upload({x.data(), static_cast<std::size_t>(x.size())});
        gram_.add(handle_, batch_.data(), static_cast<int>(x.rows()));
    }
    Eigen::MatrixXf result() const override {
        useDevice(device_);
        return gram_.result();
    }

private:
    DeviceBinding device_; // first: the members below are made on the device
    CublasHandle handle_;
    DeviceGram gram_;
    DeviceBuffer<float> batch_;
};

// W and U live on the device for the whole loop; each block's columns come back to the host to
// be quantized, and its errors go out to update every later column with one SGEMM.
class CudaTrailingColumns final : public ObsTrailingColumns {
public:
    CudaTrailingColumns(int device, Eigen::MatrixXf& weights, const Eigen::MatrixXf& u)
        : device_(device), weights_(weights) {
        w_ = DeviceBuffer<float>({weights.data(), static_cast<std::size_t>(weights.size())});
        u_ = DeviceBuffer<float>({u.data(), static_cast<std::size_t>(u.size())});
    }
    void fetch(Eigen::Index begin, Eigen::Index end) override {
        if (end <= begin) return;
        useDevice(device_);
        const Eigen::Index rows = weights_.rows();
        w_.download(
            {weights_.data() + begin * rows, static_cast<std::size_t>((end - begin) * rows)},
            static_cast<std::size_t>(begin * rows));
    }
    void feedBack(const Eigen::Ref<const Eigen::MatrixXf>& errors, Eigen::Index begin,
                  Eigen::Index end) override {
        const Eigen::Index rows = weights_.rows(), cols = weights_.cols(), rest = cols - end;
        if (rest <= 0 || rows == 0) return;
        useDevice(device_);
        const Eigen::Index width = end - begin;
        if (errors_.size() < static_cast<std::size_t>(rows * width))
            errors_.resize(static_cast<std::size_t>(rows * width));
        checkCuda(cudaMemcpy2D(errors_.data(), rows * sizeof(float), errors.data(),
                               errors.outerStride() * sizeof(float), rows * sizeof(float), width,
                               cudaMemcpyHostToDevice),
                  "cudaMemcpy2D to device");
        // W[:, end:] −= E · U[begin:end, end:]; all column-major.
        const float minusOne = -1.0f, one = 1.0f;
        checkCublas(cublasSgemm(handle_, CUBLAS_OP_N, CUBLAS_OP_N, static_cast<int>(rows),
                                static_cast<int>(rest), static_cast<int>(width), &minusOne,
                                errors_.data(), static_cast<int>(rows),
                                u_.data() + end * cols + begin, static_cast<int>(cols), &one,
                                w_.data() + end * rows, static_cast<int>(rows)),
                    "cublasSgemm");
    }

private:
    DeviceBinding device_;
    Eigen::MatrixXf& weights_;
    CublasHandle handle_;
    DeviceBuffer<float> w_, u_, errors_;
};

class CudaBackend final : public Backend {
public:
    explicit CudaBackend(int device) : device_(device) {
        int count = 0;
        checkCuda(cudaGetDeviceCount(&count), "cudaGetDeviceCount");
        if (device < 0 || device >= count)
            throw Error("cuda", "device " + std::to_string(device) + " does not exist (" +
                                    std::to_string(count) + " found)");
        useDevice(device_);
        cudaDeviceProp properties{};
        checkCuda(cudaGetDeviceProperties(&properties, device_), "cudaGetDeviceProperties");
        name_ = "cuda:" + std::to_string(device_) + " " + properties.name;
    }
    std::string id() const override { return "cuda:" + std::to_string(device_); }
    std::string name() const override { return name_; }
    std::unique_ptr<GramAccumulator> gramAccumulator(Eigen::Index n) const override {
        return std::make_unique<CudaGram>(device_, n);
    }
    // cuSOLVER's Cholesky, then a triangular solve against the identity.
    bool inverseCholeskyFactor(Eigen::MatrixXf& a) const override {
        const int n = static_cast<int>(a.rows());
        if (n == 0) return true;
        useDevice(device_);
        DeviceBuffer<float> matrix(std::span<const float>(a.data(), a.size()));
        CusolverHandle solver;
        int workspaceSize = 0;
        checkCusolver(cusolverDnSpotrf_bufferSize(solver, CUBLAS_FILL_MODE_LOWER, n, matrix.data(),
                                                  n, &workspaceSize),
                      "cusolverDnSpotrf_bufferSize");
        DeviceBuffer<float> workspace(static_cast<std::size_t>(std::max(workspaceSize, 1)));
        DeviceBuffer<int> info(1);
        checkCusolver(cusolverDnSpotrf(solver, CUBLAS_FILL_MODE_LOWER, n, matrix.data(), n,
                                       workspace.data(), workspaceSize, info.data()),
                      "cusolverDnSpotrf");
        int status = 0;
        info.download({&status, 1});
        if (status < 0)
            throw Error("cuda", "cusolverDnSpotrf rejected argument " + std::to_string(-status));
        if (status > 0) return false; // a leading minor is not positive definite
        const Eigen::MatrixXf identity = Eigen::MatrixXf::Identity(n, n);
        DeviceBuffer<float> inverse(std::span<const float>(identity.data(), identity.size()));
        const CublasHandle blas;
        const float one = 1.0f;
        checkCublas(cublasStrsm(blas, CUBLAS_SIDE_LEFT, CUBLAS_FILL_MODE_LOWER, CUBLAS_OP_N,
                                CUBLAS_DIAG_NON_UNIT, n, n, &one, matrix.data(), n, inverse.data(),
                                n),
                    "cublasStrsm");
        inverse.download({a.data(), static_cast<std::size_t>(a.size())});
        return true;
    }
    std::unique_ptr<ObsTrailingColumns>
    obsTrailingColumns(Eigen::MatrixXf& weights,
                       const Eigen::MatrixXf& inverseCholesky) const override {
        return std::make_unique<CudaTrailingColumns>(device_, weights, inverseCholesky);
    }
    // Falls back to the CPU's walk where the device cannot hold it, and says so.
    std::unique_ptr<CalibrationWalk> calibrationWalk(const Transformer& transformer,
                                                     std::vector<RowMatrix> hidden,
                                                     const JobContext& job) const override {
        std::string unfit;
        if (auto walk = makeCudaCalibrationWalk(device_, transformer, hidden, unfit)) return walk;
        if (!unfit.empty())
            job.notice(id() + ": the calibration walk " + unfit + ", so it runs on the CPU");
        return cpuBackend()->calibrationWalk(transformer, std::move(hidden), job);
    }
    // Compressed checkpoints run their layers through the CPU's fused kernels, and a model whose
    // fp32 weights do not fit the device runs on the CPU; either says so.
    std::unique_ptr<SequenceForward> sequenceForward(const Transformer& transformer,
                                                     const JobContext& job) const override {
        if (!transformer.model().compressedLayers.empty()) {
            job.notice(id() + ": compressed checkpoints have no device forward pass yet, so this "
                              "one runs on the CPU's fused kernels");
        } else {
            std::string unfit;
            if (auto forward = makeCudaSequenceForward(device_, transformer, unfit)) return forward;
            job.notice(id() + ": the forward pass " + unfit + ", so it runs on the CPU");
        }
        return cpuBackend()->sequenceForward(transformer, job);
    }
    void assignNearest(const RowMatrix& values, std::span<const float> tables, int levels,
                       std::span<std::uint16_t> codes) const override {
        useDevice(device_);
        const DeviceBuffer<float> deviceValues(
            std::span<const float>(values.data(), static_cast<std::size_t>(values.size())));
        const DeviceBuffer<float> deviceTables(tables);
        DeviceBuffer<std::uint16_t> deviceCodes(codes.size());
        gpu::assignNearest(deviceValues.data(), deviceTables.data(), levels, values.rows(),
                           values.cols(), deviceCodes.data());
        deviceCodes.download(codes);
    }

private:
    int device_;
    std::string name_;
};

} // namespace

std::shared_ptr<const Backend> makeCudaBackend(int device) {
    return std::make_shared<CudaBackend>(device);
}

} // namespace quantlens::gpu
