#include "quantlens/core/tensor_view.h"

namespace quantlens {

std::int64_t TensorView::elementCount() const {
    std::int64_t count = 1;
    for (std::int64_t d : shape)
        count *= d;
    return count;
}

std::string TensorView::shapeString() const {
    std::string text = "[";
    for (std::size_t i = 0; i < shape.size(); ++i) {
        if (i) text += ", ";
        text += std::to_string(shape[i]);
    }
    return text + "]";
}

} // namespace quantlens
