#include "max_pool.h"

#include <algorithm>
#include <limits>

int tileSizeFor(int extent, int maxTiles) {
    return extent <= maxTiles ? 1 : (extent + maxTiles - 1) / maxTiles;
}

PooledTiles maxPool(const quantlens::RowMatrix& values, int firstRow, int firstCol, int rowCount,
                    int colCount, int tileRows, int tileCols) {
    PooledTiles p{firstRow,
                  firstCol,
                  rowCount,
                  colCount,
                  tileRows,
                  tileCols,
                  (rowCount + tileRows - 1) / tileRows,
                  (colCount + tileCols - 1) / tileCols,
                  {},
                  {}};
    const std::size_t tiles = static_cast<std::size_t>(p.rows) * p.cols;
    p.max.assign(tiles, -std::numeric_limits<float>::infinity());
    p.at.assign(tiles, -1);
    const std::int64_t stride = values.cols();
    // Row by row, so the matrix is read in memory order.
    for (int r = 0; r < rowCount; ++r) {
        const int row = firstRow + r;
        const float* line = values.data() + row * stride;
        const std::size_t tileRow = static_cast<std::size_t>(r / tileRows) * p.cols;
        for (int t = 0; t < p.cols; ++t) {
            const std::size_t tile = tileRow + static_cast<std::size_t>(t);
            const int end = firstCol + std::min(colCount, (t + 1) * tileCols);
            for (int col = firstCol + t * tileCols; col < end; ++col)
                if (line[col] > p.max[tile] || p.at[tile] < 0) {
                    p.max[tile] = line[col];
                    p.at[tile] = row * stride + col;
                }
        }
    }
    return p;
}
