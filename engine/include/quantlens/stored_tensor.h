#pragma once

#include <cstdint>
#include <cstring>
#include <string>
#include <vector>

namespace quantlens {

// One array exactly as it is stored (in memory and in exported files): safetensors dtype name,
// shape and little-endian bytes. Bit accounting counts these bytes and nothing else.
struct StoredTensor {
    std::string dtype;
    std::vector<std::int64_t> shape;
    std::vector<std::uint8_t> bytes;

    template <typename T>
    static StoredTensor of(std::string dtype, std::vector<std::int64_t> shape,
                           const std::vector<T>& values) {
        StoredTensor t{std::move(dtype), std::move(shape),
                       std::vector<std::uint8_t>(values.size() * sizeof(T))};
        if (!values.empty()) // an empty vector's data() may be null, which memcpy forbids
            std::memcpy(t.bytes.data(), values.data(), t.bytes.size());
        return t;
    }
    // fp32 values stored as F16 (rounded to nearest even).
    static StoredTensor f16(std::vector<std::int64_t> shape, const std::vector<float>& values);

    template <typename T> T at(std::size_t index) const {
        T value;
        std::memcpy(&value, bytes.data() + index * sizeof(T), sizeof(T));
        return value;
    }
    float f16At(std::size_t index) const;
    std::size_t count() const;
};

} // namespace quantlens
