#pragma once

#include <cstdint>
#include <filesystem>
#include <map>
#include <string>
#include <vector>

namespace quantlens::test {

// A GGUF reader written from the published format (ggml's docs/gguf.md) and ggml's block layouts
// (ggml-common.h), sharing no code with the engine's writer: fp16 is decoded through the
// compiler's _Float16, bf16 by shifting, blocks as ggml's dequantize_row_* decodes them. Every
// structural rule it checks throws std::runtime_error with a sentence saying which.

// gguf_metadata_value_type.
enum class GgufValueType : std::uint32_t {
    UInt8 = 0,
    Int8 = 1,
    UInt16 = 2,
    Int16 = 3,
    UInt32 = 4,
    Int32 = 5,
    Float32 = 6,
    Bool = 7,
    String = 8,
    Array = 9,
    UInt64 = 10,
    Int64 = 11,
    Float64 = 12,
};

// One metadata value: the field its type fills (unsigned integers in `u`, signed in `i`, floats
// in `f`, bool in `b`, strings in `s`, arrays in `items` with their elements' type).
struct GgufValue {
    GgufValueType type = GgufValueType::UInt8;
    GgufValueType elementType = GgufValueType::UInt8; // arrays
    std::uint64_t u = 0;
    std::int64_t i = 0;
    double f = 0.0;
    bool b = false;
    std::string s;
    std::vector<GgufValue> items;
};

// ggml_type ids of the tensor types the reader decodes.
enum class GgmlType : std::uint32_t { F32 = 0, F16 = 1, Q4_1 = 3, Q5_1 = 7, Q8_0 = 8, BF16 = 30 };

struct GgufTensorInfo {
    std::string name;
    std::vector<std::uint64_t> dims; // ne[0] (the row length) first
    std::uint32_t type = 0;          // ggml_type
    std::uint64_t offset = 0;        // from the start of the data section
    std::uint64_t elements() const;
    std::uint64_t rowLength() const { return dims.at(0); }
    std::uint64_t rowCount() const { return elements() / dims.at(0); }
};

class GgufFile {
public:
    // Reads and checks the whole file: magic "GGUF", version 3, unique keys, value types, unique
    // tensor names, dims, known types, row lengths whole blocks, offsets aligned to
    // general.alignment (32 when absent), inside the file and not overlapping.
    explicit GgufFile(const std::filesystem::path& file);

    std::uint32_t version() const { return version_; }
    std::uint32_t alignment() const { return alignment_; }
    std::uint64_t dataOffset() const { return dataOffset_; } // of the data section in the file
    const std::map<std::string, GgufValue>& metadata() const { return metadata_; }
    std::vector<std::string> keys() const { return keyOrder_; } // in file order
    const GgufValue& value(const std::string& key) const;       // throws when absent
    bool has(const std::string& key) const { return metadata_.count(key) != 0; }
    const std::vector<GgufTensorInfo>& tensors() const { return tensors_; }
    const GgufTensorInfo& tensor(const std::string& name) const; // throws when absent
    bool hasTensor(const std::string& name) const;

    // The tensor's weights, row-major (rowCount() rows of rowLength()), decoded from its type.
    std::vector<float> values(const std::string& name) const;
    // Its raw bytes in the file.
    std::string bytes(const std::string& name) const;

private:
    std::string data_;
    std::uint32_t version_ = 0;
    std::uint32_t alignment_ = 32;
    std::uint64_t dataOffset_ = 0;
    std::map<std::string, GgufValue> metadata_;
    std::vector<std::string> keyOrder_;
    std::vector<GgufTensorInfo> tensors_;
};

// Weights per block and bytes per block of a ggml type the reader knows; throws for others.
std::uint64_t ggmlBlockSize(std::uint32_t type);
std::uint64_t ggmlBlockBytes(std::uint32_t type);

// fp16 and bf16 bits as float, independently of the engine.
float halfToFloat(std::uint16_t bits);
float bf16BitsToFloat(std::uint16_t bits);

} // namespace quantlens::test
