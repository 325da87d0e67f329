#pragma once

#include "quantlens/core/float_tensor.h"
#include "quantlens/encoding/quant_config.h"
#include "quantlens/encoding/stored_tensor.h"

#include <map>
#include <string>

namespace quantlens {

// One compressed linear layer W [rows = out, cols = in], as the arrays that are stored (see
// docs/FORMAT.md): packed codes, statistics, outliers in CSR, permutation. dequantize() rebuilds W
// from those arrays alone, so what is reported is exactly what is kept.
struct QuantizedLayer {
    QuantConfig config;
    int rows = 0;
    int cols = 0;
    std::map<std::string, StoredTensor> tensors;
    std::int64_t outlierCount = 0;

    std::size_t storedBytes() const;
    double bitsPerParameter() const; // from storedBytes()
    // The paper's accounting: RTN/GPTQ wbits + 32/g; SpQR wbits + (2·qq)/β1 + 64/(β1·β2)
    // + 32·outlier fraction; SqueezeLLM wbits + 16·2^wbits/cols + 32·sparse fraction. Partial last
    // groups count as whole groups.
    double paperBitsPerParameter() const;
    double outlierFraction() const {
        return static_cast<double>(outlierCount) / (double(rows) * cols);
    }

    RowMatrix dequantize() const;
};

} // namespace quantlens
