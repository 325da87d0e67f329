#pragma once

// The hidden names AtomicFile and AtomicDirectory stage under, beside their target:
// ".<target>.tmp.<pid>.<n>". A process killed before it committed (SIGKILL, a power cut) leaves
// its staging behind; the next writer of the same target removes what dead processes left.

#include <filesystem>
#include <string>

namespace quantlens {

// A fresh staging name for `target` in this process (the counter is per process).
std::filesystem::path stagingPath(const std::filesystem::path& target);

// Removes the staging files and directories of `target` whose process no longer runs.
void removeAbandonedStaging(const std::filesystem::path& target);

} // namespace quantlens
