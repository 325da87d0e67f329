#include "quantlens/core/float_tensor.h"

#include <cstdint>

namespace quantlens {

FloatTensor::FloatTensor(const TensorView& view) {
    cols_ = view.shape.empty() ? 1 : view.shape.back();
    rows_ = cols_ == 0 ? 0 : view.elementCount() / cols_;
    const bool aligned = reinterpret_cast<std::uintptr_t>(view.data) % alignof(float) == 0;
    if (view.dtype == DType::F32 && aligned) {
        data_ = reinterpret_cast<const float*>(view.data);
        return;
    }
    owned_.resize(static_cast<std::size_t>(view.elementCount()));
    convertToFloat(view.dtype, view.data, owned_.size(), owned_.data());
    data_ = owned_.data();
}

} // namespace quantlens
