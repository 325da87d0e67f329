#pragma once

#include <optional>

namespace quantlens {

// The time a job has left, from its progress reports: the rate since its first report, so that a
// job resumed part-way (a quantization continuing after its last complete block) is estimated
// from the work it does, not from the work an earlier run did.
class TimeLeft {
public:
    // Seconds left at `fraction` (0…1 of the whole job), `elapsedSeconds` after the job started;
    // none until 1% of the job has been done since the first report.
    std::optional<double> update(double fraction, double elapsedSeconds);

private:
    std::optional<double> firstFraction_, firstElapsed_;
};

} // namespace quantlens
