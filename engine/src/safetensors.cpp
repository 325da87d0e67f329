#include "quantlens/safetensors.h"

#include "quantlens/error.h"

#include <nlohmann/json.hpp>

#include <algorithm>
#include <cstring>
#include <limits>

namespace quantlens {
namespace {

using nlohmann::json;

std::string describeRange(std::uint64_t begin, std::uint64_t end) {
    return "[" + std::to_string(begin) + ", " + std::to_string(end) + ")";
}

TensorView parseEntry(const std::string& source, const std::string& name, const json& entry,
                      const std::byte* data, std::uint64_t dataSize) {
    const auto fail = [&](const std::string& problem) -> Error {
        return Error(source, "tensor '" + name + "' " + problem);
    };
    if (!entry.is_object()) throw fail("is not a JSON object in the header");
    const auto dtypeIt = entry.find("dtype");
    const auto shapeIt = entry.find("shape");
    const auto offsetsIt = entry.find("data_offsets");
    if (dtypeIt == entry.end() || !dtypeIt->is_string()) throw fail("has no dtype string");
    if (shapeIt == entry.end() || !shapeIt->is_array()) throw fail("has no shape array");
    if (offsetsIt == entry.end() || !offsetsIt->is_array() || offsetsIt->size() != 2 ||
        !(*offsetsIt)[0].is_number_unsigned() || !(*offsetsIt)[1].is_number_unsigned())
        throw fail("needs data_offsets as two non-negative integers");

    const std::string dtypeText = dtypeIt->get<std::string>();
    const std::optional<DType> dtype = parseDType(dtypeText);
    if (!dtype) {
        if (isKnownSafetensorsDType(dtypeText))
            throw fail("has dtype " + dtypeText +
                       ", which Quantlens does not read (F32, F16 or BF16)");
        throw fail("has unknown dtype '" + dtypeText + "'");
    }

    TensorView view;
    view.name = name;
    view.dtype = *dtype;
    view.file = source;
    std::uint64_t elements = 1;
    for (const json& dim : *shapeIt) {
        if (!dim.is_number_unsigned())
            throw fail("has a shape entry that is not a non-negative integer");
        const std::uint64_t d = dim.get<std::uint64_t>();
        if (d != 0 && elements > std::numeric_limits<std::uint64_t>::max() / 8 / d)
            throw fail("has a shape too large to address");
        elements *= d;
        view.shape.push_back(static_cast<std::int64_t>(d));
    }

    const std::uint64_t begin = (*offsetsIt)[0].get<std::uint64_t>();
    const std::uint64_t end = (*offsetsIt)[1].get<std::uint64_t>();
    if (begin > end)
        throw fail("has data_offsets " + describeRange(begin, end) + " that end before they begin");
    if (end > dataSize)
        throw fail("has data_offsets " + describeRange(begin, end) + " past the end of the data (" +
                   std::to_string(dataSize) + " bytes)");
    const std::uint64_t expected = elements * dtypeSize(*dtype);
    if (end - begin != expected)
        throw fail("has shape " + view.shapeString() + " of " + dtypeText + " (" +
                   std::to_string(expected) + " bytes) but data_offsets span " +
                   std::to_string(end - begin) + " bytes");
    view.data = data + begin;
    return view;
}

} // namespace

SafetensorsFile::SafetensorsFile(const std::filesystem::path& path) : file_(path) {
    const std::string source = path.string();
    const std::span<const std::byte> bytes = file_.bytes();
    if (bytes.size() < 8)
        throw Error(source, "truncated: " + std::to_string(bytes.size()) +
                                " bytes is too short for a safetensors header");
    std::uint64_t headerSize = 0;
    std::memcpy(&headerSize, bytes.data(), 8);
    if (headerSize > kMaxSafetensorsHeaderBytes)
        throw Error(source, "header length " + std::to_string(headerSize) +
                                " exceeds the 100 MiB limit (corrupt or not a safetensors file)");
    if (headerSize > bytes.size() - 8)
        throw Error(source, "header length " + std::to_string(headerSize) +
                                " runs past the end of the file (" + std::to_string(bytes.size()) +
                                " bytes); the file is truncated or corrupt");

    const auto* headerBegin = reinterpret_cast<const char*>(bytes.data() + 8);
    json header;
    try {
        header = json::parse(headerBegin, headerBegin + headerSize);
    } catch (const json::exception& e) {
        throw Error(source, std::string("header is not valid JSON: ") + e.what());
    }
    if (!header.is_object()) throw Error(source, "header is not a JSON object");

    const std::byte* data = bytes.data() + 8 + headerSize;
    const std::uint64_t dataSize = bytes.size() - 8 - headerSize;
    for (const auto& [name, entry] : header.items()) {
        if (name == "__metadata__") {
            if (!entry.is_object()) throw Error(source, "__metadata__ is not a JSON object");
            for (const auto& [key, value] : entry.items()) {
                if (!value.is_string())
                    throw Error(source, "__metadata__ value of '" + key + "' is not a string");
                metadata_[key] = value.get<std::string>();
            }
            continue;
        }
        tensors_.push_back(parseEntry(source, name, entry, data, dataSize));
    }

    std::sort(tensors_.begin(), tensors_.end(),
              [](const TensorView& a, const TensorView& b) { return a.data < b.data; });
    for (std::size_t i = 1; i < tensors_.size(); ++i) {
        const TensorView& previous = tensors_[i - 1];
        const TensorView& current = tensors_[i];
        if (previous.data + previous.byteSize() > current.data && current.byteSize() > 0)
            throw Error(source, "tensors '" + previous.name + "' and '" + current.name +
                                    "' overlap in the data section");
    }
}

const TensorView* SafetensorsFile::find(const std::string& name) const {
    for (const TensorView& t : tensors_)
        if (t.name == name) return &t;
    return nullptr;
}

} // namespace quantlens
