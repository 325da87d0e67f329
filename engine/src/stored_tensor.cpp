#include "quantlens/stored_tensor.h"

#include "quantlens/dtype.h"

namespace quantlens {

StoredTensor StoredTensor::f16(std::vector<std::int64_t> shape, const std::vector<float>& values) {
    std::vector<std::uint16_t> bits(values.size());
    for (std::size_t i = 0; i < values.size(); ++i)
        bits[i] = floatToF16(values[i]);
    return of("F16", std::move(shape), bits);
}

float StoredTensor::f16At(std::size_t index) const {
    return f16ToFloat(at<std::uint16_t>(index));
}

std::size_t StoredTensor::count() const {
    std::size_t n = 1;
    for (std::int64_t d : shape)
        n *= static_cast<std::size_t>(d);
    return n;
}

} // namespace quantlens
