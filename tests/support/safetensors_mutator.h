#pragma once

#include <nlohmann/json.hpp>

#include <cstdint>
#include <filesystem>
#include <functional>
#include <optional>
#include <string>
#include <utility>

namespace quantlens::test {

// A safetensors file taken apart so a test can damage it on purpose: the header as JSON and the
// data section as bytes. Writing it back can also lie about the header length.
struct SafetensorsParts {
    nlohmann::json header;
    std::string data;
};

SafetensorsParts readSafetensorsParts(const std::filesystem::path& file);
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
