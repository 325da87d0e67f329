#include "formats/rope_rows.h"

namespace quantlens {

std::vector<int> ropeRowOrder(int rows, int headDim, RopeLayout to) {
    std::vector<int> order(static_cast<std::size_t>(rows));
    const int half = headDim / 2;
    for (int head = 0; head < rows / headDim; ++head)
        for (int i = 0; i < half; ++i)
            for (int k = 0; k < 2; ++k) {
                const int interleaved = head * headDim + 2 * i + k;
                const int rotateHalf = head * headDim + k * half + i;
                if (to == RopeLayout::Interleaved)
                    order[static_cast<std::size_t>(interleaved)] = rotateHalf;
                else
                    order[static_cast<std::size_t>(rotateHalf)] = interleaved;
            }
    return order;
}

} // namespace quantlens
