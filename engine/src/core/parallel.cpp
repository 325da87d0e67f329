#include "quantlens/core/parallel.h"

#include <Eigen/Core>
#include <atomic>
#include <exception>
#include <mutex>
#include <omp.h>

namespace quantlens {

void setThreadCount(int threads) {
    if (threads <= 0) threads = omp_get_num_procs();
    omp_set_num_threads(threads);
    Eigen::setNbThreads(threads);
}

int threadCount() {
    return omp_get_max_threads();
}

void parallelFor(std::int64_t count, const std::function<void(std::int64_t)>& body) {
    std::exception_ptr firstError;
    std::mutex errorMutex;
    std::atomic<bool> failed{false};
#pragma omp parallel for schedule(dynamic, 1)
    for (std::int64_t i = 0; i < count; ++i) {
        if (failed.load(std::memory_order_relaxed)) continue;
        try {
            body(i);
        } catch (...) {
            std::lock_guard lock(errorMutex);
            if (!firstError) firstError = std::current_exception();
            failed.store(true);
        }
    }
    if (firstError) std::rethrow_exception(firstError);
}

} // namespace quantlens
