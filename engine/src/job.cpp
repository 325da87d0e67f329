#include "quantlens/job.h"

#include "quantlens/error.h"

namespace quantlens {

void JobContext::checkpoint() const {
    if (cancelRequested()) throw Cancelled();
}

void JobContext::report(double fraction, const std::string& stage) const {
    if (progress_) progress_(fraction, stage);
}

} // namespace quantlens
