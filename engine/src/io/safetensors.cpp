#include "quantlens/io/safetensors.h"

#include "quantlens/core/error.h"

#include <nlohmann/json.hpp>

#include <algorithm>
#include <cstring>
#include <limits>
#include <set>
#include <string_view>

namespace quantlens {
namespace {

using nlohmann::json;

// A header is an object of tensor entries (objects) holding flat arrays: three levels.
constexpr int kMaxHeaderDepth = 3;

// A first, DOM-free pass over the header that rejects what nlohmann::json would accept silently or
// at great cost: duplicate keys (last wins) and deep nesting (a 100 MiB "[[[[…" costs gigabytes as
// a DOM). Throws Error on the first problem, including malformed JSON.
class HeaderChecker : public nlohmann::json_sax<json> {
public:
    explicit HeaderChecker(const std::string& source) : source_(source) {}

    bool null() override { return true; }
    bool boolean(bool) override { return true; }
    bool number_integer(number_integer_t) override { return true; }
    bool number_unsigned(number_unsigned_t) override { return true; }
    bool number_float(number_float_t, const string_t&) override { return true; }
    bool string(string_t&) override { return true; }
    bool binary(binary_t&) override { return true; }

    bool start_object(std::size_t) override {
        enter();
        keys_.emplace_back();
        return true;
    }
    bool end_object() override {
        keys_.pop_back();
        --depth_;
        return true;
    }
    bool start_array(std::size_t) override {
        enter();
        return true;
    }
    bool end_array() override {
        --depth_;
        return true;
    }

    // Keys only occur directly inside an object, so the innermost key set is that object's.
    bool key(string_t& name) override {
        if (depth_ == 1) entry_ = name;
        if (!keys_.back().insert(name).second)
            throw Error(source_, "header has duplicate key '" + name + "'" +
                                     (depth_ == 1 ? "" : " inside '" + entry_ + "'"));
        return true;
    }

    bool parse_error(std::size_t, const std::string&, const json::exception& e) override {
        throw Error(source_, std::string("header is not valid JSON: ") + e.what());
    }

private:
    void enter() {
        if (++depth_ > kMaxHeaderDepth)
            throw Error(source_, "header nests deeper than " + std::to_string(kMaxHeaderDepth) +
                                     " levels (tensor entries hold only flat arrays)");
    }

