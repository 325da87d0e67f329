#include "quantlens/encoding/stored_tensor.h"

#include "quantlens/core/dtype.h"
#include "quantlens/core/error.h"

#include <limits>

namespace quantlens {

const char* indexDtype(std::int64_t largest) {
    if (largest <= std::numeric_limits<std::uint8_t>::max()) return "U8";
    if (largest <= std::numeric_limits<std::uint16_t>::max()) return "U16";
    return "I32";
}

int indexBytes(const std::string& dtype) {
    if (dtype == "U8") return 1;
    if (dtype == "U16") return 2;
    if (dtype == "I32") return 4;
    return 0;
}

StoredTensor StoredTensor::indices(std::vector<std::int64_t> shape,
                                   const std::vector<std::int32_t>& values, std::int64_t largest) {
    const char* dtype = indexDtype(largest);
    const int bytes = indexBytes(dtype);
    StoredTensor t{dtype, std::move(shape), std::vector<std::uint8_t>(values.size() * bytes)};
    for (std::size_t i = 0; i < values.size(); ++i)
        std::memcpy(t.bytes.data() + i * bytes, &values[i], bytes); // little-endian low bytes
    return t;
}

StoredTensor StoredTensor::f16(std::vector<std::int64_t> shape, const std::vector<float>& values) {
    std::vector<std::uint16_t> bits(values.size());
    for (std::size_t i = 0; i < values.size(); ++i)
        bits[i] = floatToF16(values[i]);
    return of("F16", std::move(shape), bits);
}

float StoredTensor::f16At(std::size_t index) const {
    return f16ToFloat(at<std::uint16_t>(index));
}

std::int64_t StoredTensor::indexAt(std::size_t index) const {
    const int width = indexBytes(dtype);
    if (width == 0) throw Error("", "tensor of dtype " + dtype + " is not an index array");
    return loadIndex(bytes.data(), width, index);
}

std::size_t StoredTensor::count() const {
    std::size_t n = 1;
    for (std::int64_t d : shape)
        n *= static_cast<std::size_t>(d);
    return n;
}

} // namespace quantlens
