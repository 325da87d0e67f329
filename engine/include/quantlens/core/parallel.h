#pragma once

#include <cstdint>
#include <functional>

namespace quantlens {

// The engine's one source of threads (OpenMP underneath, Eigen included).
void setThreadCount(int threads);
int threadCount();

// Runs body(i) for i in [0, count) on the engine's threads. The first exception thrown by any
// body stops the remaining iterations and is rethrown on the calling thread.
void parallelFor(std::int64_t count, const std::function<void(std::int64_t)>& body);

} // namespace quantlens
