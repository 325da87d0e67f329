#pragma once

#include "quantlens/core/dtype.h"

#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

namespace quantlens {

// A zero-copy view of one stored tensor: its name, element type, shape and bytes inside a mapped
// file. `file` names the file for error messages.
struct TensorView {
    std::string name;
    DType dtype = DType::F32;
    std::vector<std::int64_t> shape;
    const std::byte* data = nullptr;
    std::string file;

    std::int64_t elementCount() const;
    std::size_t byteSize() const {
        return static_cast<std::size_t>(elementCount()) * dtypeSize(dtype);
    }
    std::string shapeString() const;
};

} // namespace quantlens
