#pragma once

#include "quantlens/encoding/quant_config.h"
#include "quantlens/encoding/quantized_layer.h"
#include "quantlens/encoding/stored_tensor.h"
#include "quantlens/io/safetensors.h"

#include <cstddef>
#include <cstdint>
#include <cstring>
#include <map>
#include <memory>
#include <string>

namespace quantlens {

// A little-endian element of a stored array at any alignment (mapped files are not aligned).
template <typename T> T loadStored(const std::byte* data, std::size_t index) {
    T value;
    std::memcpy(&value, data + index * sizeof(T), sizeof(T));
    return value;
}

// A stored index array (U8, U16 or I32; stored_tensor.h).
struct IndexView {
    const std::byte* data = nullptr;
    int bytes = 0;

    std::int64_t operator[](std::int64_t i) const {
        return loadIndex(data, bytes, static_cast<std::size_t>(i));
    }
};

// Outliers (SpQR) and sparse values (SqueezeLLM) in CSR over permuted columns — the one sparse
// layout of docs/FORMAT.md. A value replaces the decoded weight at its position.
struct CsrOutliers {
    IndexView rowPointers;             // [rows + 1]
    IndexView columns;                 // [count]
    const std::byte* values = nullptr; // F16 [count]
    std::int64_t count = 0;

    std::int64_t rowBegin(int row) const { return rowPointers[row]; }
    int column(std::int64_t k) const { return static_cast<int>(columns[k]); }
    float value(std::int64_t k) const;
};

// Arrays the fused kernels derive from the stored ones once, at load, in the order they walk them
// (compressed_kernels.h).
struct KernelLayout;

// A validated, zero-copy view of one compressed linear layer W [rows = out, cols = in]: what the
// fused kernels read. Pointers lead into the stored arrays, which must outlive the view.
struct CompressedMatrix {
    // RTN/GPTQ: fp16 scale and zero per (row, group); SpQR: the same, each quantized to qqBits
    // with fp16 second-level statistics; SqueezeLLM: a per-row fp16 lookup table.
    enum class Grid { Affine, Spqr, Lut };
    Grid grid = Grid::Affine;
    int rows = 0;
    int cols = 0;
    int wbits = 0;
    int groupsize = 0; // columns per group (Lut: cols)
    int groups = 0;

    const std::byte* codes = nullptr; // U32 words, rows of codeRowBytes
    std::size_t codeRowBytes = 0;

    const std::byte* scales = nullptr; // Affine: F16 [rows, groups]
    const std::byte* zeros = nullptr;  // Affine: F16 [rows, groups]

    int qqBits = 0;                        // Spqr
    int statsGroupsize = 0;                // Spqr: β2
    int rowGroups = 0;                     // Spqr: ceil(rows / β2)
    const std::byte* scaleCodes = nullptr; // Spqr: U32 [groups, statCodeRowBytes / 4]
    const std::byte* zeroCodes = nullptr;
    const std::byte* scaleStats = nullptr; // Spqr: F16 [groups, rowGroups, 2]
    const std::byte* zeroStats = nullptr;
    std::size_t statCodeRowBytes = 0;

    const std::byte* lut = nullptr; // Lut: F16 [rows, 2^wbits]

    CsrOutliers outliers;

    IndexView perm; // act-order only (data is null without)
    bool permuted() const { return perm.data != nullptr; }
    // The original column of permuted column j.
    int originalColumn(int j) const { return static_cast<int>(perm[j]); }

    // Built by compressedMatrix(); the only memory the view owns. Without it the portable
    // kernels run.
    std::shared_ptr<const KernelLayout> kernel;
};

// A layer's arrays by their docs/FORMAT.md names ("codes", "scales", …); each view's `name` is
// the full tensor name and its `file` the file it came from, for errors.
using LayerArrays = std::map<std::string, RawTensorView>;

// Checks the arrays of a [rows, cols] layer quantized with `config` against docs/FORMAT.md —
// which arrays exist, their dtypes and shapes, and their contents (codes within the row, integer
// zero points within the code range, a true permutation, CSR row pointers and columns, finite
// statistics) — and returns the view the kernels read, with its kernel layout. Errors name the
// file and the tensor.
CompressedMatrix compressedMatrix(const QuantConfig& config, int rows, int cols,
                                  const LayerArrays& arrays);

// Views of an in-memory layer's arrays, named `prefix`.array and attributed to `source`.
LayerArrays layerArrays(const QuantizedLayer& layer, const std::string& prefix,
                        const std::string& source);

} // namespace quantlens
