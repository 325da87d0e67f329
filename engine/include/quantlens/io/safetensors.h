#pragma once

#include "quantlens/core/tensor_view.h"
#include "quantlens/io/mapped_file.h"

#include <filesystem>
#include <map>
#include <string>
#include <string_view>
#include <vector>

namespace quantlens {

// Any stored tensor, whatever its dtype (integer arrays included): its safetensors dtype name,
// shape and bytes inside the mapped file (any alignment).
struct RawTensorView {
    std::string name;
    std::string dtype;
    std::vector<std::int64_t> shape;
    const std::byte* data = nullptr;
    std::size_t size = 0; // bytes
    std::string file;
};

// Bytes per element of a safetensors dtype name; 0 for names safetensors does not define.
std::size_t safetensorsElementSize(std::string_view dtype);

// One safetensors file, mapped and validated: every tensor's dtype, shape and byte range is
// checked against the file before any view is handed out.
class SafetensorsFile {
public:
    // The dtypes a file may hold: F32/F16/BF16 only (model weights), or any safetensors dtype
    // (compressed formats, whose integer arrays are read through rawTensors()).
    enum class DTypes { Float, Any };
    explicit SafetensorsFile(const std::filesystem::path& path, DTypes accept = DTypes::Float);

    // The F32/F16/BF16 tensors, in file order.
    const std::vector<TensorView>& tensors() const { return tensors_; }
    const TensorView* find(const std::string& name) const;
    // Every tensor, in file order.
    const std::vector<RawTensorView>& rawTensors() const { return raw_; }
    const RawTensorView* findRaw(const std::string& name) const;
    const std::map<std::string, std::string>& metadata() const { return metadata_; }
    const std::filesystem::path& path() const { return file_.path(); }

private:
    MappedFile file_;
    std::vector<TensorView> tensors_;
    std::vector<RawTensorView> raw_;
    std::map<std::string, std::string> metadata_;
};

// Largest header we accept; real headers are a few hundred KiB even for 70B checkpoints.
inline constexpr std::uint64_t kMaxSafetensorsHeaderBytes = 100ull << 20;

} // namespace quantlens
