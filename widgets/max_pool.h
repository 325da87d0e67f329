#pragma once

#include "quantlens/core/float_tensor.h"

#include <cstdint>
#include <vector>

// A window of a matrix reduced to tiles of tileRows × tileCols, each keeping its largest value and
// where it sits, so a heatmap of a 4096×4096 layer stays a few hundred cells per axis and never
// hides a peak (averaging would). Tiles at the window's far edges may be partial.
struct PooledTiles {
    int firstRow = 0, firstCol = 0; // the window's origin in the matrix
    int rowCount = 0, colCount = 0; // the window's extent in the matrix
    int tileRows = 1, tileCols = 1; // matrix entries per tile
    int rows = 0, cols = 0;         // tiles
    std::vector<float> max;         // [rows, cols] row-major
    std::vector<std::int64_t> at;   // flat matrix index (row · matrix cols + col) of each maximum

    float maxAt(int tileRow, int tileCol) const {
        return max[static_cast<std::size_t>(tileRow) * cols + tileCol];
    }
    std::int64_t argmaxAt(int tileRow, int tileCol) const {
        return at[static_cast<std::size_t>(tileRow) * cols + tileCol];
    }
};

// Matrix entries per tile so that `extent` entries make at most `maxTiles` tiles.
int tileSizeFor(int extent, int maxTiles);

// Max-pools values[firstRow…firstRow+rowCount, firstCol…firstCol+colCount); the first of equal
// maxima wins. The window must lie inside the matrix.
PooledTiles maxPool(const quantlens::RowMatrix& values, int firstRow, int firstCol, int rowCount,
                    int colCount, int tileRows, int tileCols);
