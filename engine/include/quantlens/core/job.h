#pragma once

#include <atomic>
#include <functional>
#include <memory>
#include <string>

namespace quantlens {

class Backend; // runtime/backend.h

// What every engine job receives: where to report progress and notices, when to stop, and where
// its numeric work runs. Jobs call checkpoint() at least every 100 ms of work; it throws Cancelled
// once cancel is requested.
class JobContext {
public:
    using ProgressFn = std::function<void(double fraction, const std::string& stage)>;
    // What the user should know that does not stop the job: a device path that does not fit and
    // runs on the CPU instead, say. Called on the job's thread.
    using NoticeFn = std::function<void(const std::string& text)>;

    JobContext() = default;
    explicit JobContext(ProgressFn progress, std::shared_ptr<const Backend> backend = nullptr,
                        NoticeFn notices = nullptr)
        : progress_(std::move(progress)), notices_(std::move(notices)),
          backend_(std::move(backend)) {}
    explicit JobContext(std::shared_ptr<const Backend> backend) : backend_(std::move(backend)) {}
    // A part of `parent`'s work: fractions 0…1 reported here are [begin, end] of the parent's, and
    // cancelling the parent stops it. It runs where the parent runs. `parent` must outlive it.
    JobContext(const JobContext& parent, double begin, double end)
        : parent_(&parent), begin_(begin), end_(end) {}
    // All of `parent`'s work, run on `backend` instead: cancelled with the parent, reporting to
    // it. `parent` must outlive it.
    JobContext(const JobContext& parent, std::shared_ptr<const Backend> backend)
        : backend_(std::move(backend)), parent_(&parent) {}

    void requestCancel() { cancelled_.store(true); }
    bool cancelRequested() const;

    void checkpoint() const;
    void report(double fraction, const std::string& stage) const;
    // To this job's notice function and its parents'.
    void notice(const std::string& text) const;

    // The backend this job was given (BackendRegistry::open), else its parent's, else the CPU's.
    // Defined with the backends, in runtime/backend.cpp.
    const Backend& backend() const;

private:
    ProgressFn progress_;
    NoticeFn notices_;
    std::shared_ptr<const Backend> backend_;
    std::atomic<bool> cancelled_{false};
    const JobContext* parent_ = nullptr;
    double begin_ = 0.0, end_ = 1.0;
};

// Cancels every job of the process, now and later: for a SIGINT/SIGTERM handler (async-signal-safe,
// a lock-free atomic store), so an interrupted command unwinds and its atomic writes leave nothing.
void cancelAllJobs();

} // namespace quantlens
