#pragma once

#include "quantlens/core/time_left.h"

#include <chrono>
#include <string>

// A one-line progress bar on stderr, drawn only when stderr is a terminal so that logs and pipes
// stay clean. Redraws at most ten times a second.
class ProgressBar {
public:
    ProgressBar();
    ~ProgressBar();
    void update(double fraction, const std::string& stage);

private:
    bool enabled_ = false;
    bool drawn_ = false;
    std::chrono::steady_clock::time_point start_;
    std::chrono::steady_clock::time_point lastDraw_;
    quantlens::TimeLeft timeLeft_;
};
