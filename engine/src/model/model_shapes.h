#pragma once

#include "quantlens/core/error.h"
#include "quantlens/core/tensor_view.h"
#include "quantlens/io/safetensors.h"

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

// An F32/F16/BF16 tensor of a file that also holds integer arrays (a compressed checkpoint), of
// the shape the config implies; fails naming the file for a missing tensor or another dtype.
inline const TensorView& requireDenseTensor(const SafetensorsFile& file, const std::string& name,
                                            const std::vector<std::int64_t>& shape,
                                            const std::string& configSource) {
    const TensorView* view = file.find(name);
    if (!view) {
        const std::string source = file.path().string();
        if (const RawTensorView* raw = file.findRaw(name))
            throw Error(source, "tensor '" + name + "' has dtype " + raw->dtype +
                                    " but must be F32, F16 or BF16");
        throw Error(source, "missing tensor '" + name + "'");
    }
    requireShape(*view, shape, configSource);
    return *view;
}

} // namespace quantlens
