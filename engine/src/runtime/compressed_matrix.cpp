#include "quantlens/runtime/compressed_matrix.h"

#include "quantlens/core/dtype.h"
#include "quantlens/core/error.h"
#include "quantlens/encoding/bit_packing.h"
#include "quantlens/runtime/compressed_kernels.h"

#include <cmath>
#include <set>
#include <vector>

namespace quantlens {
namespace {

template <class... Ts> struct Overloaded : Ts... { using Ts::operator()...; };
template <class... Ts> Overloaded(Ts...) -> Overloaded<Ts...>;

std::string shapeText(const std::vector<std::int64_t>& shape) {
    std::string text = "[";
    for (std::size_t i = 0; i < shape.size(); ++i)
        text += (i ? ", " : "") + std::to_string(shape[i]);
    return text + "]";
}

// Validation of one layer's arrays; every error names the file and the tensor.
class LayerChecker {
public:
    LayerChecker(const QuantConfig& config, const LayerArrays& arrays)
        : arrays_(arrays), method_(methodName(config)) {
        if (!arrays.empty()) {
            file_ = arrays.begin()->second.file;
            const std::string& name = arrays.begin()->second.name;
            prefix_ = name.substr(0, name.size() - arrays.begin()->first.size() - 1);
        }
    }

    Error fail(const RawTensorView& t, const std::string& problem) const {
        return Error(t.file, "tensor '" + t.name + "' " + problem);
    }

    // The array `key`, which must exist with one of `dtypes` and exactly `shape`.
    const RawTensorView& require(const std::string& key, std::initializer_list<const char*> dtypes,
                                 const std::vector<std::int64_t>& shape) {
        const auto it = arrays_.find(key);
        if (it == arrays_.end())
            throw Error(file_, "layer '" + prefix_ + "' (" + method_ + ") has no tensor '" +
                                   prefix_ + "." + key + "'");
        used_.insert(key);
        const RawTensorView& t = it->second;
        bool dtypeOk = false;
        std::string allowed;
        for (const char* d : dtypes) {
            dtypeOk = dtypeOk || t.dtype == d;
            allowed += (allowed.empty() ? "" : " or ") + std::string(d);
        }
        if (!dtypeOk) throw fail(t, "has dtype " + t.dtype + " but must be " + allowed);
        if (t.shape != shape)
            throw fail(t, "has shape " + shapeText(t.shape) + " but must be " + shapeText(shape) +
                              " for a " + method_ + " layer of " + std::to_string(shape_[0]) + "×" +
                              std::to_string(shape_[1]));
        return t;
    }

    bool has(const std::string& key) const { return arrays_.count(key) != 0; }
    const RawTensorView& tensor(const std::string& key) const { return arrays_.at(key); }

    // Arrays the format does not define for this method are rejected: they would be silently
    // ignored otherwise (and counted in no bit budget).
    void rejectUnused() const {
        for (const auto& [key, t] : arrays_)
            if (!used_.count(key)) throw fail(t, "is not part of a " + method_ + " layer");
    }

    void setShape(int rows, int cols) { shape_ = {rows, cols}; }

    // Bits past the last code of each row must be zero: set bits mean the codes were written
    // with another width or the words are corrupt.
    void requirePaddingClear(const RawTensorView& t, std::int64_t rows, std::int64_t rowLength,
                             int bits, const char* what) const {
        const std::size_t words = wordsPerRow(static_cast<std::size_t>(rowLength), bits);
        const std::size_t used = static_cast<std::size_t>(rowLength) * bits;
        if (used % 32 == 0) return;
        const std::uint32_t mask = ~((1u << (used % 32)) - 1u);
        for (std::int64_t r = 0; r < rows; ++r)
            if (loadStored<std::uint32_t>(t.data, r * words + words - 1) & mask)
                throw fail(t, std::string("has codes out of range: row ") + std::to_string(r) +
                                  " has bits set past its " + std::to_string(rowLength) + " " +
                                  std::to_string(bits) + "-bit " + what);
    }

