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
    // A part of `parent`'s work: fractions 0…1 reported here are [begin, end] of the parent's, and
    // cancelling the parent stops it. `parent` must outlive it.
    JobContext(const JobContext& parent, double begin, double end)
        : parent_(&parent), begin_(begin), end_(end) {}

    void requestCancel() { cancelled_.store(true); }
    bool cancelRequested() const;

    void checkpoint() const;
    void report(double fraction, const std::string& stage) const;

private:
    ProgressFn progress_;
    std::atomic<bool> cancelled_{false};
    const JobContext* parent_ = nullptr;
    double begin_ = 0.0, end_ = 1.0;
};

// Cancels every job of the process, now and later: for a SIGINT/SIGTERM handler (async-signal-safe,
// a lock-free atomic store), so an interrupted command unwinds and its atomic writes leave nothing.
void cancelAllJobs();

} // namespace quantlens
