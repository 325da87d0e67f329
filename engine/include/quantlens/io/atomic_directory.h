#pragma once

#include "quantlens/core/error.h"

#include <filesystem>

namespace quantlens {

// Builds an output directory (a model checkpoint) so that it appears whole or not at all. Files
// are written into a staging directory beside the target (path()); commit() fsyncs them and moves
// the staging directory into place in one rename — an existing target is swapped out atomically
// (renameat2 RENAME_EXCHANGE) and then removed, so it is never half-overwritten. Destroyed
// without commit() (an error, a cancel, a full disk), it removes the staging directory and leaves
// any existing target untouched.
//
// An existing target is only replaced when it is a directory that is empty or holds a
// config.json (an earlier checkpoint); anything else is refused, so a mistyped --out cannot
// delete unrelated files.
class AtomicDirectory {
public:
    explicit AtomicDirectory(const std::filesystem::path& target);
    ~AtomicDirectory();
    AtomicDirectory(const AtomicDirectory&) = delete;
    AtomicDirectory& operator=(const AtomicDirectory&) = delete;

    // The staging directory to write into.
    const std::filesystem::path& path() const { return staging_; }
    const std::filesystem::path& target() const { return target_; }
    void commit();

    // An error from a file inside the staging directory, attributed to the same file in the
    // target ("out/.out.tmp.7.0/model.safetensors" reads "out/model.safetensors"): what the user
    // named. Other errors come back unchanged.
    Error attributed(const Error& error) const;

private:
    std::filesystem::path target_;
    std::filesystem::path staging_;
    bool committed_ = false;
};

} // namespace quantlens
