#include "progress_bar.h"

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <unistd.h>

ProgressBar::ProgressBar()
    : enabled_(::isatty(STDERR_FILENO) == 1), start_(std::chrono::steady_clock::now()) {}

ProgressBar::~ProgressBar() {
    if (drawn_) std::fputs("\r\033[K", stderr);
}

void ProgressBar::update(double fraction, const std::string& stage) {
    if (!enabled_) return;
    const auto now = std::chrono::steady_clock::now();
    const std::optional<double> remaining =
        timeLeft_.update(fraction, std::chrono::duration<double>(now - start_).count());
    if (drawn_ && fraction < 1.0 && now - lastDraw_ < std::chrono::milliseconds(100)) return;
    lastDraw_ = now;
    drawn_ = true;
    fraction = std::clamp(fraction, 0.0, 1.0);
    constexpr int width = 30;
    const int filled = static_cast<int>(fraction * width);
    const std::string eta = remaining ? std::to_string(std::lround(*remaining)) + "s" : "…";
    std::fprintf(stderr, "\r\033[K%s [%s%s] %3d%% ETA %s", stage.c_str(),
                 std::string(filled, '#').c_str(), std::string(width - filled, '-').c_str(),
                 static_cast<int>(fraction * 100.0), eta.c_str());
    std::fflush(stderr);
}
