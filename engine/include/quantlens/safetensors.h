#pragma once

#include "quantlens/mapped_file.h"
#include "quantlens/tensor_view.h"

#include <filesystem>
#include <map>
#include <string>
#include <vector>

namespace quantlens {

// One safetensors file, mapped and validated: every tensor's dtype, shape and byte range is
// checked against the file before any view is handed out.
class SafetensorsFile {
public:
    explicit SafetensorsFile(const std::filesystem::path& path);

    const std::vector<TensorView>& tensors() const { return tensors_; }
    const TensorView* find(const std::string& name) const;
    const std::map<std::string, std::string>& metadata() const { return metadata_; }
    const std::filesystem::path& path() const { return file_.path(); }

private:
    MappedFile file_;
    std::vector<TensorView> tensors_;
    std::map<std::string, std::string> metadata_;
};

// Largest header we accept; real headers are a few hundred KiB even for 70B checkpoints.
inline constexpr std::uint64_t kMaxSafetensorsHeaderBytes = 100ull << 20;

} // namespace quantlens