    const std::string& source_;
    int depth_ = 0;
    std::vector<std::set<std::string>> keys_; // one per open object
    std::string entry_;                       // the top-level key being read
};

json parseHeader(const std::string& source, std::string_view text) {
    const std::size_t first = text.find_first_not_of(" \t\r\n");
    if (first == std::string_view::npos || text[first] != '{')
        throw Error(source, "header does not begin with '{' (not a safetensors file)");
    HeaderChecker checker(source);
    json::sax_parse(text.begin(), text.end(), &checker);
    try {
        return json::parse(text.begin(), text.end());
    } catch (const json::exception& e) {
        throw Error(source, std::string("header is not valid JSON: ") + e.what());
    }
}

std::string describeRange(std::uint64_t begin, std::uint64_t end) {
    return "[" + std::to_string(begin) + ", " + std::to_string(end) + ")";
}

RawTensorView parseEntry(const std::string& source, const std::string& name, const json& entry,
                         const std::byte* data, std::uint64_t dataSize,
                         SafetensorsFile::DTypes accept) {
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

    RawTensorView view;
    view.name = name;
    view.dtype = dtypeIt->get<std::string>();
    view.file = source;
    const std::size_t elementSize = safetensorsElementSize(view.dtype);
    if (elementSize == 0) throw fail("has unknown dtype '" + view.dtype + "'");
    if (accept == SafetensorsFile::DTypes::Float && !parseDType(view.dtype))
        throw fail("has dtype " + view.dtype +
                   ", which Quantlens does not read (F32, F16 or BF16)");

    // The product of the non-zero dimensions is bounded too, so that no dimension or partial
    // product overflows int64 even when a zero dimension makes the tensor empty.
    std::uint64_t extent = 1;
    bool empty = false;
    for (const json& dim : *shapeIt) {
        if (!dim.is_number_unsigned())
            throw fail("has a shape entry that is not a non-negative integer");
        const std::uint64_t d = dim.get<std::uint64_t>();
        if (d == 0) {
            empty = true;
        } else {
            if (extent > std::numeric_limits<std::uint64_t>::max() / 8 / d)
                throw fail("has a shape too large to address (dimension " + std::to_string(d) +
                           ")");
            extent *= d;
        }
        view.shape.push_back(static_cast<std::int64_t>(d));
    }
    const std::uint64_t elements = empty ? 0 : extent;

    const std::uint64_t begin = (*offsetsIt)[0].get<std::uint64_t>();
    const std::uint64_t end = (*offsetsIt)[1].get<std::uint64_t>();
    if (begin > end)
        throw fail("has data_offsets " + describeRange(begin, end) + " that end before they begin");
    if (end > dataSize)
        throw fail("has data_offsets " + describeRange(begin, end) + " past the end of the data (" +
                   std::to_string(dataSize) + " bytes)");
    const std::uint64_t expected = elements * elementSize;
    if (end - begin != expected) {
        TensorView shaped;
        shaped.shape = view.shape;
        throw fail("has shape " + shaped.shapeString() + " of " + view.dtype + " (" +
                   std::to_string(expected) + " bytes) but data_offsets span " +
                   std::to_string(end - begin) + " bytes");
    }
    view.data = data + begin;
    view.size = static_cast<std::size_t>(expected);
    return view;
}

} // namespace

std::size_t safetensorsElementSize(std::string_view dtype) {
    if (dtype == "F64" || dtype == "I64" || dtype == "U64") return 8;
    if (dtype == "F32" || dtype == "I32" || dtype == "U32") return 4;
    if (dtype == "F16" || dtype == "BF16" || dtype == "I16" || dtype == "U16") return 2;
    if (dtype == "U8" || dtype == "I8" || dtype == "BOOL" || dtype == "F8_E4M3" ||
        dtype == "F8_E5M2")
        return 1;
    return 0;
}

SafetensorsFile::SafetensorsFile(const std::filesystem::path& path, DTypes accept) : file_(path) {
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

    const json header = parseHeader(source, {reinterpret_cast<const char*>(bytes.data() + 8),
                                             static_cast<std::size_t>(headerSize)});

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
        raw_.push_back(parseEntry(source, name, entry, data, dataSize, accept));
    }

    // In begin order, each non-empty tensor must start at or after the end of the last non-empty
    // one (which, with no overlap so far, ends furthest). Empty tensors are skipped rather than
    // compared: as neighbours they would hide an overlap between the tensors on either side.
    std::sort(raw_.begin(), raw_.end(),
              [](const RawTensorView& a, const RawTensorView& b) { return a.data < b.data; });
    const RawTensorView* previous = nullptr;
    for (const RawTensorView& current : raw_) {
        if (current.size == 0) continue;
        if (previous && previous->data + previous->size > current.data)
            throw Error(source, "tensors '" + previous->name + "' and '" + current.name +
                                    "' overlap in the data section");
        previous = &current;
    }
    for (const RawTensorView& raw : raw_) {
        if (const std::optional<DType> dtype = parseDType(raw.dtype))
            tensors_.push_back({raw.name, *dtype, raw.shape, raw.data, raw.file});
    }
}

const TensorView* SafetensorsFile::find(const std::string& name) const {
    for (const TensorView& t : tensors_)
        if (t.name == name) return &t;
    return nullptr;
}

const RawTensorView* SafetensorsFile::findRaw(const std::string& name) const {
    for (const RawTensorView& t : raw_)
        if (t.name == name) return &t;
    return nullptr;
}

} // namespace quantlens
