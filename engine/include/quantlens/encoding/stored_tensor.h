#pragma once

#include <cstdint>
#include <cstring>
#include <string>
#include <vector>

namespace quantlens {

// Index arrays (CSR row pointers and columns, permutations) are stored in the narrowest of U8, U16
// and I32 that holds the largest value they may take (docs/FORMAT.md): `indexDtype` names it and
// `indexBytes` gives its width (0 for a dtype that is not an index dtype).
const char* indexDtype(std::int64_t largest);
int indexBytes(const std::string& dtype);
// Element `i` of an index array of `bytes`-wide little-endian entries. Inline: the compressed
// kernels read outlier columns through it.
inline std::int64_t loadIndex(const void* data, int bytes, std::size_t i) {
    const auto* at = static_cast<const std::uint8_t*>(data) + i * static_cast<std::size_t>(bytes);
    if (bytes == 1) return *at;
    if (bytes == 2) {
        std::uint16_t v;
        std::memcpy(&v, at, 2);
        return v;
    }
    std::int32_t v;
    std::memcpy(&v, at, 4);
    return v;
}

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
    // Index values in the narrowest dtype that holds `largest` (≥ every value).
    static StoredTensor indices(std::vector<std::int64_t> shape,
                                const std::vector<std::int32_t>& values, std::int64_t largest);
    // fp32 values stored as F16 (rounded to nearest even).
    static StoredTensor f16(std::vector<std::int64_t> shape, const std::vector<float>& values);

    template <typename T> T at(std::size_t index) const {
        T value;
        std::memcpy(&value, bytes.data() + index * sizeof(T), sizeof(T));
        return value;
    }
    float f16At(std::size_t index) const;
    std::int64_t indexAt(std::size_t index) const; // an index array's element
    std::size_t count() const;
};

} // namespace quantlens
