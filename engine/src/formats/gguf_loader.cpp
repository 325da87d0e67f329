#include "quantlens/formats/gguf_loader.h"

#include "formats/gguf_blocks.h"
#include "formats/rope_rows.h"
#include "model/model_shapes.h"
#include "quantlens/core/dtype.h"
#include "quantlens/core/error.h"
#include "quantlens/core/parallel.h"
#include "quantlens/io/mapped_file.h"

#include <algorithm>
#include <bit>
#include <cstring>
#include <fstream>
#include <limits>
#include <map>
#include <optional>
#include <set>

namespace quantlens {
namespace {

namespace fs = std::filesystem;

static_assert(std::endian::native == std::endian::little,
              "GGUF is little-endian and is read from memory as is");

constexpr std::uint32_t kMagic = 0x46554747u; // "GGUF" read as a little-endian uint32
constexpr std::uint32_t kDefaultAlignment = 32;
constexpr std::uint32_t kMaxDims = 4; // GGML_MAX_DIMS
constexpr int kMaxArrayNesting = 8;   // arrays of arrays: deeper is a corrupt file, not a model

using gguf::ValueType;

const char* valueTypeName(ValueType type) {
    static constexpr const char* kNames[] = {"uint8",  "int8",    "uint16", "int16",  "uint32",
                                             "int32",  "float32", "bool",   "string", "array",
                                             "uint64", "int64",   "float64"};
    const auto i = static_cast<std::uint32_t>(type);
    return i < std::size(kNames) ? kNames[i] : "unknown";
}

// The fewest bytes one value of `type` takes, to bound an array's count by the bytes left.
std::uint64_t minimumBytes(ValueType type) {
    switch (type) {
    case ValueType::UInt8:
    case ValueType::Int8:
    case ValueType::Bool:
        return 1;
    case ValueType::UInt16:
    case ValueType::Int16:
        return 2;
    case ValueType::UInt32:
    case ValueType::Int32:
    case ValueType::Float32:
        return 4;
    case ValueType::String: // its uint64 length
    case ValueType::UInt64:
    case ValueType::Int64:
    case ValueType::Float64:
        return 8;
    case ValueType::Array: // element type and count
        return 12;
    }
    return 1;
}

// One metadata value. Arrays are checked element by element but only their element type and
// count are kept: nothing the model needs is an array (the vocabulary comes from tokenizer.model).
struct Value {
    ValueType type = ValueType::UInt8;
    ValueType elementType = ValueType::UInt8; // arrays
    std::uint64_t count = 0;                  // arrays
    std::optional<std::int64_t> integer;      // every integer type that fits int64
    bool unsignedHuge = false;                // a uint64 above INT64_MAX
    double real = 0.0;                        // float32, float64
    bool boolean = false;
    std::string text;
};

// Bounds-checked reading of the mapped file; every failure names what was being read.
class Cursor {
public:
    Cursor(std::span<const std::byte> bytes, const std::string& source)
        : bytes_(bytes), source_(source) {}

    std::uint64_t position() const { return position_; }
    std::uint64_t remaining() const { return bytes_.size() - position_; }

