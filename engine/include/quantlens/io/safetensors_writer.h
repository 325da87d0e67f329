#pragma once

#include "quantlens/io/atomic_file.h"

#include <cstdint>
#include <filesystem>
#include <map>
#include <string>
#include <vector>

namespace quantlens {

// The one safetensors writer. Every tensor's name, dtype and shape is declared up front, so the
// header is written first and the data streams after it, tensor by tensor in declaration order:
// a writer never holds more than the tensor being written. The file appears atomically at
// commit(); destroyed before that, nothing is left behind.
class SafetensorsWriter {
public:
    struct TensorSpec {
        std::string name;
        std::string dtype; // safetensors dtype name: "F32", "F16", "BF16", "U8", "I32", …
        std::vector<std::int64_t> shape;
    };

    SafetensorsWriter(const std::filesystem::path& path, std::vector<TensorSpec> tensors,
                      const std::map<std::string, std::string>& metadata = {});

    // Writes the next tensor's bytes; `name` must be the next declared tensor and `size` its size.
    void write(const std::string& name, const void* data, std::size_t size);
    void commit();

private:
    std::filesystem::path path_;
    std::vector<TensorSpec> tensors_;
    std::vector<std::size_t> sizes_;
    std::size_t next_ = 0;
    bool failed_ = false; // a write failed part-way: the file can no longer be completed
    AtomicFile file_;
};

} // namespace quantlens
