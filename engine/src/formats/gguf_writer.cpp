#include "quantlens/formats/gguf_writer.h"

#include "formats/gguf_blocks.h"
#include "formats/original_order.h"
#include "formats/rope_rows.h"
#include "quantlens/core/dtype.h"
#include "quantlens/core/error.h"
#include "quantlens/core/float_tensor.h"
#include "quantlens/io/atomic_file.h"
#include "quantlens/runtime/compressed_linear.h"
#include "quantlens/tokenizer/sentencepiece_vocabulary.h"
#include "runtime/transformer_ops.h"

#include <algorithm>
#include <array>
#include <bit>
#include <cctype>
#include <cfloat>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <map>
#include <optional>
#include <variant>

namespace quantlens {
namespace {

namespace fs = std::filesystem;

static_assert(std::endian::native == std::endian::little,
              "GGUF is little-endian and is written from memory as is");

constexpr std::uint32_t kGgufVersion = 3;
constexpr std::uint32_t kAlignment = 32;   // general.alignment, ggml's GGUF_DEFAULT_ALIGNMENT
constexpr std::uint32_t kQuantVersion = 2; // general.quantization_version, GGML_QNT_VERSION

std::string format(const char* pattern, double value) {
    char text[64];
    std::snprintf(text, sizeof text, pattern, value);
    return text;
}

bool isBlockType(GgufType type) {
    return type == GgufType::Q8_0 || type == GgufType::Q4_1 || type == GgufType::Q5_1;
}

// llama.cpp's llama_ftype of a file whose weights are mostly `type`.
std::uint32_t fileTypeOf(GgufType type) {
    switch (type) {
    case GgufType::F32:
        return 0;
    case GgufType::F16:
        return 1;
    case GgufType::Q4_1:
        return 3;
    case GgufType::Q8_0:
        return 7;
    case GgufType::Q5_1:
        return 9;
    case GgufType::BF16:
        return 32;
    }
    return 0;
}

GgufType ggufTypeOf(DType dtype) {
    return dtype == DType::F32   ? GgufType::F32
           : dtype == DType::F16 ? GgufType::F16
                                 : GgufType::BF16;
}

// ---- metadata: typed key-value pairs (ggml's docs/gguf.md, gguf_metadata_kv_t) ----

using gguf::ValueType;

class Bytes {
public:
    template <typename T> void put(T value) {
        const std::size_t at = bytes_.size();
        bytes_.resize(at + sizeof(T));
        std::memcpy(bytes_.data() + at, &value, sizeof(T));
    }
    // gguf_string_t: a uint64 byte length, then the UTF-8 bytes without a terminator.
    void string(std::string_view text) {
        put<std::uint64_t>(text.size());
        bytes_.append(text);
    }
    const std::string& bytes() const { return bytes_; }

private:
    std::string bytes_;
};

class Metadata {
public:
    void string(std::string_view key, std::string_view value) {
        begin(key, ValueType::String);
        bytes_.string(value);
    }
    void u32(std::string_view key, std::uint32_t value) {
        begin(key, ValueType::UInt32);
        bytes_.put(value);
    }
    void f32(std::string_view key, float value) {
        begin(key, ValueType::Float32);
        bytes_.put(value);
    }
    void boolean(std::string_view key, bool value) {
        begin(key, ValueType::Bool);
        bytes_.put<std::uint8_t>(value ? 1 : 0);
    }
    void strings(std::string_view key, const std::vector<std::string>& values) {
        array(key, ValueType::String, values.size());
        for (const std::string& value : values)
            bytes_.string(value);
    }
    void f32s(std::string_view key, const std::vector<float>& values) {
        array(key, ValueType::Float32, values.size());
        for (const float value : values)
            bytes_.put(value);
    }
    void i32s(std::string_view key, const std::vector<std::int32_t>& values) {
        array(key, ValueType::Int32, values.size());
        for (const std::int32_t value : values)
            bytes_.put(value);
    }
    std::uint64_t count() const { return count_; }
    const std::string& bytes() const { return bytes_.bytes(); }

private:
    void begin(std::string_view key, ValueType type) {
        bytes_.string(key);
        bytes_.put(static_cast<std::uint32_t>(type));
        ++count_;
    }
    // An array: its element type, a uint64 count, then the elements without their types.
    void array(std::string_view key, ValueType type, std::size_t count) {
        begin(key, ValueType::Array);
        bytes_.put(static_cast<std::uint32_t>(type));
        bytes_.put<std::uint64_t>(count);
    }
    Bytes bytes_;
    std::uint64_t count_ = 0;
};

// ---- blocks, laid out as ggml-common.h's block_q8_0, block_q4_1 and block_q5_1 ----

// block_q8_0: fp16 d, then 32 int8 codes; weight j = d·q[j].
void packQ8_0(std::uint16_t d, const std::int8_t* q, std::uint8_t* out) {
    std::memcpy(out, &d, 2);
    std::memcpy(out + 2, q, gguf::kBlock);
}

// block_q4_1: fp16 d, fp16 m, 16 bytes whose low nibble is code j and high nibble code j + 16;
// weight j = d·q[j] + m.
void packQ4_1(std::uint16_t d, std::uint16_t m, const std::uint8_t* q, std::uint8_t* out) {
    std::memcpy(out, &d, 2);
    std::memcpy(out + 2, &m, 2);
    for (int j = 0; j < gguf::kBlock / 2; ++j)
        out[4 + j] = static_cast<std::uint8_t>((q[j] & 0x0f) | (q[j + gguf::kBlock / 2] << 4));
}

// block_q5_1: fp16 d, fp16 m, a uint32 whose bit j is bit 4 of code j, then the low nibbles as
// in Q4_1.
void packQ5_1(std::uint16_t d, std::uint16_t m, const std::uint8_t* q, std::uint8_t* out) {
    std::memcpy(out, &d, 2);
    std::memcpy(out + 2, &m, 2);
    std::uint32_t high = 0;
    for (int j = 0; j < gguf::kBlock; ++j)
        high |= static_cast<std::uint32_t>((q[j] >> 4) & 1) << j;
    std::memcpy(out + 4, &high, 4);
    for (int j = 0; j < gguf::kBlock / 2; ++j)
        out[8 + j] =
            static_cast<std::uint8_t>((q[j] & 0x0f) | ((q[j + gguf::kBlock / 2] & 0x0f) << 4));
}

void packAffine(GgufType type, std::uint16_t d, std::uint16_t m, const std::uint8_t* q,
                std::uint8_t* out) {
    if (type == GgufType::Q4_1)
        packQ4_1(d, m, q, out);
    else
        packQ5_1(d, m, q, out);
}

// ggml's reference quantizers (quantize_row_q8_0_ref, _q4_1_ref, _q5_1_ref): what llama.cpp's
// own quantize writes for these weights.
void requantizeBlock(GgufType type, const float* x, std::uint8_t* out) {
    if (type == GgufType::Q8_0) {
        float amax = 0.0f;
        for (int j = 0; j < gguf::kBlock; ++j)
            amax = std::max(amax, std::abs(x[j]));
        const float d = amax / 127.0f, id = d != 0.0f ? 1.0f / d : 0.0f;
        std::int8_t q[gguf::kBlock];
        for (int j = 0; j < gguf::kBlock; ++j)
            q[j] = static_cast<std::int8_t>(std::round(x[j] * id));
        packQ8_0(floatToF16(d), q, out);
        return;
    }
    const int maxCode = type == GgufType::Q4_1 ? 15 : 31;
    float low = FLT_MAX, high = -FLT_MAX;
    for (int j = 0; j < gguf::kBlock; ++j) {
        low = std::min(low, x[j]);
        high = std::max(high, x[j]);
    }
    const float d = (high - low) / static_cast<float>(maxCode), id = d != 0.0f ? 1.0f / d : 0.0f;
    std::uint8_t q[gguf::kBlock];
    for (int j = 0; j < gguf::kBlock; ++j)
        q[j] = static_cast<std::uint8_t>(
            std::min(maxCode, static_cast<int>((x[j] - low) * id + 0.5f)));
    packAffine(type, floatToF16(d), floatToF16(low), q, out);
}

// ---- RTN/GPTQ grids as blocks ----

int codeBitsOf(GgufType type) {
    return type == GgufType::Q4_1 ? 4 : type == GgufType::Q5_1 ? 5 : 8;
}

// The block type a quantized layer's codes fit most compactly.
GgufType nativeTypeOf(int bits) {
    return bits <= 4 ? GgufType::Q4_1 : bits == 5 ? GgufType::Q5_1 : GgufType::Q8_0;
}

std::string upper(GgufType type) {
    std::string name = ggufTypeName(type);
    std::transform(name.begin(), name.end(), name.begin(),
                   [](unsigned char c) { return static_cast<char>(std::toupper(c)); });
    return name;
}

// m = −d·zero, the block minimum of Q4_1/Q5_1. d is fp16 and zero an integer below 2^8, so the
// product is exact in fp32; +0 rather than −0 for a zero point of 0.
float blockMinimum(float scale, float zero) {
    return zero == 0.0f ? 0.0f : -(scale * zero);
}

// Why the grid of `layer` is not `type` (so that its codes cannot be moved into blocks of that
// type unchanged), or "" when it is. Rows of `layer` are counted in the model's order.
std::string gridMismatch(const QuantizedLayer& layer, const CompressedMatrix& m,
                         const OriginalOrder& order, GgufType type) {
    if (!std::holds_alternative<RtnConfig>(layer.config) &&
        !std::holds_alternative<GptqConfig>(layer.config))
        return "it is quantized with " + methodName(layer.config) +
               ", whose grid is no GGUF block type (only rtn and gptq grids are)";
    const int bits = m.wbits, cols = layer.cols;
    if (bits > codeBitsOf(type))
        return "its " + std::to_string(bits) + "-bit codes do not fit the " +
               std::to_string(codeBitsOf(type)) + "-bit codes of " + upper(type);
    for (int c0 = 0; c0 + gguf::kBlock <= cols; c0 += gguf::kBlock)
        for (int c = c0 + 1; c < c0 + gguf::kBlock; ++c) {
            const int g0 = order.group[static_cast<std::size_t>(c0)],
                      g = order.group[static_cast<std::size_t>(c)];
            if (g == g0) continue;
            const std::string statistics = type == GgufType::Q8_0 ? "one d" : "one d and m";
            if (m.permuted())
                return "act-order puts columns " + std::to_string(c0) + " and " +
                       std::to_string(c) + " of one 32-column block in groups " +
                       std::to_string(g0) + " and " + std::to_string(g) + ", and a " + upper(type) +
                       " block has " + statistics;
            return "its groups of " + std::to_string(m.groupsize) +
                   " columns split 32-column blocks, and a " + upper(type) + " block has " +
                   statistics;
        }
    const StoredTensor& scales = layer.tensors.at("scales");
    const StoredTensor& zeros = layer.tensors.at("zeros");
    const auto at = [&](int r, int c) {
        return static_cast<std::size_t>(r) * m.groups + order.group[static_cast<std::size_t>(c)];
    };
    if (type == GgufType::Q8_0) {
        for (int r = 0; r < layer.rows; ++r)
            for (int c = 0; c < cols; ++c) {
                const int q = order.codes[static_cast<std::size_t>(r) * cols + c];
                const int zero = static_cast<int>(zeros.f16At(at(r, c)));
                if (q - zero < -128 || q - zero > 127)
                    return "row " + std::to_string(r) + " column " + std::to_string(c) +
                           " has code " + std::to_string(q) + " and zero point " +
                           std::to_string(zero) +
                           ", and code − zero = " + std::to_string(q - zero) +
                           " is outside Q8_0's int8 codes";
            }
        return "";
    }
    for (int r = 0; r < layer.rows; ++r)
        for (int g = 0; g < m.groups; ++g) {
            const std::size_t i = static_cast<std::size_t>(r) * m.groups + g;
            const float scale = scales.f16At(i), zero = zeros.f16At(i);
            const float minimum = blockMinimum(scale, zero);
            const float stored = f16ToFloat(floatToF16(minimum));
            if (stored != minimum)
                return "row " + std::to_string(r) + " group " + std::to_string(g) +
                       " has d = " + format("%.9g", scale) + " and zero point " +
                       format("%.0f", zero) + ", and m = −d·zero = " + format("%.9g", minimum) +
                       " is no fp16 value (the nearest is " + format("%.9g", stored) + "), while " +
                       upper(type) + " stores m in fp16";
        }
    return "";
}

// The blocks of `layer` as `type`, rows in the order `rowOf` (row r of the result is layer row
// rowOf[r]), moved from its codes and statistics; gridMismatch() must have returned "".
std::vector<std::uint8_t> gridBlocks(const QuantizedLayer& layer, const CompressedMatrix& m,
                                     const OriginalOrder& order, GgufType type,
                                     const std::vector<int>& rowOf) {
    const int rows = layer.rows, cols = layer.cols, blocks = cols / gguf::kBlock;
    const std::size_t blockBytes = ggufBlockBytes(type);
    std::vector<std::uint8_t> out(static_cast<std::size_t>(rows) * blocks * blockBytes);
    const StoredTensor& scales = layer.tensors.at("scales");
    const StoredTensor& zeros = layer.tensors.at("zeros");
    for (int to = 0; to < rows; ++to) {
        const int r = rowOf[static_cast<std::size_t>(to)];
        const std::uint16_t* codes = order.codes.data() + static_cast<std::size_t>(r) * cols;
        for (int b = 0; b < blocks; ++b) {
            const std::size_t i = static_cast<std::size_t>(r) * m.groups +
                                  order.group[static_cast<std::size_t>(b * gguf::kBlock)];
            const std::uint16_t d = scales.at<std::uint16_t>(i);
            const float zero = zeros.f16At(i);
            std::uint8_t* block =
                out.data() + (static_cast<std::size_t>(to) * blocks + b) * blockBytes;
            if (type == GgufType::Q8_0) {
                std::int8_t q[gguf::kBlock];
                for (int j = 0; j < gguf::kBlock; ++j)
                    q[j] = static_cast<std::int8_t>(codes[b * gguf::kBlock + j] -
                                                    static_cast<int>(zero));
                packQ8_0(d, q, block);
            } else {
                std::uint8_t q[gguf::kBlock];
                for (int j = 0; j < gguf::kBlock; ++j)
                    q[j] = static_cast<std::uint8_t>(codes[b * gguf::kBlock + j]);
                packAffine(type, d, floatToF16(blockMinimum(scales.f16At(i), zero)), q, block);
            }
        }
    }
    return out;
}

// ---- tensors ----

std::vector<std::uint8_t> encode(GgufType type, const RowMatrix& values) {
    const std::size_t n = static_cast<std::size_t>(values.size());
    const float* x = values.data();
    std::vector<std::uint8_t> out(n / static_cast<std::size_t>(ggufBlockSize(type)) *
                                  ggufBlockBytes(type));
    switch (type) {
    case GgufType::F32:
        std::memcpy(out.data(), x, n * 4);
        break;
    case GgufType::F16:
    case GgufType::BF16:
        for (std::size_t i = 0; i < n; ++i) {
            const std::uint16_t bits = type == GgufType::F16 ? floatToF16(x[i]) : floatToBf16(x[i]);
            std::memcpy(out.data() + 2 * i, &bits, 2);
        }
        break;
    default:
        for (std::size_t b = 0; b < n / gguf::kBlock; ++b)
            requantizeBlock(type, x + b * gguf::kBlock, out.data() + b * ggufBlockBytes(type));
    }
    return out;
}

std::vector<float> decode(GgufType type, const std::vector<std::uint8_t>& bytes, std::size_t n) {
    std::vector<float> out(n);
    switch (type) {
    case GgufType::F32:
        std::memcpy(out.data(), bytes.data(), n * 4);
        break;
    case GgufType::F16:
    case GgufType::BF16:
        for (std::size_t i = 0; i < n; ++i) {
            std::uint16_t bits = 0;
            std::memcpy(&bits, bytes.data() + 2 * i, 2);
            out[i] = type == GgufType::F16 ? f16ToFloat(bits) : bf16ToFloat(bits);
        }
        break;
    default:
        for (std::size_t b = 0; b < n / gguf::kBlock; ++b)
            gguf::decodeBlock(type, bytes.data() + b * ggufBlockBytes(type),
                              out.data() + b * gguf::kBlock);
    }
    return out;
}

// Where a tensor's values come from.
enum class SourceKind { Dense, Compressed, RopeFactors };

struct PlannedTensor {
    std::string name;        // GGUF
    std::string modelTensor; // the model's name, for reports and errors
    SourceKind kind = SourceKind::Dense;
    const TensorView* view = nullptr;             // Dense
    const CompressedLinear* compressed = nullptr; // Compressed
    bool rope = false;   // q/k rows to move into llama.cpp's interleaved RoPE order
    bool vector = false; // 1-D (norms, rope_freqs): ne = [cols]
    std::int64_t rows = 1, cols = 0;
    GgufType type = GgufType::F32;
    std::string method;
    std::string note;
    std::uint64_t offset = 0; // from the start of the data section
    std::uint64_t bytes = 0;
};

// The row order of a tensor in the file (identity unless it is a rotate-half q/k_proj).
std::vector<int> rowOrder(const PlannedTensor& t, const ModelConfig& c) {
    if (t.rope) return ropeRowOrder(static_cast<int>(t.rows), c.headDim, RopeLayout::Interleaved);
    std::vector<int> order(static_cast<std::size_t>(t.rows));
    for (int r = 0; r < static_cast<int>(t.rows); ++r)
        order[static_cast<std::size_t>(r)] = r;
    return order;
}

RowMatrix permutedRows(const RowMatrix& values, const std::vector<int>& rowOf) {
    RowMatrix out(values.rows(), values.cols());
    for (Eigen::Index r = 0; r < values.rows(); ++r)
        out.row(r) = values.row(rowOf[static_cast<std::size_t>(r)]);
    return out;
}

// Llama 3's RoPE as llama.cpp takes it: rope_freqs.weight [headDim/2] holds the factor each
// frequency is divided by, the unscaled frequency over the one the engine rotates with.
RowMatrix ropeFactors(const ModelConfig& config) {
    ModelConfig unscaled = config;
    unscaled.ropeScaling = RopeScalingConfig{};
    const Eigen::VectorXf base = ops::ropeInverseFrequencies(unscaled);
    const Eigen::VectorXf scaled = ops::ropeInverseFrequencies(config);
    RowMatrix factors(1, base.size());
    for (Eigen::Index i = 0; i < base.size(); ++i)
        factors(0, i) = base[i] / scaled[i];
    return factors;
}

// The model's values of a tensor in the file's row order.
RowMatrix referenceValues(const PlannedTensor& t, const Model& model, const std::vector<int>& rowOf,
                          const QuantizedLayer* layer) {
    if (t.kind == SourceKind::RopeFactors) return ropeFactors(model.config);
    RowMatrix values;
    if (t.kind == SourceKind::Compressed) {
        values = layer->dequantize();
    } else {
        const FloatTensor tensor(*t.view);
        values = Eigen::Map<const RowMatrix>(tensor.data(), t.rows, t.cols);
    }
    return t.rope ? permutedRows(values, rowOf) : values;
}

std::string defaultName(const Model& model) {
    fs::path path = model.path.lexically_normal();
    if (path.filename().empty()) path = path.parent_path();
    return model.format == ModelFormat::Llama2c ? path.stem().string() : path.filename().string();
}

struct Vocabulary {
    std::vector<std::string> tokens;
    std::vector<float> scores;
    std::vector<std::int32_t> types;
    int unknownId = -1, padId = -1;
};

// The SentencePiece vocabulary, padded to the model's vocabulary as llama.cpp's converter pads
// it ([PAD1]…, score −1000, unused).
Vocabulary vocabularyFor(const Model& model, const GgufOptions& options, const std::string& file) {
    const fs::path path = options.tokenizer.empty() ? model.defaultTokenizer : options.tokenizer;
    if (path.empty())
        throw Error(file, "no tokenizer was found beside " + model.path.string() +
                              "; GGUF carries the vocabulary, so give the SentencePiece "
                              "tokenizer.model to take it from");
    if (path.extension() == ".bin")
        throw Error(file, path.string() +
                              " is a llama2.c tokenizer; llama.cpp's \"llama\" vocabulary needs "
                              "the SentencePiece model it was exported from (a tokenizer.model)");
    const SentencePieceVocabulary pieces = readSentencePieceVocabulary(path);
    const int vocab = model.config.vocabSize;
    if (static_cast<int>(pieces.pieces.size()) > vocab)
        throw Error(file, path.string() + " has " + std::to_string(pieces.pieces.size()) +
                              " pieces, more than the model's vocabulary of " +
                              std::to_string(vocab));
    Vocabulary out{pieces.pieces, pieces.scores, {}, pieces.unknownId, pieces.padId};
    for (const TokenKind kind : pieces.kinds)
        out.types.push_back(static_cast<std::int32_t>(kind));
    for (int i = 1; static_cast<int>(out.tokens.size()) < vocab; ++i) {
        out.tokens.push_back("[PAD" + std::to_string(i) + "]");
        out.scores.push_back(-1000.0f);
        out.types.push_back(static_cast<std::int32_t>(TokenKind::Unused));
    }
    return out;
}

Metadata metadataFor(const Model& model, const GgufOptions& options, const Vocabulary& vocabulary,
                     std::uint32_t fileType) {
    const ModelConfig& c = model.config;
    Metadata kv;
    kv.string("general.architecture", "llama");
    kv.string("general.name", options.name.empty() ? defaultName(model) : options.name);
    kv.u32("general.alignment", kAlignment);
    kv.u32("general.file_type", fileType);
    kv.u32("general.quantization_version", kQuantVersion);
    kv.u32("llama.vocab_size", static_cast<std::uint32_t>(c.vocabSize));
    kv.u32("llama.context_length", static_cast<std::uint32_t>(c.maxPositions));
    kv.u32("llama.embedding_length", static_cast<std::uint32_t>(c.hiddenSize));
    kv.u32("llama.block_count", static_cast<std::uint32_t>(c.layerCount));
    kv.u32("llama.feed_forward_length", static_cast<std::uint32_t>(c.intermediateSize));
    kv.u32("llama.rope.dimension_count", static_cast<std::uint32_t>(c.headDim));
    kv.f32("llama.rope.freq_base", c.ropeTheta);
    kv.u32("llama.attention.head_count", static_cast<std::uint32_t>(c.headCount));
    kv.u32("llama.attention.head_count_kv", static_cast<std::uint32_t>(c.kvHeadCount));
    kv.f32("llama.attention.layer_norm_rms_epsilon", c.rmsNormEps);
    if (c.headDim * c.headCount != c.hiddenSize) { // llama.cpp assumes hidden / heads otherwise
        kv.u32("llama.attention.key_length", static_cast<std::uint32_t>(c.headDim));
        kv.u32("llama.attention.value_length", static_cast<std::uint32_t>(c.headDim));
    }
    if (c.ropeScaling.type == RopeScaling::Linear) {
        kv.string("llama.rope.scaling.type", "linear");
        kv.f32("llama.rope.scaling.factor", c.ropeScaling.factor);
    }
    kv.string("tokenizer.ggml.model", "llama");
    kv.strings("tokenizer.ggml.tokens", vocabulary.tokens);
    kv.f32s("tokenizer.ggml.scores", vocabulary.scores);
    kv.i32s("tokenizer.ggml.token_type", vocabulary.types);
    kv.u32("tokenizer.ggml.bos_token_id", static_cast<std::uint32_t>(c.bosToken));
    kv.u32("tokenizer.ggml.eos_token_id", static_cast<std::uint32_t>(c.eosTokens.at(0)));
    if (vocabulary.unknownId >= 0)
        kv.u32("tokenizer.ggml.unknown_token_id", static_cast<std::uint32_t>(vocabulary.unknownId));
    if (vocabulary.padId >= 0)
        kv.u32("tokenizer.ggml.padding_token_id", static_cast<std::uint32_t>(vocabulary.padId));
    // The engine's protocols put BOS in front of every sequence and never append EOS.
    kv.boolean("tokenizer.ggml.add_bos_token", true);
    kv.boolean("tokenizer.ggml.add_eos_token", false);
    return kv;
}

// Every tensor of the file in order, with the type each is written as. Throws (exact export)
// for a layer that does not map.
std::vector<PlannedTensor> planTensors(const Model& model, const GgufOptions& options,
                                       const std::string& file) {
    const ModelConfig& c = model.config;
    const bool compressed = !model.compressedLayers.empty();
    const std::optional<GgufType> requested = options.type;
    std::vector<PlannedTensor> plan;

    const auto fallbackNote = [](std::int64_t cols, GgufType wanted, GgufType used) {
        return "rows of " + std::to_string(cols) + " are not a multiple of 32, so not " +
               upper(wanted) + " blocks: " + upper(used) +
               (used == GgufType::F16 ? ", llama.cpp's fallback"
                                      : ", which keeps the exact export exact (llama.cpp falls "
                                        "back to F16, which would round)");
    };
    // A dense tensor: a norm (1-D, always F32) or a 2-D weight.
    const auto dense = [&](std::string name, const TensorView& view, bool norm, bool rope) {
        PlannedTensor t;
        t.name = std::move(name);
        t.modelTensor = view.name;
        t.view = &view;
        t.rope = rope;
        if (norm) {
            t.vector = true;
            t.cols = view.elementCount();
        } else {
            t.rows = view.shape.at(0);
            t.cols = view.shape.at(1);
        }
        const GgufType stored = ggufTypeOf(view.dtype);
        if (norm || !requested) {
            t.type = norm ? GgufType::F32 : stored;
        } else if (isBlockType(*requested) && t.cols % gguf::kBlock != 0) {
            t.type = GgufType::F16;
            t.note = fallbackNote(t.cols, *requested, t.type);
        } else {
            t.type = *requested;
        }
        const bool widened = t.type == GgufType::F32 || t.type == stored;
        t.method = isBlockType(t.type) ? "requantized" : widened ? "copied" : "rounded";
        plan.push_back(std::move(t));
    };
    const auto linear = [&](int block, int layer) {
        const LinearLayerSpec& spec = kLinearLayers[static_cast<std::size_t>(layer)];
        const std::string name = "blk." + std::to_string(block) + "." +
                                 gguf::kLinearNames[static_cast<std::size_t>(layer)] + ".weight";
        const bool rope = spec.rotary && c.ropeLayout == RopeLayout::RotateHalf;
        if (!compressed) {
            dense(name, model.blocks[static_cast<std::size_t>(block)].*spec.weights, false, rope);
            return;
        }
        const CompressedLinear& op = *model.compressedLayers[static_cast<std::size_t>(block)]
                                                            [static_cast<std::size_t>(layer)];
        PlannedTensor t;
        t.name = name;
        t.modelTensor = linearLayerPrefix(block, layer) + ".weight";
        t.kind = SourceKind::Compressed;
        t.compressed = &op;
        t.rope = rope;
        t.rows = op.rows();
        t.cols = op.cols();
        const GgufType wanted = requested ? *requested : nativeTypeOf(weightBits(op.config()));
        if (!isBlockType(wanted)) {
            t.type = wanted;
            t.method = wanted == GgufType::F32 ? "dequantized" : "rounded";
        } else if (t.cols % gguf::kBlock != 0) {
            t.type = requested ? GgufType::F16 : GgufType::F32;
            t.method = requested ? "rounded" : "dequantized";
            t.note = fallbackNote(t.cols, wanted, t.type);
        } else {
            const QuantizedLayer quantized = op.quantizedLayer();
            const CompressedMatrix& m = op.matrix();
            const bool affine = std::holds_alternative<RtnConfig>(quantized.config) ||
                                std::holds_alternative<GptqConfig>(quantized.config);
            const OriginalOrder order = affine ? originalOrder(quantized, m) : OriginalOrder{};
            const std::string mismatch = gridMismatch(quantized, m, order, wanted);
            t.type = wanted;
            if (mismatch.empty()) {
                t.method = "grid";
            } else if (requested) {
                t.method = "requantized";
                t.note = "not exact: " + mismatch;
            } else {
                const bool q8Holds = affine && wanted != GgufType::Q8_0 &&
                                     gridMismatch(quantized, m, order, GgufType::Q8_0).empty();
                throw Error(file, t.modelTensor + " does not map exactly to " + upper(wanted) +
                                      ": " + mismatch +
                                      (q8Holds ? "; GGUF type q8_0 holds this layer exactly, and "
                                                 "any type can be asked for as an approximation"
                                               : "; ask for a GGUF type to write an "
                                                 "approximation, with its error measured"));
            }
        }
        plan.push_back(std::move(t));
    };

    dense("token_embd.weight", model.embedding, false, false);
    if (c.ropeScaling.type == RopeScaling::Llama3) {
        PlannedTensor t;
        t.name = "rope_freqs.weight";
        t.kind = SourceKind::RopeFactors;
        t.vector = true;
        t.cols = c.headDim / 2;
        t.method = "computed";
        plan.push_back(std::move(t));
    }
    for (int b = 0; b < c.layerCount; ++b) {
        const BlockWeights& w = model.blocks[static_cast<std::size_t>(b)];
        const std::string prefix = "blk." + std::to_string(b) + ".";
        dense(prefix + gguf::kAttentionNorm + ".weight", w.attnNorm, true, false);
        for (int i = 0; i < 4; ++i)
            linear(b, i);
        dense(prefix + gguf::kMlpNorm + ".weight", w.ffnNorm, true, false);
        for (int i = 4; i < kLinearLayerCount; ++i)
            linear(b, i);
    }
    dense("output_norm.weight", model.finalNorm, true, false);
    if (!c.tiedEmbeddings) dense("output.weight", model.lmHead, false, false);

    std::uint64_t offset = 0;
    for (PlannedTensor& t : plan) {
        t.offset = offset;
        t.bytes = static_cast<std::uint64_t>(t.rows * t.cols) /
                  static_cast<std::uint64_t>(ggufBlockSize(t.type)) * ggufBlockBytes(t.type);
        offset += (t.bytes + kAlignment - 1) / kAlignment * kAlignment;
    }
    return plan;
}

// general.file_type: the type of most linear-layer weights.
std::uint32_t fileTypeFor(const std::vector<PlannedTensor>& plan,
                          const std::optional<GgufType>& requested) {
    if (requested) return fileTypeOf(*requested);
    std::map<GgufType, std::int64_t> weights;
    for (const PlannedTensor& t : plan)
        if (t.name.starts_with("blk.") && t.rows > 1) weights[t.type] += t.rows * t.cols;
    GgufType most = GgufType::F32;
    std::int64_t count = -1;
    for (const auto& [type, n] : weights)
        if (n > count) {
            most = type;
            count = n;
        }
    return fileTypeOf(most);
}

void checkArchitecture(const Model& model, const std::string& file) {
    const ModelConfig& c = model.config;
    if (c.architecture != Architecture::Llama)
        throw Error(file, model.path.string() + " is a " + architectureName(c.architecture) +
                              " model; the GGUF export writes llama.cpp's \"llama\" architecture, "
                              "which holds LlamaForCausalLM models only");
    if (c.eosTokens.empty()) throw Error(file, model.path.string() + " names no EOS token");
    if (!model.compressedLayers.empty() && model.compressedLayers.size() != model.blocks.size())
        throw Error(file, model.path.string() + " has compressed layers for " +
                              std::to_string(model.compressedLayers.size()) + " of its " +
                              std::to_string(model.blocks.size()) + " blocks");
}

} // namespace

std::string ggufTypeName(GgufType type) {
    switch (type) {
    case GgufType::F32:
        return "f32";
    case GgufType::F16:
        return "f16";
    case GgufType::BF16:
        return "bf16";
    case GgufType::Q8_0:
        return "q8_0";
    case GgufType::Q4_1:
        return "q4_1";
    case GgufType::Q5_1:
        return "q5_1";
    }
    return "?";
}

GgufType parseGgufType(std::string_view name) {
    for (const GgufType type : {GgufType::F32, GgufType::F16, GgufType::BF16, GgufType::Q8_0,
                                GgufType::Q4_1, GgufType::Q5_1})
        if (ggufTypeName(type) == name) return type;
    throw Error("", "unknown GGUF type '" + std::string(name) +
                        "' (f32, f16, bf16, q8_0, q4_1 or q5_1)");
}

int ggufBlockSize(GgufType type) {
    return isBlockType(type) ? gguf::kBlock : 1;
}

std::size_t ggufBlockBytes(GgufType type) {
    switch (type) {
    case GgufType::F32:
        return 4;
    case GgufType::F16:
    case GgufType::BF16:
        return 2;
    case GgufType::Q8_0:
        return 2 + 32;
    case GgufType::Q4_1:
        return 2 + 2 + 16;
    case GgufType::Q5_1:
        return 2 + 2 + 4 + 16;
    }
    return 0;
}

GgufResult writeGguf(const Model& model, const fs::path& file, const GgufOptions& options,
                     const JobContext& job) {
    const std::string target = file.string();
    checkArchitecture(model, target);
    const std::vector<PlannedTensor> plan = planTensors(model, options, target);
    const Vocabulary vocabulary = vocabularyFor(model, options, target);
    GgufResult result;
    result.fileType = fileTypeFor(plan, options.type);
    const Metadata kv = metadataFor(model, options, vocabulary, result.fileType);

    // Header, metadata and tensor infos (gguf_header_t, gguf_tensor_info_t), padded to the
    // alignment; tensor offsets count from there. ne[0] is the row length.
    Bytes header;
    header.put<std::uint32_t>(0x46554747u); // "GGUF"
    header.put(kGgufVersion);
    header.put<std::uint64_t>(plan.size());
    header.put<std::uint64_t>(kv.count());
    std::string bytes = header.bytes() + kv.bytes();
    Bytes infos;
    for (const PlannedTensor& t : plan) {
        infos.string(t.name);
        infos.put<std::uint32_t>(t.vector ? 1 : 2);
        infos.put<std::uint64_t>(static_cast<std::uint64_t>(t.cols));
        if (!t.vector) infos.put<std::uint64_t>(static_cast<std::uint64_t>(t.rows));
        infos.put(static_cast<std::uint32_t>(t.type));
        infos.put(t.offset);
    }
    bytes += infos.bytes();
    bytes.resize((bytes.size() + kAlignment - 1) / kAlignment * kAlignment, '\0');

    job.checkpoint();
    AtomicFile out(file);
    out.write(bytes.data(), bytes.size());
    double squares = 0.0;
    std::int64_t elements = 0;
    const char padding[kAlignment] = {};
    for (std::size_t k = 0; k < plan.size(); ++k) {
        const PlannedTensor& t = plan[k];
        job.checkpoint();
        job.report(static_cast<double>(k) / static_cast<double>(plan.size()), "gguf " + t.name);
        const std::vector<int> rowOf = rowOrder(t, model.config);
        std::optional<QuantizedLayer> layer;
        if (t.kind == SourceKind::Compressed) layer = t.compressed->quantizedLayer();
        const RowMatrix reference = referenceValues(t, model, rowOf, layer ? &*layer : nullptr);
        std::vector<std::uint8_t> data;
        if (t.method == "grid") {
            const OriginalOrder order = originalOrder(*layer, t.compressed->matrix());
            data = gridBlocks(*layer, t.compressed->matrix(), order, t.type, rowOf);
        } else {
            data = encode(t.type, reference);
        }
        if (data.size() != t.bytes)
            throw Error(target, "internal error: " + t.name + " came to " +
                                    std::to_string(data.size()) + " bytes, planned " +
                                    std::to_string(t.bytes));

        GgufTensorReport report{t.name, t.modelTensor, t.type, t.method, t.note, t.rows * t.cols};
        const std::vector<float> decoded =
            decode(t.type, data, static_cast<std::size_t>(report.elements));
        double tensorSquares = 0.0;
        for (std::size_t i = 0; i < decoded.size(); ++i) {
            const double e = std::abs(static_cast<double>(decoded[i]) - reference.data()[i]);
            report.maxError = std::max(report.maxError, e);
            tensorSquares += e * e;
        }
        report.rmsError = std::sqrt(tensorSquares / static_cast<double>(report.elements));
        if (!options.type && t.kind != SourceKind::RopeFactors && !report.exact())
            throw Error(target, "internal error: " + t.name + " was to be exact but differs by " +
                                    format("%.9g", report.maxError));
        squares += tensorSquares;
        elements += report.elements;
        result.maxError = std::max(result.maxError, report.maxError);
        result.tensors.push_back(std::move(report));

        // Every tensor's data is padded to the alignment, the last included, as ggml writes it.
        out.write(data.data(), data.size());
        const std::uint64_t end = (t.bytes + kAlignment - 1) / kAlignment * kAlignment;
        if (end > t.bytes) out.write(padding, end - t.bytes);
    }
    result.rmsError = elements > 0 ? std::sqrt(squares / static_cast<double>(elements)) : 0.0;
    job.checkpoint(); // a cancel during the last tensor still leaves nothing
    out.commit();
    result.fileBytes = fs::file_size(file);
    return result;
}

namespace gguf {

void decodeBlock(GgufType type, const std::uint8_t* in, float* out) {
    std::uint16_t dBits = 0, mBits = 0;
    std::memcpy(&dBits, in, 2);
    const float d = f16ToFloat(dBits);
    if (type == GgufType::Q8_0) {
        for (int j = 0; j < kBlock; ++j)
            out[j] = static_cast<float>(static_cast<std::int8_t>(in[2 + j])) * d;
        return;
    }
    std::memcpy(&mBits, in + 2, 2);
    const float m = f16ToFloat(mBits);
    std::uint32_t high = 0;
    const std::uint8_t* low = in + 4;
    if (type == GgufType::Q5_1) {
        std::memcpy(&high, in + 4, 4);
        low = in + 8;
    }
    for (int j = 0; j < kBlock / 2; ++j) {
        const int q0 = (low[j] & 0x0f) | static_cast<int>(((high >> j) & 1) << 4);
        const int q1 = (low[j] >> 4) | static_cast<int>(((high >> (j + 16)) & 1) << 4);
        out[j] = static_cast<float>(q0) * d + m;
        out[j + kBlock / 2] = static_cast<float>(q1) * d + m;
    }
}

} // namespace gguf

} // namespace quantlens
