#include "quantlens/core/time_left.h"

#include <algorithm>

namespace quantlens {

std::optional<double> TimeLeft::update(double fraction, double elapsedSeconds) {
    fraction = std::clamp(fraction, 0.0, 1.0);
    if (!firstFraction_) {
        firstFraction_ = fraction;
        firstElapsed_ = elapsedSeconds;
    }
    const double done = fraction - *firstFraction_;
    if (done < 0.01) return std::nullopt;
    return (elapsedSeconds - *firstElapsed_) / done * (1.0 - fraction);
}

} // namespace quantlens
