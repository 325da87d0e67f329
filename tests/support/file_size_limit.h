#pragma once

#include <cstddef>
#include <functional>
#include <string>

namespace quantlens::test {

// Runs `body` in a forked child whose files may not grow past `bytes` (RLIMIT_FSIZE, with SIGXFSZ
// ignored, so write() fails with EFBIG as on a full disk) and returns what the child reported:
// the string `body` returned, or a sentence saying it died. The parent's files and limits are
// untouched.
std::string inChildWithFileSizeLimit(std::size_t bytes, const std::function<std::string()>& body);

} // namespace quantlens::test
