#include "gguf_reader.h"

#include <algorithm>
#include <bit>
#include <cstring>
#include <fstream>
#include <set>
#include <stdexcept>

namespace quantlens::test {
namespace {

[[noreturn]] void fail(const std::string& what) {
    throw std::runtime_error("GGUF: " + what);
}

// A bounds-checked little-endian cursor over the file.
class Cursor {
public:
    explicit Cursor(const std::string& data) : data_(data) {}

    template <typename T> T read(const char* what) {
        if (data_.size() - position_ < sizeof(T))
            fail(std::string("the file ends inside ") + what + " at byte " +
                 std::to_string(position_));
        T value;
        std::memcpy(&value, data_.data() + position_, sizeof(T));
        position_ += sizeof(T);
        return value;
    }
    std::string string(const char* what) {
        const auto length = read<std::uint64_t>(what);
        if (length > data_.size() - position_)
            fail(std::string(what) + " of " + std::to_string(length) +
                 " bytes runs past the end of the file");
        std::string text = data_.substr(position_, length);
        position_ += length;
        return text;
    }
    std::size_t position() const { return position_; }

private:
    const std::string& data_;
    std::size_t position_ = 0;
};

GgufValue readValue(Cursor& in, GgufValueType type, int depth) {
    GgufValue v;
    v.type = type;
    switch (type) {
    case GgufValueType::UInt8:
        v.u = in.read<std::uint8_t>("a uint8");
        break;
    case GgufValueType::Int8:
        v.i = in.read<std::int8_t>("an int8");
        break;
    case GgufValueType::UInt16:
        v.u = in.read<std::uint16_t>("a uint16");
        break;
    case GgufValueType::Int16:
        v.i = in.read<std::int16_t>("an int16");
        break;
    case GgufValueType::UInt32:
        v.u = in.read<std::uint32_t>("a uint32");
        break;
    case GgufValueType::Int32:
        v.i = in.read<std::int32_t>("an int32");
        break;
    case GgufValueType::UInt64:
        v.u = in.read<std::uint64_t>("a uint64");
        break;
    case GgufValueType::Int64:
        v.i = in.read<std::int64_t>("an int64");
        break;
    case GgufValueType::Float32:
        v.f = in.read<float>("a float32");
        break;
    case GgufValueType::Float64:
        v.f = in.read<double>("a float64");
        break;
    case GgufValueType::Bool: {
        const auto byte = in.read<std::uint8_t>("a bool");
        if (byte > 1) fail("a bool holds " + std::to_string(byte));
        v.b = byte == 1;
        break;
    }
    case GgufValueType::String:
        v.s = in.string("a string value");
        break;
    case GgufValueType::Array: {
        if (depth > 0) fail("nested arrays are not written by llama.cpp's converters");
        v.elementType = static_cast<GgufValueType>(in.read<std::uint32_t>("an array type"));
        const auto count = in.read<std::uint64_t>("an array length");
        if (count > (1u << 26)) fail("an array claims " + std::to_string(count) + " elements");
        v.items.reserve(count);
        for (std::uint64_t k = 0; k < count; ++k)
            v.items.push_back(readValue(in, v.elementType, depth + 1));
        break;
    }
    default:
        fail("unknown value type " + std::to_string(static_cast<std::uint32_t>(type)));
    }
    return v;
}

} // namespace

std::uint64_t ggmlBlockSize(std::uint32_t type) {
    switch (static_cast<GgmlType>(type)) {
    case GgmlType::F32:
    case GgmlType::F16:
    case GgmlType::BF16:
        return 1;
    case GgmlType::Q4_1:
    case GgmlType::Q5_1:
    case GgmlType::Q8_0:
        return 32;
    }
    fail("unknown tensor type " + std::to_string(type));
}

std::uint64_t ggmlBlockBytes(std::uint32_t type) {
    switch (static_cast<GgmlType>(type)) {
    case GgmlType::F32:
        return 4;
    case GgmlType::F16:
    case GgmlType::BF16:
        return 2;
    case GgmlType::Q4_1: // ggml_half d, m; uint8_t qs[16]
        return 20;
    case GgmlType::Q5_1: // ggml_half d, m; uint8_t qh[4]; uint8_t qs[16]
        return 24;
    case GgmlType::Q8_0: // ggml_half d; int8_t qs[32]
        return 34;
    }
    fail("unknown tensor type " + std::to_string(type));
}

float halfToFloat(std::uint16_t bits) {
    return static_cast<float>(std::bit_cast<_Float16>(bits));
}

float bf16BitsToFloat(std::uint16_t bits) {
    return std::bit_cast<float>(static_cast<std::uint32_t>(bits) << 16);
}

std::uint64_t GgufTensorInfo::elements() const {
    std::uint64_t n = 1;
    for (const std::uint64_t d : dims)
        n *= d;
    return n;
}

GgufFile::GgufFile(const std::filesystem::path& file) {
    std::ifstream in(file, std::ios::binary);
    if (!in) fail("cannot open " + file.string());
    data_.assign(std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>());
    Cursor cursor(data_);
    if (cursor.read<std::uint32_t>("the magic") != 0x46554747u) fail("the magic is not \"GGUF\"");
    version_ = cursor.read<std::uint32_t>("the version");
    if (version_ != 3) fail("version " + std::to_string(version_) + ", not 3");
    const auto tensorCount = cursor.read<std::uint64_t>("the tensor count");
    const auto kvCount = cursor.read<std::uint64_t>("the metadata count");
    for (std::uint64_t k = 0; k < kvCount; ++k) {
        std::string key = cursor.string("a key");
        if (key.empty()) fail("an empty key");
        if (metadata_.count(key)) fail("key " + key + " appears twice");
        const auto type = static_cast<GgufValueType>(cursor.read<std::uint32_t>("a value type"));
        metadata_[key] = readValue(cursor, type, 0);
        keyOrder_.push_back(std::move(key));
    }
    if (has("general.alignment")) {
        const GgufValue& a = value("general.alignment");
        if (a.type != GgufValueType::UInt32) fail("general.alignment is not a uint32");
        if (a.u == 0 || (a.u & (a.u - 1)) != 0)
            fail("general.alignment " + std::to_string(a.u) + " is not a power of two");
        alignment_ = static_cast<std::uint32_t>(a.u);
    }
    std::set<std::string> names;
    for (std::uint64_t t = 0; t < tensorCount; ++t) {
        GgufTensorInfo info;
        info.name = cursor.string("a tensor name");
        if (!names.insert(info.name).second) fail("tensor " + info.name + " appears twice");
        const auto dims = cursor.read<std::uint32_t>("a dimension count");
        if (dims == 0 || dims > 4) fail(info.name + " has " + std::to_string(dims) + " dimensions");
        for (std::uint32_t d = 0; d < dims; ++d)
            info.dims.push_back(cursor.read<std::uint64_t>("a dimension"));
        info.type = cursor.read<std::uint32_t>("a tensor type");
        info.offset = cursor.read<std::uint64_t>("a tensor offset");
        if (info.rowLength() % ggmlBlockSize(info.type) != 0)
            fail(info.name + " has rows of " + std::to_string(info.rowLength()) +
                 ", not whole blocks");
        if (info.offset % alignment_ != 0)
            fail(info.name + " starts at " + std::to_string(info.offset) + ", not aligned");
        tensors_.push_back(std::move(info));
    }
    dataOffset_ = (cursor.position() + alignment_ - 1) / alignment_ * alignment_;
    for (std::size_t p = cursor.position(); p < dataOffset_ && p < data_.size(); ++p)
        if (data_[p] != '\0') fail("the padding before the data holds a non-zero byte");
    std::vector<std::pair<std::uint64_t, std::uint64_t>> extents;
    for (const GgufTensorInfo& info : tensors_) {
        const std::uint64_t size =
            info.elements() / ggmlBlockSize(info.type) * ggmlBlockBytes(info.type);
        if (dataOffset_ + info.offset + size > data_.size())
            fail(info.name + " runs past the end of the file");
        extents.emplace_back(info.offset, info.offset + size);
    }
    std::sort(extents.begin(), extents.end());
    for (std::size_t k = 1; k < extents.size(); ++k)
        if (extents[k].first < extents[k - 1].second) fail("two tensors overlap");
}

const GgufValue& GgufFile::value(const std::string& key) const {
    const auto it = metadata_.find(key);
    if (it == metadata_.end()) fail("no key " + key);
    return it->second;
}

bool GgufFile::hasTensor(const std::string& name) const {
    return std::any_of(tensors_.begin(), tensors_.end(),
                       [&](const GgufTensorInfo& t) { return t.name == name; });
}

const GgufTensorInfo& GgufFile::tensor(const std::string& name) const {
    for (const GgufTensorInfo& t : tensors_)
        if (t.name == name) return t;
    fail("no tensor " + name);
}

std::string GgufFile::bytes(const std::string& name) const {
    const GgufTensorInfo& t = tensor(name);
    const std::uint64_t size = t.elements() / ggmlBlockSize(t.type) * ggmlBlockBytes(t.type);
    return data_.substr(dataOffset_ + t.offset, size);
}

std::vector<float> GgufFile::values(const std::string& name) const {
    const GgufTensorInfo& t = tensor(name);
    const std::string raw = bytes(name);
    const auto* p = reinterpret_cast<const unsigned char*>(raw.data());
    const std::uint64_t n = t.elements();
    std::vector<float> out(n);
    const auto half = [&](std::uint64_t at) {
        return static_cast<std::uint16_t>(p[at] | (p[at + 1] << 8));
    };
    switch (static_cast<GgmlType>(t.type)) {
    case GgmlType::F32:
        std::memcpy(out.data(), p, n * 4);
        break;
    case GgmlType::F16:
        for (std::uint64_t k = 0; k < n; ++k)
            out[k] = halfToFloat(half(2 * k));
        break;
    case GgmlType::BF16:
        for (std::uint64_t k = 0; k < n; ++k)
            out[k] = bf16BitsToFloat(half(2 * k));
        break;
    case GgmlType::Q8_0:
        for (std::uint64_t b = 0; b < n / 32; ++b) {
            const unsigned char* block = p + b * 34;
            const float d = halfToFloat(half(b * 34));
            for (int j = 0; j < 32; ++j)
                out[b * 32 + j] = static_cast<float>(static_cast<std::int8_t>(block[2 + j])) * d;
        }
        break;
    case GgmlType::Q4_1:
        for (std::uint64_t b = 0; b < n / 32; ++b) {
            const unsigned char* qs = p + b * 20 + 4;
            const float d = halfToFloat(half(b * 20)), m = halfToFloat(half(b * 20 + 2));
            for (int j = 0; j < 16; ++j) {
                out[b * 32 + j] = static_cast<float>(qs[j] & 0x0F) * d + m;
                out[b * 32 + j + 16] = static_cast<float>(qs[j] >> 4) * d + m;
            }
        }
        break;
    case GgmlType::Q5_1:
        for (std::uint64_t b = 0; b < n / 32; ++b) {
            const unsigned char* block = p + b * 24;
            const float d = halfToFloat(half(b * 24)), m = halfToFloat(half(b * 24 + 2));
            std::uint32_t qh;
            std::memcpy(&qh, block + 4, 4);
            const unsigned char* qs = block + 8;
            for (int j = 0; j < 16; ++j) {
                const int x0 = (qs[j] & 0x0F) | (((qh >> j) << 4) & 0x10);
                const int x1 = (qs[j] >> 4) | ((qh >> (j + 12)) & 0x10);
                out[b * 32 + j] = static_cast<float>(x0) * d + m;
                out[b * 32 + j + 16] = static_cast<float>(x1) * d + m;
            }
        }
        break;
    default:
        fail(name + " has type " + std::to_string(t.type) + ", which this reader does not decode");
    }
    return out;
}

} // namespace quantlens::test
