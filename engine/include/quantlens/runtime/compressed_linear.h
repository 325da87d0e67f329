#pragma once

#include "quantlens/encoding/quantized_layer.h"
#include "quantlens/runtime/compressed_matrix.h"
#include "quantlens/runtime/linear_operator.h"

#include <memory>

namespace quantlens {

// A compressed linear layer run straight from its stored arrays by the fused kernels: the
// LinearOperator of a `quantlens` checkpoint's layers. The arrays are viewed in place (a mapped
// file or an in-memory QuantizedLayer) and validated once, on construction.
class CompressedLinear final : public LinearOperator {
public:
    // `storage` keeps the memory behind `arrays` alive.
    CompressedLinear(QuantConfig config, int rows, int cols, LayerArrays arrays,
                     std::shared_ptr<const void> storage);
    // An in-memory layer; `name` (e.g. "model.layers.0.self_attn.q_proj") and `source` name its
    // tensors in errors.
    static std::shared_ptr<const CompressedLinear>
    fromLayer(std::shared_ptr<const QuantizedLayer> layer, const std::string& name,
              const std::string& source = "");

    int rows() const override { return matrix_.rows; }
    int cols() const override { return matrix_.cols; }
    void apply(const RowMatrix& x, RowMatrix& out, bool accumulate,
               Activations activations = Activations::Exact) const override;

    const QuantConfig& config() const { return config_; }
    const CompressedMatrix& matrix() const { return matrix_; }
    const LayerArrays& arrays() const { return arrays_; }
    std::size_t storedBytes() const;
    // The arrays copied into a QuantizedLayer (for export and QuantizedLayer::dequantize()).
    QuantizedLayer quantizedLayer() const;

private:
    QuantConfig config_;
    LayerArrays arrays_;
    std::shared_ptr<const void> storage_;
    CompressedMatrix matrix_;
};

} // namespace quantlens
