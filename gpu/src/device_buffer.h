#pragma once

#include "cuda_check.h"

#include <cstddef>
#include <span>
#include <utility>

namespace quantlens::gpu {

// An array in device memory, freed with its owner.
template <typename T> class DeviceBuffer {
public:
    DeviceBuffer() = default;
    explicit DeviceBuffer(std::size_t count) { resize(count); }
    explicit DeviceBuffer(std::span<const T> host) {
        resize(host.size());
        upload(host);
    }
    DeviceBuffer(const DeviceBuffer&) = delete;
    DeviceBuffer& operator=(const DeviceBuffer&) = delete;
    DeviceBuffer(DeviceBuffer&& other) noexcept
        : data_(std::exchange(other.data_, nullptr)), size_(std::exchange(other.size_, 0)) {}
    DeviceBuffer& operator=(DeviceBuffer&& other) noexcept {
        std::swap(data_, other.data_);
        std::swap(size_, other.size_);
        return *this;
    }
    ~DeviceBuffer() {
        if (data_) cudaFree(data_);
    }

    // Discards the contents when the size changes.
    void resize(std::size_t count) {
        if (count == size_) return;
        if (data_) cudaFree(std::exchange(data_, nullptr));
        size_ = 0;
        if (count == 0) return;
        checkCuda(cudaMalloc(reinterpret_cast<void**>(&data_), count * sizeof(T)), "cudaMalloc");
        size_ = count;
    }
    void upload(std::span<const T> host, std::size_t offset = 0) {
        checkCuda(
            cudaMemcpy(data_ + offset, host.data(), host.size_bytes(), cudaMemcpyHostToDevice),
            "cudaMemcpy to device");
    }
    void download(std::span<T> host, std::size_t offset = 0) const {
        checkCuda(
            cudaMemcpy(host.data(), data_ + offset, host.size_bytes(), cudaMemcpyDeviceToHost),
            "cudaMemcpy to host");
    }
    void zero() {
        if (size_) checkCuda(cudaMemset(data_, 0, size_ * sizeof(T)), "cudaMemset");
    }

    T* data() { return data_; }
    const T* data() const { return data_; }
    std::size_t size() const { return size_; }

private:
    T* data_ = nullptr;
    std::size_t size_ = 0;
};

} // namespace quantlens::gpu
