#pragma once

#include <nlohmann/json.hpp>

#include <cstdint>
#include <cstring>
#include <filesystem>
#include <functional>
#include <optional>
#include <string>
#include <utility>
#include <vector>

namespace quantlens::test {

// A safetensors file taken apart so a test can damage it on purpose: the header as JSON and the
// data section as bytes. Writing it back can also lie about the header length.
struct SafetensorsParts {
    nlohmann::json header;
    std::string data;
};

SafetensorsParts readSafetensorsParts(const std::filesystem::path& file);

// A safetensors file as raw parts, with tensors fetched by name: read by hand, independently of
// the engine's reader, to check what a writer wrote.
struct RawFile {
    SafetensorsParts parts;
    explicit RawFile(const std::filesystem::path& file) : parts(readSafetensorsParts(file)) {}
    bool has(const std::string& name) const { return parts.header.contains(name); }
    std::string dtype(const std::string& name) const { return parts.header[name]["dtype"]; }
    std::vector<std::int64_t> shape(const std::string& name) const {
        return parts.header[name]["shape"].get<std::vector<std::int64_t>>();
    }
    std::size_t bytes(const std::string& name) const {
        const auto& offsets = parts.header[name]["data_offsets"];
        return offsets[1].get<std::size_t>() - offsets[0].get<std::size_t>();
    }
    template <typename T> std::vector<T> values(const std::string& name) const {
        const auto begin = parts.header[name]["data_offsets"][0].get<std::size_t>();
        std::vector<T> out(bytes(name) / sizeof(T));
        if (!out.empty()) std::memcpy(out.data(), parts.data.data() + begin, bytes(name));
        return out;
    }
};
void writeSafetensorsParts(const std::filesystem::path& file, const SafetensorsParts& parts,
                           std::optional<std::uint64_t> claimedHeaderLength = std::nullopt);

// Copies a model directory's files (flat) into `destination`, which is created.
void copyModelDirectory(const std::filesystem::path& source,
                        const std::filesystem::path& destination);

// Rewrites every tensor of `parts` through `convert` (name, dtype and bytes in; dtype and bytes
// out, shape kept), laying the data out anew; __metadata__ is kept.
using TensorConversion = std::function<std::pair<std::string, std::string>(
    const std::string& name, const std::string& dtype, const std::string& bytes)>;
void convertTensors(SafetensorsParts& parts, const TensorConversion& convert);

// Copies a model directory with every F32 tensor of model.safetensors stored as F16 instead
// (rounded to nearest even by the compiler's own _Float16 conversion, independent of the engine).
void copyModelAsF16(const std::filesystem::path& source, const std::filesystem::path& destination);

// Reads, edits and rewrites a JSON file in place.
void editJsonFile(const std::filesystem::path& file,
                  const std::function<void(nlohmann::json&)>& edit);

} // namespace quantlens::test
