#pragma once

#include <atomic>
#include <functional>
#include <string>

namespace quantlens {

// What every engine job receives: where to report progress and when to stop. Jobs call
// checkpoint() at least every 100 ms of work; it throws Cancelled once cancel is requested.
class JobContext {
public:
    using ProgressFn = std::function<void(double fraction, const std::string& stage)>;

    JobContext() = default;
    explicit JobContext(ProgressFn progress) : progress_(std::move(progress)) {}

    void requestCancel() { cancelled_.store(true); }
    bool cancelRequested() const;

    void checkpoint() const;
    void report(double fraction, const std::string& stage) const;

private:
    ProgressFn progress_;
    std::atomic<bool> cancelled_{false};
};

// Cancels every job of the process, now and later: for a SIGINT/SIGTERM handler (async-signal-safe,
// a lock-free atomic store), so an interrupted command unwinds and its atomic writes leave nothing.
void cancelAllJobs();

} // namespace quantlens