    void requireFiniteF16(const RawTensorView& t) const {
        const std::size_t count = t.size / 2;
        for (std::size_t i = 0; i < count; ++i)
            if (!std::isfinite(f16ToFloat(loadStored<std::uint16_t>(t.data, i))))
                throw fail(t, "holds a non-finite value at element " + std::to_string(i));
    }

private:
    const LayerArrays& arrays_;
    std::string method_;
    std::string file_;
    std::string prefix_;
    std::set<std::string> used_;
    std::vector<std::int64_t> shape_{0, 0};
};

// An index array (docs/FORMAT.md: U8, U16 or I32) of `shape`.
// Version 1 checkpoints stored I32 row pointers and U16 columns and permutations, which this
// accepts too.
IndexView requireIndices(LayerChecker& check, const std::string& key,
                         const std::vector<std::int64_t>& shape) {
    const auto& t = check.require(key, {"U8", "U16", "I32"}, shape);
    return IndexView{t.data, indexBytes(t.dtype)};
}

IndexView checkPermutation(LayerChecker& check, int cols) {
    const IndexView perm = requireIndices(check, "perm", {cols});
    const RawTensorView& t = check.tensor("perm");
    std::vector<bool> seen(static_cast<std::size_t>(cols), false);
    for (int j = 0; j < cols; ++j) {
        const std::int64_t c = perm[j];
        if (c < 0 || c >= cols)
            throw check.fail(t, "is not a permutation: entry " + std::to_string(j) + " is " +
                                    std::to_string(c) + ", outside [0, " + std::to_string(cols) +
                                    ")");
        if (seen[static_cast<std::size_t>(c)])
            throw check.fail(t, "is not a permutation: column " + std::to_string(c) +
                                    " appears twice");
        seen[static_cast<std::size_t>(c)] = true;
    }
    return perm;
}

CsrOutliers checkOutliers(LayerChecker& check, int rows, int cols) {
    const IndexView rowPtr = requireIndices(check, "outlier_row_ptr", {rows + 1});
    const RawTensorView& rowPtrTensor = check.tensor("outlier_row_ptr");
    const std::int64_t first = rowPtr[0];
    if (first != 0)
        throw check.fail(rowPtrTensor, "must start at 0 but starts at " + std::to_string(first));
    for (int r = 0; r < rows; ++r) {
        const std::int64_t begin = rowPtr[r], end = rowPtr[r + 1];
        if (end < begin)
            throw check.fail(rowPtrTensor, "row pointers are not monotone: row " +
                                               std::to_string(r) + " ends at " +
                                               std::to_string(end) + ", before it begins at " +
                                               std::to_string(begin));
    }
    const std::int64_t nnz = rowPtr[rows];
    const IndexView columns = requireIndices(check, "outlier_cols", {nnz});
    const RawTensorView& columnsTensor = check.tensor("outlier_cols");
    const auto& values = check.require("outlier_values", {"F16"}, {nnz});
    CsrOutliers csr{rowPtr, columns, values.data, nnz};
    for (int r = 0; r < rows; ++r) {
        int previous = -1;
        for (std::int64_t k = csr.rowBegin(r); k < csr.rowBegin(r + 1); ++k) {
            const std::int64_t c = columns[k];
            if (c < 0 || c >= cols)
                throw check.fail(columnsTensor, "has column index " + std::to_string(c) +
                                                    " (entry " + std::to_string(k) + ", row " +
                                                    std::to_string(r) + ") outside [0, " +
                                                    std::to_string(cols) + ")");
            if (c <= previous)
                throw check.fail(columnsTensor, "columns of row " + std::to_string(r) +
                                                    " are not increasing (" + std::to_string(c) +
                                                    " after " + std::to_string(previous) + ")");
            previous = static_cast<int>(c);
        }
    }
    check.requireFiniteF16(values);
    return csr;
}

} // namespace

float CsrOutliers::value(std::int64_t k) const {
    return f16ToFloat(loadStored<std::uint16_t>(values, static_cast<std::size_t>(k)));
}

CompressedMatrix compressedMatrix(const QuantConfig& config, int rows, int cols,
                                  const LayerArrays& arrays) {
    validate(config);
    LayerChecker check(config, arrays);
    check.setShape(rows, cols);
    CompressedMatrix m;
    m.rows = rows;
    m.cols = cols;
    m.wbits = weightBits(config);
    m.groupsize = statisticsGroupsize(config, cols);
    m.groups = (cols + m.groupsize - 1) / m.groupsize;
    const std::int64_t words = static_cast<std::int64_t>(wordsPerRow(std::size_t(cols), m.wbits));
    const auto& codes = check.require("codes", {"U32"}, {rows, words});
    check.requirePaddingClear(codes, rows, cols, m.wbits, "codes");
    m.codes = codes.data;
    m.codeRowBytes = static_cast<std::size_t>(words) * 4;

    bool actOrder = false;
    std::visit(
        Overloaded{[&](const SqueezeConfig&) {
                       m.grid = CompressedMatrix::Grid::Lut;
                       const auto& lut = check.require("lut", {"F16"}, {rows, 1 << m.wbits});
                       check.requireFiniteF16(lut);
                       m.lut = lut.data;
                   },
                   [&](const SpqrConfig& c) {
                       m.grid = CompressedMatrix::Grid::Spqr;
                       m.qqBits = c.qqBits;
                       m.statsGroupsize = c.statsGroupsize;
                       m.rowGroups = (rows + c.statsGroupsize - 1) / c.statsGroupsize;
                       const std::int64_t statWords =
                           static_cast<std::int64_t>(wordsPerRow(std::size_t(rows), c.qqBits));
                       m.statCodeRowBytes = static_cast<std::size_t>(statWords) * 4;
                       for (const char* name : {"scale", "zero"}) {
                           const std::string key = name;
                           const auto& codesOf =
                               check.require(key + "_codes", {"U32"}, {m.groups, statWords});
                           check.requirePaddingClear(codesOf, m.groups, rows, c.qqBits,
                                                     "second-level codes");
                           const auto& stats =
                               check.require(key + "_stats", {"F16"}, {m.groups, m.rowGroups, 2});
                           check.requireFiniteF16(stats);
                           (key == "scale" ? m.scaleCodes : m.zeroCodes) = codesOf.data;
                           (key == "scale" ? m.scaleStats : m.zeroStats) = stats.data;
                       }
                       actOrder = c.actOrder;
                   },
                   [&](const auto& c) { // RTN, GPTQ
                       m.grid = CompressedMatrix::Grid::Affine;
                       const auto& scales = check.require("scales", {"F16"}, {rows, m.groups});
                       const auto& zeros = check.require("zeros", {"F16"}, {rows, m.groups});
                       check.requireFiniteF16(scales);
                       const int maxCode = (1 << m.wbits) - 1;
                       for (std::size_t i = 0; i < zeros.size / 2; ++i) {
                           const float z = f16ToFloat(loadStored<std::uint16_t>(zeros.data, i));
                           if (!(z >= 0.0f && z <= float(maxCode)) || z != std::nearbyint(z))
                               throw check.fail(zeros, "holds zero point " + std::to_string(z) +
                                                           " at element " + std::to_string(i) +
                                                           ", not an integer code in [0, " +
                                                           std::to_string(maxCode) + "]");
                       }
                       m.scales = scales.data;
                       m.zeros = zeros.data;
                       if constexpr (std::is_same_v<std::decay_t<decltype(c)>, GptqConfig>)
                           actOrder = c.actOrder;
                   }},
        config);
    // SpQR's outliers and SqueezeLLM's sparse values are stored only when a layer has some.
    const bool outliers =
        check.has("outlier_row_ptr") || check.has("outlier_cols") || check.has("outlier_values");
    if (outliers && m.grid != CompressedMatrix::Grid::Affine)
        m.outliers = checkOutliers(check, rows, cols);
    if (actOrder) {
        m.perm = checkPermutation(check, cols);
    }
    check.rejectUnused();
    m.kernel = kernelLayout(m);
    return m;
}

LayerArrays layerArrays(const QuantizedLayer& layer, const std::string& prefix,
                        const std::string& source) {
    LayerArrays arrays;
    for (const auto& [key, t] : layer.tensors)
        arrays[key] = RawTensorView{prefix + "." + key,
                                    t.dtype,
                                    t.shape,
                                    reinterpret_cast<const std::byte*>(t.bytes.data()),
                                    t.bytes.size(),
                                    source};
    return arrays;
}

} // namespace quantlens
