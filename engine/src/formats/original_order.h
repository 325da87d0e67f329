#pragma once

#include "quantlens/encoding/quantized_layer.h"
#include "quantlens/runtime/compressed_matrix.h"

#include <cstdint>
#include <vector>

namespace quantlens {

// An RTN or GPTQ layer's codes in original column order and the statistics group of each original
// column: act-order layers store both in permuted order (docs/FORMAT.md), while the GPTQ and GGUF
// layouts address columns as the model does. `m` is the layer's validated view.
struct OriginalOrder {
    std::vector<std::uint16_t> codes; // [rows, cols]
    std::vector<std::int32_t> group;  // [cols]
};

OriginalOrder originalOrder(const QuantizedLayer& layer, const CompressedMatrix& m);

} // namespace quantlens
