#include "quantlens/core/job.h"

#include "quantlens/core/error.h"

namespace quantlens {

namespace {

std::atomic<bool> allJobsCancelled{false};
static_assert(std::atomic<bool>::is_always_lock_free, "cancelAllJobs() runs in signal handlers");

} // namespace

void cancelAllJobs() {
    allJobsCancelled.store(true);
}

bool JobContext::cancelRequested() const {
    return cancelled_.load() || allJobsCancelled.load() || (parent_ && parent_->cancelRequested());
}

void JobContext::checkpoint() const {
    if (cancelRequested()) throw Cancelled();
}

void JobContext::report(double fraction, const std::string& stage) const {
    if (parent_) parent_->report(begin_ + fraction * (end_ - begin_), stage);
    if (progress_) progress_(fraction, stage);
}

void JobContext::notice(const std::string& text) const {
    if (parent_) parent_->notice(text);
    if (notices_) notices_(text);
}

} // namespace quantlens
