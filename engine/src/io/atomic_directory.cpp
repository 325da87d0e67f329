#include "quantlens/io/atomic_directory.h"

#include "io/staging_names.h"
#include "quantlens/core/error.h"

#include <cerrno>
#include <cstdio>
#include <cstring>
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

namespace quantlens {
namespace {

namespace fs = std::filesystem;

std::string errnoText() {
    return std::strerror(errno);
}

// Refuses targets that are not a previous checkpoint (see the header).
void requireReplaceable(const fs::path& target) {
    std::error_code error;
    const fs::file_status status = fs::symlink_status(target, error);
    if (!fs::exists(status)) return;
    if (!fs::is_directory(status))
        throw Error(target.string(), "exists and is not a directory; refusing to replace it");
    if (!fs::is_empty(target, error) && !fs::exists(target / "config.json", error))
        throw Error(target.string(), "exists and holds no config.json (not a model checkpoint); "
                                     "refusing to replace it");
}

void syncPath(const fs::path& path, int flags) {
    const int fd = ::open(path.c_str(), flags | O_CLOEXEC);
    if (fd < 0) throw Error(path.string(), "cannot open to sync: " + errnoText());
    const int result = ::fsync(fd);
    const std::string text = errnoText();
    ::close(fd);
    if (result != 0) throw Error(path.string(), "write failed: " + text);
}

} // namespace

AtomicDirectory::AtomicDirectory(const fs::path& target) : target_(target) {
    if (target_.filename().empty()) target_ = target_.parent_path(); // "out/" names "out"
    requireReplaceable(target_);
    const fs::path parent = target_.parent_path().empty() ? fs::path(".") : target_.parent_path();
    std::error_code error;
    fs::create_directories(parent, error);
    if (error)
        throw Error(parent.string(),
                    "cannot create the output's parent directory: " + error.message());
    removeAbandonedStaging(target_);
    for (int attempt = 0; attempt < 100; ++attempt) {
        staging_ = stagingPath(target_);
        if (::mkdir(staging_.c_str(), 0777) == 0) return;
        if (errno != EEXIST) break;
    }
    const std::string text = errnoText();
    staging_.clear();
    throw Error(target_.string(),
                "cannot create a staging directory in " + parent.string() + ": " + text);
}

AtomicDirectory::~AtomicDirectory() {
    if (committed_ || staging_.empty()) return;
    std::error_code ignored; // a destructor cannot report; the directory is hidden and temporary
    fs::remove_all(staging_, ignored);
}

Error AtomicDirectory::attributed(const Error& error) const {
    const std::string staging = staging_.string();
    const std::string& source = error.source();
    if (staging.empty() || source.compare(0, staging.size(), staging) != 0) return error;
    return Error(target_.string() + source.substr(staging.size()), error.message());
}

void AtomicDirectory::commit() {
    if (committed_) throw Error(target_.string(), "committed twice");
    for (const fs::directory_entry& entry : fs::directory_iterator(staging_))
        if (entry.is_regular_file()) syncPath(entry.path(), O_RDONLY);
    syncPath(staging_, O_RDONLY | O_DIRECTORY);
    requireReplaceable(target_);

    std::error_code error;
    const bool replacing = fs::exists(fs::symlink_status(target_, error));
    if (!replacing) {
        if (::rename(staging_.c_str(), target_.c_str()) != 0)
            throw Error(target_.string(),
                        "cannot move the written directory into place: " + errnoText());
    } else {
        // One atomic swap: readers see the old checkpoint or the new one, never a mixture.
        if (::renameat2(AT_FDCWD, staging_.c_str(), AT_FDCWD, target_.c_str(), RENAME_EXCHANGE) !=
            0)
            throw Error(target_.string(), "cannot replace the existing directory: " + errnoText());
        committed_ = true; // staging_ now holds the old checkpoint
        fs::remove_all(staging_, error);
        if (error)
            throw Error(staging_.string(),
                        "replaced " + target_.string() +
                            " but cannot remove its old contents here: " + error.message());
    }
    committed_ = true;
    const fs::path parent = target_.parent_path().empty() ? fs::path(".") : target_.parent_path();
    syncPath(parent, O_RDONLY | O_DIRECTORY);
}

} // namespace quantlens