    void need(std::uint64_t n, const std::string& what) const {
        if (n > remaining())
            throw Error(source_, "truncated: " + what + " at byte " + std::to_string(position_) +
                                     " needs " + std::to_string(n) +
                                     " bytes, but the file ends at " +
                                     std::to_string(bytes_.size()));
    }
    template <typename T> T get(const std::string& what) {
        need(sizeof(T), what);
        T value;
        std::memcpy(&value, bytes_.data() + position_, sizeof(T));
        position_ += sizeof(T);
        return value;
    }
    // gguf_string_t: a uint64 byte length, then the bytes.
    std::string string(const std::string& what) {
        const auto length = get<std::uint64_t>(what + " (its length)");
        need(length, what);
        std::string text(reinterpret_cast<const char*>(bytes_.data() + position_),
                         static_cast<std::size_t>(length));
        position_ += length;
        return text;
    }

private:
    std::span<const std::byte> bytes_;
    const std::string& source_;
    std::uint64_t position_ = 0;
};

ValueType readValueType(Cursor& in, const std::string& what, const std::string& source) {
    const auto raw = in.get<std::uint32_t>(what);
    if (raw > static_cast<std::uint32_t>(ValueType::Float64))
        throw Error(source, what + " is " + std::to_string(raw) +
                                ", which is no GGUF value type (0 to 12)");
    return static_cast<ValueType>(raw);
}

Value readValue(Cursor& in, ValueType type, const std::string& key, const std::string& source,
                int depth) {
    Value v;
    v.type = type;
    const std::string what = "the value of '" + key + "'";
    switch (type) {
    case ValueType::UInt8:
        v.integer = in.get<std::uint8_t>(what);
        break;
    case ValueType::Int8:
        v.integer = in.get<std::int8_t>(what);
        break;
    case ValueType::UInt16:
        v.integer = in.get<std::uint16_t>(what);
        break;
    case ValueType::Int16:
        v.integer = in.get<std::int16_t>(what);
        break;
    case ValueType::UInt32:
        v.integer = in.get<std::uint32_t>(what);
        break;
    case ValueType::Int32:
        v.integer = in.get<std::int32_t>(what);
        break;
    case ValueType::UInt64: {
        const auto u = in.get<std::uint64_t>(what);
        if (u > static_cast<std::uint64_t>(std::numeric_limits<std::int64_t>::max()))
            v.unsignedHuge = true;
        else
            v.integer = static_cast<std::int64_t>(u);
        break;
    }
    case ValueType::Int64:
        v.integer = in.get<std::int64_t>(what);
        break;
    case ValueType::Float32:
        v.real = in.get<float>(what);
        break;
    case ValueType::Float64:
        v.real = in.get<double>(what);
        break;
    case ValueType::Bool: {
        const auto b = in.get<std::uint8_t>(what);
        if (b > 1)
            throw Error(source, "'" + key + "' is a bool stored as " + std::to_string(b) +
                                    ", neither 0 nor 1");
        v.boolean = b == 1;
        break;
    }
    case ValueType::String:
        v.text = in.string(what);
        break;
    case ValueType::Array: {
        if (depth >= kMaxArrayNesting)
            throw Error(source, "'" + key + "' nests arrays more than " +
                                    std::to_string(kMaxArrayNesting) + " deep");
        v.elementType = readValueType(in, "the element type of '" + key + "'", source);
        v.count = in.get<std::uint64_t>("the element count of '" + key + "'");
        if (v.count > in.remaining() / minimumBytes(v.elementType))
            throw Error(source, "truncated: '" + key + "' claims " + std::to_string(v.count) + " " +
                                    valueTypeName(v.elementType) + " elements, but only " +
                                    std::to_string(in.remaining()) + " bytes are left");
        for (std::uint64_t k = 0; k < v.count; ++k)
            readValue(in, v.elementType, key + "[" + std::to_string(k) + "]", source, depth + 1);
        break;
    }
    }
    return v;
}

// ggml_type ids and ggml's names, so that a refused type is named (ggml.h, ggml_type).
const char* ggmlTypeName(std::uint32_t type) {
    switch (type) {
    case 0:
        return "F32";
    case 1:
        return "F16";
    case 2:
        return "Q4_0";
    case 3:
        return "Q4_1";
    case 6:
        return "Q5_0";
    case 7:
        return "Q5_1";
    case 8:
        return "Q8_0";
    case 9:
        return "Q8_1";
    case 10:
        return "Q2_K";
    case 11:
        return "Q3_K";
    case 12:
        return "Q4_K";
    case 13:
        return "Q5_K";
    case 14:
        return "Q6_K";
    case 15:
        return "Q8_K";
    case 16:
        return "IQ2_XXS";
    case 17:
        return "IQ2_XS";
    case 18:
        return "IQ3_XXS";
    case 19:
        return "IQ1_S";
    case 20:
        return "IQ4_NL";
    case 21:
        return "IQ3_S";
    case 22:
        return "IQ2_S";
    case 23:
        return "IQ4_XS";
    case 24:
        return "I8";
    case 25:
        return "I16";
    case 26:
        return "I32";
    case 27:
        return "I64";
    case 28:
        return "F64";
    case 29:
        return "IQ1_M";
    case 30:
        return "BF16";
    case 34:
        return "TQ1_0";
    case 35:
        return "TQ2_0";
    case 39:
        return "MXFP4";
    }
    return nullptr;
}

bool isDecoded(std::uint32_t type) {
    return type == 0 || type == 1 || type == 3 || type == 7 || type == 8 || type == 30;
}

struct TensorInfo {
    std::string name;
    std::vector<std::uint64_t> ne; // ne[0], the row length, first
    GgufType type = GgufType::F32;
    std::uint64_t offset = 0; // from the data section
    std::int64_t elements = 0;
    std::uint64_t bytes = 0;
    std::int64_t rows() const { return elements / static_cast<std::int64_t>(ne[0]); }
    std::int64_t cols() const { return static_cast<std::int64_t>(ne[0]); }
};

// One row of `cols` weights of `type` at `in` as fp32, the blocks decoded as ggml's
// dequantize_row_q8_0/_q4_1/_q5_1 decode them (ggml-common.h's block layouts).
void decodeRow(GgufType type, const std::byte* in, std::int64_t cols, float* out) {
    switch (type) {
    case GgufType::F32:
        convertToFloat(DType::F32, in, static_cast<std::size_t>(cols), out);
        return;
    case GgufType::F16:
        convertToFloat(DType::F16, in, static_cast<std::size_t>(cols), out);
        return;
    case GgufType::BF16:
        convertToFloat(DType::BF16, in, static_cast<std::size_t>(cols), out);
        return;
    default:
        break;
    }
    const std::size_t stride = ggufBlockBytes(type);
    for (std::int64_t b = 0; b < cols / gguf::kBlock; ++b, in += stride, out += gguf::kBlock)
        gguf::decodeBlock(type, reinterpret_cast<const std::uint8_t*>(in), out);
}

// llama.cpp's name of each block tensor of the llama architecture, and the Hugging Face block
// tensor (kBlockTensors) it holds.
struct BlockName {
    std::string gguf;
    const BlockTensorSpec* spec;
};
std::vector<BlockName> blockNames() {
    std::vector<BlockName> names;
    for (const BlockTensorSpec& spec : kBlockTensors) {
        if (spec.kind == BlockTensorKind::Weight)
            names.push_back({gguf::kLinearNames[static_cast<std::size_t>(spec.linear)], &spec});
        else if (spec.weights == &BlockWeights::attnNorm)
            names.push_back({gguf::kAttentionNorm, &spec});
        else if (spec.weights == &BlockWeights::ffnNorm)
            names.push_back({gguf::kMlpNorm, &spec});
    }
    return names;
}

// The parsed file: metadata and tensor infos, every offset and size checked.
struct GgufContents {
    std::uint32_t version = 0;
    std::map<std::string, Value> metadata;
    std::vector<TensorInfo> tensors; // in file order
    std::uint64_t dataOffset = 0;
};

GgufContents parse(std::span<const std::byte> bytes, const std::string& source) {
    Cursor in(bytes, source);
    GgufContents g;
    if (in.get<std::uint32_t>("the magic") != kMagic)
        throw Error(source, "not a GGUF file: it does not start with the magic \"GGUF\"");
    g.version = in.get<std::uint32_t>("the version");
    if (g.version == 0x02000000u || g.version == 0x03000000u)
        throw Error(source, "a big-endian GGUF file, which Quantlens does not read");
    if (g.version == 1)
        throw Error(source, "GGUF version 1 (32-bit counts) is not supported; version 2 or 3 is");
    if (g.version != 2 && g.version != 3)
        throw Error(source, "unsupported GGUF version " + std::to_string(g.version) +
                                " (Quantlens reads versions 2 and 3)");
    const auto tensorCount = in.get<std::uint64_t>("the tensor count");
    const auto keyCount = in.get<std::uint64_t>("the key count");
    // A key takes at least 13 bytes (empty name, type, a uint8), a tensor info 32.
    if (keyCount > in.remaining() / 13)
        throw Error(source, "truncated: the header claims " + std::to_string(keyCount) +
                                " keys, but only " + std::to_string(in.remaining()) +
                                " bytes are left");
    for (std::uint64_t k = 0; k < keyCount; ++k) {
        const std::string key = in.string("the name of key " + std::to_string(k));
        const ValueType type = readValueType(in, "the type of '" + key + "'", source);
        Value value = readValue(in, type, key, source, 0);
        if (!g.metadata.emplace(key, std::move(value)).second)
            throw Error(source, "key '" + key + "' appears twice");
    }

    std::uint64_t alignment = kDefaultAlignment;
    if (const auto it = g.metadata.find("general.alignment"); it != g.metadata.end()) {
        const Value& v = it->second;
        if (!v.integer || *v.integer <= 0 ||
            !std::has_single_bit(static_cast<std::uint64_t>(*v.integer)) || *v.integer > (1 << 20))
            throw Error(source, "general.alignment must be a power of two up to 2^20, not " +
                                    (v.integer ? std::to_string(*v.integer)
                                               : std::string("a ") + valueTypeName(v.type)));
        alignment = static_cast<std::uint64_t>(*v.integer);
    }

    if (tensorCount > in.remaining() / 32)
        throw Error(source, "truncated: the header claims " + std::to_string(tensorCount) +
                                " tensors, but only " + std::to_string(in.remaining()) +
                                " bytes are left for their infos");
    std::set<std::string> names;
    for (std::uint64_t k = 0; k < tensorCount; ++k) {
        TensorInfo t;
        t.name = in.string("the name of tensor " + std::to_string(k));
        if (!names.insert(t.name).second)
            throw Error(source, "tensor '" + t.name + "' appears twice");
        const std::string what = "the info of tensor '" + t.name + "'";
        const auto dims = in.get<std::uint32_t>(what);
        if (dims == 0 || dims > kMaxDims)
            throw Error(source, "tensor '" + t.name + "' has " + std::to_string(dims) +
                                    " dimensions (1 to 4 are possible)");
        t.elements = 1;
        for (std::uint32_t d = 0; d < dims; ++d) {
            const auto n = in.get<std::uint64_t>(what);
            if (n == 0 ||
                n > static_cast<std::uint64_t>(std::numeric_limits<std::int64_t>::max()) ||
                __builtin_mul_overflow(t.elements, static_cast<std::int64_t>(n), &t.elements) ||
                t.elements > (std::int64_t{1} << 50))
                throw Error(source, "tensor '" + t.name + "' has dimension " + std::to_string(d) +
                                        " of " + std::to_string(n) +
                                        ", which gives no addressable tensor");
            t.ne.push_back(n);
        }
        const auto type = in.get<std::uint32_t>(what);
        if (!isDecoded(type)) {
            const char* name = ggmlTypeName(type);
            throw Error(source, "tensor '" + t.name + "' is " +
                                    (name ? std::string(name)
                                          : "of unknown ggml type " + std::to_string(type)) +
                                    ", which Quantlens does not decode (it reads F32, F16, BF16, "
                                    "Q8_0, Q4_1 and Q5_1)");
        }
        t.type = static_cast<GgufType>(type);
        t.offset = in.get<std::uint64_t>(what);
        if (t.cols() % ggufBlockSize(t.type) != 0)
            throw Error(source, "tensor '" + t.name + "' has rows of " + std::to_string(t.cols()) +
                                    ", not a multiple of " + ggmlTypeName(type) + "'s " +
                                    std::to_string(ggufBlockSize(t.type)) + "-weight blocks");
        if (t.offset % alignment != 0)
            throw Error(source, "tensor '" + t.name + "' starts at data offset " +
                                    std::to_string(t.offset) +
                                    ", not a multiple of the alignment " +
                                    std::to_string(alignment));
        t.bytes =
            static_cast<std::uint64_t>(t.elements / ggufBlockSize(t.type)) * ggufBlockBytes(t.type);
        g.tensors.push_back(std::move(t));
    }

    g.dataOffset = (in.position() + alignment - 1) / alignment * alignment;
    const std::uint64_t size = bytes.size();
    if (!g.tensors.empty() && g.dataOffset > size)
        throw Error(source, "truncated: the data section would start at byte " +
                                std::to_string(g.dataOffset) + ", but the file ends at " +
                                std::to_string(size));
    const std::uint64_t dataBytes = g.dataOffset > size ? 0 : size - g.dataOffset;
    std::vector<const TensorInfo*> byOffset;
    for (const TensorInfo& t : g.tensors) {
        if (t.offset > dataBytes || t.bytes > dataBytes - t.offset)
            throw Error(source, "truncated: tensor '" + t.name + "' needs bytes up to " +
                                    std::to_string(g.dataOffset + t.offset + t.bytes) +
                                    ", but the file ends at " + std::to_string(size));
        byOffset.push_back(&t);
    }
    std::sort(byOffset.begin(), byOffset.end(),
              [](const TensorInfo* a, const TensorInfo* b) { return a->offset < b->offset; });
    for (std::size_t k = 1; k < byOffset.size(); ++k)
        if (byOffset[k - 1]->offset + byOffset[k - 1]->bytes > byOffset[k]->offset)
            throw Error(source, "tensors '" + byOffset[k - 1]->name + "' and '" +
                                    byOffset[k]->name + "' overlap in the data section");
    return g;
}

// Typed access to the metadata, each failure naming the key.
class Keys {
public:
    Keys(const std::map<std::string, Value>& metadata, const std::string& source)
        : metadata_(metadata), source_(source) {}

