#pragma once

#include "quantlens/core/error.h"
#include "quantlens/core/tensor_view.h"

#include <vector>

namespace quantlens {

// Fails with the file and both shapes when a stored tensor does not have the shape the config
// implies; shared by every checkpoint reader.
inline void requireShape(const TensorView& tensor, const std::vector<std::int64_t>& expected,
                         const std::string& configSource) {
    if (tensor.shape == expected) return;
    TensorView wanted;
    wanted.shape = expected;
    throw Error(tensor.file, "tensor '" + tensor.name + "' has shape " + tensor.shapeString() +
                                 " but " + configSource + " implies " + wanted.shapeString());
}

} // namespace quantlens
