#include "quantlens/io/safetensors_writer.h"

#include "quantlens/core/error.h"
#include "quantlens/io/safetensors.h"

#include <nlohmann/json.hpp>

#include <limits>
#include <set>
#include <string_view>

namespace quantlens {
namespace {

std::string shapeText(const std::vector<std::int64_t>& shape) {
    std::string text = "[";
    for (std::size_t i = 0; i < shape.size(); ++i) {
        if (i > 0) text += ", ";
        text += std::to_string(shape[i]);
    }
    return text + "]";
}

// Checks every declared tensor and returns its byte size, before any file is created.
std::vector<std::size_t> byteSizes(const std::filesystem::path& path,
                                   const std::vector<SafetensorsWriter::TensorSpec>& tensors) {
    const std::string source = path.string();
    std::vector<std::size_t> sizes;
    std::set<std::string_view> names;
    for (const SafetensorsWriter::TensorSpec& t : tensors) {
        if (t.name == "__metadata__")
            throw Error(source, "a tensor cannot be named '__metadata__', which safetensors "
                                "reserves for the metadata");
        if (!names.insert(t.name).second)
            throw Error(source, "tensor '" + t.name + "' is declared twice");
        std::size_t size = safetensorsElementSize(t.dtype);
        if (size == 0)
            throw Error(source, "tensor '" + t.name + "' has unknown dtype '" + t.dtype + "'");
        for (const std::int64_t d : t.shape) {
            if (d < 0)
                throw Error(source, "tensor '" + t.name + "' has a negative dimension in shape " +
                                        shapeText(t.shape));
            if (d != 0 &&
                size > std::numeric_limits<std::size_t>::max() / 2 / static_cast<std::size_t>(d))
                throw Error(source, "tensor '" + t.name + "' has shape " + shapeText(t.shape) +
                                        ", too large to address");
            size *= static_cast<std::size_t>(d);
        }
        sizes.push_back(size);
    }
    return sizes;
}

// The header JSON, padded with spaces (which JSON ignores) so that the data section starts at an
// 8-byte boundary of the file, as the reference implementation does.
std::string headerText(const std::filesystem::path& path,
                       const std::vector<SafetensorsWriter::TensorSpec>& tensors,
                       const std::vector<std::size_t>& sizes,
                       const std::map<std::string, std::string>& metadata) {
    // ordered_json keeps the declaration order, so the header reads in file order.
    nlohmann::ordered_json header = nlohmann::ordered_json::object();
    if (!metadata.empty()) header["__metadata__"] = metadata;
    std::uint64_t offset = 0;
    for (std::size_t i = 0; i < tensors.size(); ++i) {
        header[tensors[i].name] = {{"dtype", tensors[i].dtype},
                                   {"shape", tensors[i].shape},
                                   {"data_offsets", {offset, offset + sizes[i]}}};
        offset += sizes[i];
    }
    std::string text;
    try {
        text = header.dump();
    } catch (const nlohmann::json::exception& e) {
        throw Error(path.string(),
                    std::string("a tensor name or metadata entry is not valid UTF-8: ") + e.what());
    }
    text.append((8 - text.size() % 8) % 8, ' ');
    return text;
}

} // namespace

SafetensorsWriter::SafetensorsWriter(const std::filesystem::path& path,
                                     std::vector<TensorSpec> tensors,
                                     const std::map<std::string, std::string>& metadata)
    : path_(path), tensors_(std::move(tensors)), sizes_(byteSizes(path_, tensors_)), file_(path) {
    const std::string header = headerText(path_, tensors_, sizes_, metadata);
    unsigned char length[8];
    for (int i = 0; i < 8; ++i) // little-endian, whatever the host
        length[i] =
            static_cast<unsigned char>(static_cast<std::uint64_t>(header.size()) >> (8 * i));
    file_.write(length, sizeof length);
    file_.write(header.data(), header.size());
}

void SafetensorsWriter::write(const std::string& name, const void* data, std::size_t size) {
    const std::string source = path_.string();
    if (failed_)
        throw Error(source,
                    "cannot write tensor '" + name + "': an earlier write to this file failed");
    if (next_ == tensors_.size())
        throw Error(source, "tensor '" + name + "' written after all " +
                                std::to_string(tensors_.size()) + " declared tensors");
    const TensorSpec& expected = tensors_[next_];
    if (name != expected.name) {
        bool declared = false;
        for (const TensorSpec& t : tensors_)
            declared = declared || t.name == name;
        throw Error(source, "tensor '" + name + "' " +
                                (declared ? "written out of order" : "was never declared") +
                                ": the next tensor must be '" + expected.name + "' (" +
                                std::to_string(next_ + 1) + " of " +
                                std::to_string(tensors_.size()) + ")");
    }
    if (size != sizes_[next_])
        throw Error(source, "tensor '" + name + "' is given " + std::to_string(size) +
                                " bytes, but its shape " + shapeText(expected.shape) + " of " +
                                expected.dtype + " needs " + std::to_string(sizes_[next_]));
    try {
        file_.write(data, size);
    } catch (const Error& e) {
        failed_ = true;
        throw Error(e.source(), e.message() + " (while writing tensor '" + name + "')");
    }
    ++next_;
}

void SafetensorsWriter::commit() {
    const std::string source = path_.string();
    if (failed_) throw Error(source, "cannot commit: an earlier write to this file failed");
    if (next_ != tensors_.size())
        throw Error(source, "cannot commit: only " + std::to_string(next_) + " of " +
                                std::to_string(tensors_.size()) +
                                " declared tensors were written; the next one is '" +
                                tensors_[next_].name + "'");
    file_.commit();
}

} // namespace quantlens