    const Value* find(const std::string& key) const {
        const auto it = metadata_.find(key);
        return it == metadata_.end() ? nullptr : &it->second;
    }
    // A positive count that fits int (any integer type, as files from other writers may vary).
    std::optional<int> count(const std::string& key) const {
        const Value* v = find(key);
        if (!v) return std::nullopt;
        if (v->type == ValueType::Array)
            throw Error(source_, "'" + key +
                                     "' is an array (per-layer values), which Quantlens "
                                     "does not implement");
        if (!v->integer || *v->integer < 0 || *v->integer > std::numeric_limits<int>::max())
            throw Error(source_, "'" + key + "' must be a non-negative integer below 2^31, not " +
                                     (v->integer ? std::to_string(*v->integer)
                                                 : std::string("a ") + valueTypeName(v->type)));
        return static_cast<int>(*v->integer);
    }
    int requiredCount(const std::string& key) const {
        const std::optional<int> value = count(key);
        if (!value) throw Error(source_, "has no '" + key + "'");
        return *value;
    }
    std::optional<float> real(const std::string& key) const {
        const Value* v = find(key);
        if (!v) return std::nullopt;
        if (v->type != ValueType::Float32 && v->type != ValueType::Float64)
            throw Error(source_, "'" + key + "' is a " + valueTypeName(v->type) + ", not a float");
        return static_cast<float>(v->real);
    }
    std::optional<std::string> text(const std::string& key) const {
        const Value* v = find(key);
        if (!v) return std::nullopt;
        if (v->type != ValueType::String)
            throw Error(source_, "'" + key + "' is a " + valueTypeName(v->type) + ", not a string");
        return v->text;
    }

private:
    const std::map<std::string, Value>& metadata_;
    const std::string& source_;
};

ModelConfig configFrom(const GgufContents& g, const std::string& source) {
    const Keys keys(g.metadata, source);
    const std::optional<std::string> architecture = keys.text("general.architecture");
    if (!architecture) throw Error(source, "has no 'general.architecture'");
    if (*architecture != "llama")
        throw Error(source, "is a GGUF of llama.cpp's \"" + *architecture +
                                "\" architecture; Quantlens opens \"llama\" files only");
    if (keys.count("llama.expert_count").value_or(0) > 0)
        throw Error(source, "is a mixture-of-experts model (llama.expert_count), which Quantlens "
                            "does not implement");

    ModelConfig c;
    c.architecture = Architecture::Llama;
    c.hiddenSize = keys.requiredCount("llama.embedding_length");
    c.intermediateSize = keys.requiredCount("llama.feed_forward_length");
    c.layerCount = keys.requiredCount("llama.block_count");
    c.headCount = keys.requiredCount("llama.attention.head_count");
    c.kvHeadCount = keys.count("llama.attention.head_count_kv").value_or(c.headCount);
    c.maxPositions = keys.requiredCount("llama.context_length");
    // llama.cpp: n_embd_head_k = key_length, else n_embd / n_head; value_length likewise; n_rot =
    // rope.dimension_count, else n_embd_head_k.
    const std::optional<int> keyLength = keys.count("llama.attention.key_length");
    c.headDim =
        keyLength ? *keyLength : defaultHeadDim(c.hiddenSize, c.headCount, source + " metadata");
    const int valueLength = keys.count("llama.attention.value_length").value_or(c.headDim);
    if (valueLength != c.headDim)
        throw Error(source, "has value heads of " + std::to_string(valueLength) +
                                " and key heads of " + std::to_string(c.headDim) +
                                "; Quantlens implements equal widths only");
    const int rotary = keys.count("llama.rope.dimension_count").value_or(c.headDim);
    if (rotary != c.headDim)
        throw Error(source, "rotates " + std::to_string(rotary) + " of each head's " +
                                std::to_string(c.headDim) +
                                " dimensions (llama.rope.dimension_count); Quantlens implements "
                                "RoPE over the whole head only");
    const std::optional<float> eps = keys.real("llama.attention.layer_norm_rms_epsilon");
    if (!eps) throw Error(source, "has no 'llama.attention.layer_norm_rms_epsilon'");
    c.rmsNormEps = *eps;
    c.ropeTheta = keys.real("llama.rope.freq_base").value_or(10000.0f);

    const std::string scaling = keys.text("llama.rope.scaling.type").value_or("none");
    if (scaling == "linear") {
        const std::optional<float> factor = keys.real("llama.rope.scaling.factor");
        if (!factor)
            throw Error(source, "has linear RoPE scaling but no 'llama.rope.scaling.factor'");
        c.ropeScaling.type = RopeScaling::Linear;
        c.ropeScaling.factor = *factor;
    } else if (scaling != "none") {
        throw Error(source, "has RoPE scaling \"" + scaling +
                                "\" (llama.rope.scaling.type); Quantlens implements linear only");
    } else if (const std::optional<float> factor = keys.real("llama.rope.scale_linear");
               factor && *factor != 1.0f) { // the key older converters wrote
        c.ropeScaling.type = RopeScaling::Linear;
        c.ropeScaling.factor = *factor;
    }

    const bool hasOutput = std::any_of(g.tensors.begin(), g.tensors.end(), [](const TensorInfo& t) {
        return t.name == "output.weight";
    });
    c.tiedEmbeddings = !hasOutput; // llama.cpp reuses token_embd then
    if (const std::optional<int> vocab = keys.count("llama.vocab_size")) {
        c.vocabSize = *vocab;
    } else if (const Value* tokens = keys.find("tokenizer.ggml.tokens");
               tokens && tokens->type == ValueType::Array) {
        c.vocabSize = static_cast<int>(std::min<std::uint64_t>(tokens->count, 1u << 30));
    } else {
        for (const TensorInfo& t : g.tensors)
            if (t.name == "token_embd.weight" && t.ne.size() == 2 && t.ne[1] < (1u << 30))
                c.vocabSize = static_cast<int>(t.ne[1]);
    }
    c.bosToken = keys.count("tokenizer.ggml.bos_token_id").value_or(1);
    c.eosTokens = {keys.count("tokenizer.ggml.eos_token_id").value_or(2)};
    c.validate(source + " metadata");
    return c;
}

} // namespace

bool isGgufFile(const fs::path& path) {
    std::error_code error;
    if (!fs::is_regular_file(path, error)) return false;
    std::ifstream in(path, std::ios::binary);
    char magic[4] = {};
    return in.read(magic, 4) && std::memcmp(magic, "GGUF", 4) == 0;
}

std::unique_ptr<Model> loadGgufModel(const fs::path& file) {
    const std::string source = file.string();
    const MappedFile mapped(file);
    const std::span<const std::byte> bytes = mapped.bytes();
    const GgufContents g = parse(bytes, source);

    auto model = std::make_unique<Model>();
    // The tensors are Hugging Face's, under its names and in its rotate-half RoPE layout.
    model->format = ModelFormat::HuggingFace;
    model->path = file;
    model->config = configFrom(g, source);
    const ModelConfig& c = model->config;
    model->blocks.resize(static_cast<std::size_t>(c.layerCount));
    const std::string configSource = source + " metadata";

    for (const TensorInfo& t : g.tensors) {
        TensorView* slot = nullptr;
        std::string hfName;
        std::vector<std::int64_t> shape;
        bool rope = false;
        if (t.name == "token_embd.weight") {
            slot = &model->embedding;
            hfName = kEmbeddingTensor;
            shape = {c.vocabSize, c.hiddenSize};
        } else if (t.name == "output_norm.weight") {
            slot = &model->finalNorm;
            hfName = kFinalNormTensor;
            shape = {c.hiddenSize};
        } else if (t.name == "output.weight") {
            slot = &model->lmHead;
            hfName = kLmHeadTensor;
            shape = {c.vocabSize, c.hiddenSize};
        } else if (t.name == "rope_freqs.weight") {
            throw Error(source, "carries Llama 3 RoPE factors (rope_freqs.weight), which Quantlens "
                                "cannot turn back into the rope_scaling it implements");
        } else if (t.name.starts_with("blk.")) {
            const std::size_t dot = t.name.find('.', 4);
            const std::string number = t.name.substr(4, dot == std::string::npos ? 0 : dot - 4);
            const std::string rest = dot == std::string::npos ? "" : t.name.substr(dot + 1);
            int block = -1;
            if (!number.empty() && number.size() <= 9 &&
                std::all_of(number.begin(), number.end(),
                            [](char ch) { return ch >= '0' && ch <= '9'; }))
                block = std::stoi(number);
            if (block < 0 || block >= c.layerCount)
                throw Error(source, "tensor '" + t.name + "' names no block of the model's " +
                                        std::to_string(c.layerCount));
            for (const BlockName& entry : blockNames())
                if (rest == entry.gguf + ".weight") {
                    const BlockTensorSpec& spec = *entry.spec;
                    slot = &(model->blocks[static_cast<std::size_t>(block)].*spec.weights);
                    hfName = blockPrefix(block) + spec.name;
                    shape = blockTensorShape(spec, c);
                    rope = spec.kind == BlockTensorKind::Weight &&
                           kLinearLayers[static_cast<std::size_t>(spec.linear)].rotary;
                }
        }
        if (!slot)
            throw Error(source, "tensor '" + t.name +
                                    "' is not one of llama.cpp's \"llama\" tensors that Quantlens "
                                    "reads (token_embd, blk.N.attn_norm/attn_q/attn_k/attn_v/"
                                    "attn_output/ffn_norm/ffn_gate/ffn_up/ffn_down, output_norm, "
                                    "output)");

        TensorView view;
        view.name = t.name; // for requireShape's message
        view.dtype = DType::F32;
        view.file = source;
        for (auto d = t.ne.rbegin(); d != t.ne.rend(); ++d)
            view.shape.push_back(static_cast<std::int64_t>(*d));
        requireShape(view, shape, configSource);
        view.name = hfName;

        // Decoded row by row; attn_q/attn_k rows come back from llama.cpp's interleaved order,
        // the inverse of the writer's (and convert_hf_to_gguf.py's) permutation: Transformer then
        // rotates halves exactly as it does for the Hugging Face checkpoint, and sums q·k in the
        // same order, so an F32 file's logits equal the checkpoint's bit for bit. Keeping the file
        // order with RopeLayout::Interleaved would be the same function, but not the same sums.
        const std::int64_t rows = t.rows(), cols = t.cols();
        const std::vector<int> fileRowOf =
            rope ? ropeRowOrder(static_cast<int>(rows), c.headDim, RopeLayout::RotateHalf)
                 : std::vector<int>{};
        const std::byte* data = bytes.data() + g.dataOffset + t.offset;
        const std::uint64_t rowBytes = t.bytes / static_cast<std::uint64_t>(rows);
        auto values = std::make_shared<std::vector<float>>(static_cast<std::size_t>(t.elements));
        constexpr std::int64_t kRowsPerTask = 64;
        parallelFor((rows + kRowsPerTask - 1) / kRowsPerTask, [&](std::int64_t task) {
            const std::int64_t end = std::min(rows, (task + 1) * kRowsPerTask);
            for (std::int64_t r = task * kRowsPerTask; r < end; ++r) {
                const std::int64_t from = rope ? fileRowOf[static_cast<std::size_t>(r)] : r;
                decodeRow(t.type, data + static_cast<std::uint64_t>(from) * rowBytes, cols,
                          values->data() + r * cols);
            }
        });
        releaseMappedPages(data, static_cast<std::size_t>(t.bytes));
        view.data = reinterpret_cast<const std::byte*>(values->data());
        model->storage.push_back(std::move(values));
        *slot = view;
        model->storedTensors.push_back(std::move(view));
    }

    const auto require = [&](const TensorView& view, const std::string& ggufName) {
        if (!view.data) throw Error(source, "missing tensor '" + ggufName + "'");
    };
    require(model->embedding, "token_embd.weight");
    for (int b = 0; b < c.layerCount; ++b)
        for (const BlockName& entry : blockNames())
            require(model->blocks[static_cast<std::size_t>(b)].*entry.spec->weights,
                    "blk." + std::to_string(b) + "." + entry.gguf + ".weight");
    require(model->finalNorm, "output_norm.weight");
    if (c.tiedEmbeddings) model->lmHead = model->embedding;

    const fs::path tokenizer = file.parent_path() / "tokenizer.model";
    std::error_code error;
    if (fs::is_regular_file(tokenizer, error)) model->defaultTokenizer = tokenizer;
    return model;
}

} // namespace quantlens
