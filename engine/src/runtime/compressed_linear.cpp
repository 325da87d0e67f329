#include "quantlens/runtime/compressed_linear.h"

#include "quantlens/core/error.h"
#include "quantlens/runtime/compressed_kernels.h"

namespace quantlens {

CompressedLinear::CompressedLinear(QuantConfig config, int rows, int cols, LayerArrays arrays,
                                   std::shared_ptr<const void> storage)
    : config_(std::move(config)), arrays_(std::move(arrays)), storage_(std::move(storage)),
      matrix_(compressedMatrix(config_, rows, cols, arrays_)) {}

std::shared_ptr<const CompressedLinear>
CompressedLinear::fromLayer(std::shared_ptr<const QuantizedLayer> layer, const std::string& name,
                            const std::string& source) {
    LayerArrays arrays = layerArrays(*layer, name, source);
    const QuantConfig config = layer->config;
    const int rows = layer->rows, cols = layer->cols;
    return std::make_shared<const CompressedLinear>(config, rows, cols, std::move(arrays),
                                                    std::move(layer));
}

void CompressedLinear::apply(const RowMatrix& x, RowMatrix& out, bool accumulate,
                             Activations activations) const {
    if (x.cols() != matrix_.cols)
        throw Error("", "input of " + std::to_string(x.cols()) + " features given to a layer of " +
                            std::to_string(matrix_.cols));
    if (!accumulate) out.resize(x.rows(), matrix_.rows);
    if (out.rows() != x.rows() || out.cols() != matrix_.rows)
        throw Error("", "output of the wrong shape for a compressed layer");
    multiplyCompressed(matrix_, x.data(), x.cols(), static_cast<int>(x.rows()), out.data(),
                       out.cols(), accumulate, KernelIsa::Auto, activations);
}

std::size_t CompressedLinear::storedBytes() const {
    std::size_t bytes = 0;
    for (const auto& [key, array] : arrays_)
        bytes += array.size;
    return bytes;
}

QuantizedLayer CompressedLinear::quantizedLayer() const {
    QuantizedLayer layer;
    layer.config = config_;
    layer.rows = matrix_.rows;
    layer.cols = matrix_.cols;
    layer.outlierCount = matrix_.outliers.count;
    for (const auto& [key, array] : arrays_) {
        const auto* bytes = reinterpret_cast<const std::uint8_t*>(array.data);
        layer.tensors[key] = StoredTensor{array.dtype, array.shape, {bytes, bytes + array.size}};
    }
    return layer;
}

} // namespace quantlens
