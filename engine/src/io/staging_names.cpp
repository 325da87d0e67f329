#include "io/staging_names.h"

#include <atomic>
#include <cerrno>
#include <csignal>
#include <unistd.h>

namespace quantlens {
namespace {

namespace fs = std::filesystem;

fs::path directoryOf(const fs::path& target) {
    return target.parent_path().empty() ? fs::path(".") : target.parent_path();
}

std::string prefixOf(const fs::path& target) {
    // Built by appending: GCC 12 warns falsely (-Wrestrict) on "." + std::string.
    std::string prefix = ".";
    prefix += target.filename().string();
    prefix += ".tmp.";
    return prefix;
}

} // namespace

fs::path stagingPath(const fs::path& target) {
    static std::atomic<unsigned> counter{0};
    std::string name = prefixOf(target);
    name += std::to_string(::getpid());
    name += '.';
    name += std::to_string(counter++);
    return directoryOf(target) / name;
}

void removeAbandonedStaging(const fs::path& target) {
    const std::string prefix = prefixOf(target);
    std::error_code error;
    for (const fs::directory_entry& entry : fs::directory_iterator(directoryOf(target), error)) {
        const std::string name = entry.path().filename().string();
        if (!name.starts_with(prefix)) continue;
        const std::string rest = name.substr(prefix.size()); // "<pid>.<n>"
        const std::size_t dot = rest.find('.');
        if (dot == 0 || dot == std::string::npos) continue;
        pid_t pid = 0;
        try {
            pid = static_cast<pid_t>(std::stol(rest.substr(0, dot)));
        } catch (const std::exception&) {
            continue;
        }
        // Only a process that certainly no longer exists; a live one (or one we may not signal)
        // may still be writing.
        if (pid <= 0 || ::kill(pid, 0) == 0 || errno != ESRCH) continue;
        std::error_code ignored;
        fs::remove_all(entry.path(), ignored);
    }
}

} // namespace quantlens
