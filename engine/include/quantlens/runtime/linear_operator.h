#pragma once

#include "quantlens/core/float_tensor.h"
#include "quantlens/runtime/activations.h"

namespace quantlens {

// y = x·Wᵀ for one linear layer W [rows = out, cols = in], however W is stored: the seam between
// the forward pass and the fused compressed kernels. Dense fp32 layers never go through it; the
// Transformer keeps multiplying them with plain Eigen products.
class LinearOperator {
public:
    virtual ~LinearOperator() = default;
    virtual int rows() const = 0;
    virtual int cols() const = 0;
    // out = x · Wᵀ, or out += x · Wᵀ with `accumulate`; x is [tokens, cols()], out is resized to
    // [tokens, rows()] unless accumulating. `activations` applies to one-token products.
    virtual void apply(const RowMatrix& x, RowMatrix& out, bool accumulate,
                       Activations activations = Activations::Exact) const = 0;
};

} // namespace quantlens
