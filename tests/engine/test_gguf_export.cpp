// GGUF export (docs/GGUF.md), read back with the independent reader of tests/support/gguf_reader.h
// and compared, tensor by tensor, with the safetensors source (read by hand here) and with the
// quantlens checkpoint's dequantize(): bit for bit where the export is exact, against this file's
// own emulation of ggml's reference quantizers where it requantizes, and with the error the export
// reports. q/k rows are checked against convert_hf_to_gguf.py's permutation and against the
// llama2.c checkpoint, which is in llama.cpp's order already.
#include "error_text.h"
#include "file_size_limit.h"
#include "gguf_reader.h"
#include "safetensors_mutator.h"
#include "synthetic_fixtures.h"
#include "test_data.h"

#include "quantlens/core/error.h"
#include "quantlens/formats/gguf_writer.h"
#include "quantlens/formats/model_export.h"
#include "quantlens/formats/model_loading.h"
#include "quantlens/formats/quantlens_checkpoint.h"
#include "quantlens/quantization/model_quantizer.h"
#include "quantlens/runtime/compressed_linear.h"

#include <QTemporaryDir>

#include <algorithm>
#include <bit>
#include <cctype>
#include <cmath>
#include <cstring>
#include <map>

using namespace quantlens;
using quantlens::test::errorOf;
using quantlens::test::GgmlType;
using quantlens::test::GgufFile;
using quantlens::test::GgufValue;
using quantlens::test::GgufValueType;
using quantlens::test::halfToFloat;
namespace fs = std::filesystem;

Q_DECLARE_METATYPE(quantlens::QuantConfig)

namespace {

// stories260K: 5 blocks, 8 heads of 8, 4 KV heads, FFN 172, vocabulary 512.
constexpr int kBlocks = 5;
constexpr int kHeadDim = 8;

// llama.cpp's tensor names of a block's linear layers and the Hugging Face paths they come from.
const char* const kGgufLinear[] = {"attn_q",   "attn_k", "attn_v",  "attn_output",
                                   "ffn_gate", "ffn_up", "ffn_down"};
const char* const kHfLinear[] = {"self_attn.q_proj", "self_attn.k_proj", "self_attn.v_proj",
                                 "self_attn.o_proj", "mlp.gate_proj",    "mlp.up_proj",
                                 "mlp.down_proj"};

fs::path stories() {
    return test::dataPath("stories260K-hf");
}

std::string ggufName(int block, int layer) {
    return "blk." + std::to_string(block) + "." + kGgufLinear[layer] + ".weight";
}

std::string hfName(int block, int layer) {
    return "model.layers." + std::to_string(block) + "." + kHfLinear[layer] + ".weight";
}

std::vector<std::int32_t> calibration() {
    return test::randomTokens(512, 512, 3);
}

// A quantlens checkpoint of stories260K quantized with `config`, as `quantize` writes it.
void quantize(const QuantConfig& config, const fs::path& out) {
    const auto model = loadModel(stories());
    quantizeToDirectory(*model, calibration(), config, CalibrationConfig{4, 32},
                        ExportFormat::Quantlens, out, {}, JobContext{});
}

float roundHalf(float x) {
    return static_cast<float>(static_cast<_Float16>(x));
}

float roundBf16(float x) {
    const std::uint32_t bits = std::bit_cast<std::uint32_t>(x);
    const std::uint32_t dropped = bits & 0xffffu, kept = bits >> 16;
    const std::uint32_t rounded =
        kept + (dropped > 0x8000u || (dropped == 0x8000u && (kept & 1u)) ? 1u : 0u);
    return std::bit_cast<float>(rounded << 16);
}

// A safetensors tensor (F32) as a row-major matrix.
RowMatrix sourceTensor(const test::SafetensorsParts& parts, const std::string& name) {
    const auto& entry = parts.header.at(name);
    const auto shape = entry["shape"].get<std::vector<std::int64_t>>();
    const auto begin = entry["data_offsets"][0].get<std::size_t>();
    const std::int64_t rows = shape.size() == 2 ? shape[0] : 1, cols = shape.back();
    RowMatrix m(rows, cols);
    std::memcpy(m.data(), parts.data.data() + begin, std::size_t(rows * cols) * 4);
    return m;
}

// convert_hf_to_gguf.py's permute: within each head of d rows, llama.cpp's row 2i + k is Hugging
// Face's row k·d/2 + i.
RowMatrix interleaved(const RowMatrix& hf, int headDim) {
    RowMatrix out(hf.rows(), hf.cols());
    const int half = headDim / 2;
    for (int head = 0; head < hf.rows() / headDim; ++head)
        for (int i = 0; i < half; ++i)
            for (int k = 0; k < 2; ++k)
                out.row(head * headDim + 2 * i + k) = hf.row(head * headDim + k * half + i);
    return out;
}

std::vector<float> flat(const RowMatrix& m) {
    return std::vector<float>(m.data(), m.data() + m.size());
}

// Bit-for-bit equality (so −0 differs from +0).
bool sameBits(const std::vector<float>& a, const std::vector<float>& b) {
    return a.size() == b.size() && std::memcmp(a.data(), b.data(), a.size() * 4) == 0;
}

struct Measured {
    double max = 0.0, rms = 0.0;
};
Measured measure(const std::vector<float>& written, const std::vector<float>& reference) {
    Measured m;
    double squares = 0.0;
    for (std::size_t k = 0; k < written.size(); ++k) {
        const double e = std::abs(double(written[k]) - double(reference[k]));
        m.max = std::max(m.max, e);
        squares += e * e;
    }
    m.rms = std::sqrt(squares / double(written.size()));
    return m;
}

// ggml's quantize_row_*_ref followed by dequantize_row_*, written here from ggml-quants.c's
// description: what llama.cpp's own quantizer would make of these weights.
std::vector<float> ggmlRoundTrip(const std::vector<float>& x, int type) {
    std::vector<float> out(x.size());
    for (std::size_t b = 0; b < x.size() / 32; ++b) {
        const float* v = x.data() + 32 * b;
        float* y = out.data() + 32 * b;
        if (type == int(GgmlType::Q8_0)) {
            float amax = 0.0f;
            for (int j = 0; j < 32; ++j)
                amax = std::max(amax, std::fabs(v[j]));
            const float d = amax / 127.0f, id = d != 0.0f ? 1.0f / d : 0.0f;
            for (int j = 0; j < 32; ++j)
                y[j] = float(std::int8_t(std::roundf(v[j] * id))) * roundHalf(d);
            continue;
        }
        const int top = type == int(GgmlType::Q4_1) ? 15 : 31;
        float low = v[0], high = v[0];
        for (int j = 1; j < 32; ++j) {
            low = std::min(low, v[j]);
            high = std::max(high, v[j]);
        }
        const float d = (high - low) / float(top), id = d != 0.0f ? 1.0f / d : 0.0f;
        for (int j = 0; j < 32; ++j) {
            const int q = std::min(top, int((v[j] - low) * id + 0.5f));
            y[j] = float(q) * roundHalf(d) + roundHalf(low);
        }
    }
    return out;
}

// The statistics group of each original column of an RTN/GPTQ layer (act-order layers store
// their columns permuted: permuted column p is original column perm[p]).
std::vector<int> columnGroups(const QuantizedLayer& layer) {
    const int groupsize = statisticsGroupsize(layer.config, layer.cols);
    std::vector<int> group(std::size_t(layer.cols));
    const auto perm = layer.tensors.find("perm");
    for (int p = 0; p < layer.cols; ++p)
        group[std::size_t(perm == layer.tensors.end() ? p : perm->second.indexAt(std::size_t(p)))] =
            p / groupsize;
    return group;
}

// Whether ggml block `type` holds the layer's grid exactly, judged here from the stored scales
// and zeros and the decoded weights: an RTN/GPTQ layer whose codes fit, every 32-column block in
// one statistics group, and m = −d·zero an fp16 value (Q4_1, Q5_1) or weight/d = code − zero an
// int8 (Q8_0).
bool gridFits(const QuantizedLayer& layer, int type) {
    if (!std::holds_alternative<RtnConfig>(layer.config) &&
        !std::holds_alternative<GptqConfig>(layer.config))
        return false;
    const int bits = weightBits(layer.config);
    if (bits > (type == int(GgmlType::Q4_1) ? 4 : type == int(GgmlType::Q5_1) ? 5 : 8))
        return false;
    const std::vector<int> group = columnGroups(layer);
    for (int c = 0; c < layer.cols; ++c)
        if (group[std::size_t(c)] != group[std::size_t(c / 32 * 32)]) return false;
    const StoredTensor& scales = layer.tensors.at("scales");
    const StoredTensor& zeros = layer.tensors.at("zeros");
    const int groups = int(scales.shape.at(1));
    if (type == int(GgmlType::Q8_0)) {
        const RowMatrix w = layer.dequantize();
        for (int r = 0; r < layer.rows; ++r)
            for (int c = 0; c < layer.cols; ++c) {
                const float d = halfToFloat(
                    scales.at<std::uint16_t>(std::size_t(r * groups + group[std::size_t(c)])));
                const float k = w(r, c) / d;
                if (k < -128.0f || k > 127.0f) return false;
            }
        return true;
    }
    for (int i = 0; i < layer.rows * groups; ++i) {
        const float d = halfToFloat(scales.at<std::uint16_t>(std::size_t(i)));
        const float zero = halfToFloat(zeros.at<std::uint16_t>(std::size_t(i)));
        const float m = -(d * zero);
        if (roundHalf(m) != m) return false;
    }
    return true;
}

const GgufTensorReport& reportOf(const GgufResult& result, const std::string& name) {
    for (const GgufTensorReport& t : result.tensors)
        if (t.name == name) return t;
    throw std::runtime_error("no report for " + name);
}

bool isU32(const GgufValue& v, std::uint64_t expected) {
    return v.type == GgufValueType::UInt32 && v.u == expected;
}

bool isF32(const GgufValue& v, float expected) {
    return v.type == GgufValueType::Float32 && float(v.f) == expected;
}

bool isString(const GgufValue& v, const std::string& expected) {
    return v.type == GgufValueType::String && v.s == expected;
}

// llama2.c's tok*.bin: int32 max_token_length, then per token a float32 score, an int32 length
// and the piece's bytes (spaces written as ' ', BOS and EOS as "\n<s>\n" and "\n</s>\n").
struct Llama2cVocabulary {
    std::vector<std::string> pieces;
    std::vector<float> scores;
};
Llama2cVocabulary readLlama2cVocabulary(const fs::path& file) {
    const std::string bytes = test::readBytes(file);
    Llama2cVocabulary v;
    for (std::size_t at = 4; at < bytes.size();) {
        float score;
        std::int32_t length;
        std::memcpy(&score, bytes.data() + at, 4);
        std::memcpy(&length, bytes.data() + at + 4, 4);
        v.scores.push_back(score);
        v.pieces.push_back(bytes.substr(at + 8, std::size_t(length)));
        at += 8 + std::size_t(length);
    }
    return v;
}

std::string replaceAll(std::string text, const std::string& from, const std::string& to) {
    for (std::size_t at = text.find(from); at != std::string::npos;
         at = text.find(from, at + to.size()))
        text.replace(at, from.size(), to);
    return text;
}

bool isBytePiece(const std::string& piece) {
    return piece.size() == 6 && piece.starts_with("<0x") && piece.ends_with(">") &&
           std::isxdigit(static_cast<unsigned char>(piece[3])) &&
           std::isxdigit(static_cast<unsigned char>(piece[4]));
}

} // namespace

class TestGgufExport : public QObject {
    Q_OBJECT
private slots:
    void initTestCase() { QUANTLENS_REQUIRE_DATA("stories260K-hf"); }

    // A dense F32 model, exact: every tensor as stored, q/k rows in llama.cpp's order, the same
    // bytes as the export of the llama2.c checkpoint the HF directory was converted from.
    void denseExact() {
        QTemporaryDir dir;
        const fs::path root = dir.path().toStdString();
        const GgufResult result = exportGguf(stories(), root / "hf.gguf", {}, JobContext{});
        QVERIFY(result.exact());
        QCOMPARE(result.fileType, 0u);
        QCOMPARE(result.fileBytes, fs::file_size(root / "hf.gguf"));
        const GgufFile file(root / "hf.gguf");
        QCOMPARE(file.tensors().size(), std::size_t(1 + kBlocks * 9 + 1));
        QVERIFY(!file.hasTensor("output.weight")); // tied: llama.cpp reuses token_embd
        QCOMPARE(file.alignment(), 32u);

        const test::SafetensorsParts source =
            test::readSafetensorsParts(stories() / "model.safetensors");
        const auto expect = [&](const std::string& name, const RowMatrix& values,
                                std::vector<std::uint64_t> dims) {
            const auto& info = file.tensor(name);
            QCOMPARE(info.type, std::uint32_t(GgmlType::F32));
            QCOMPARE(info.dims, dims);
            QVERIFY2(sameBits(file.values(name), flat(values)), name.c_str());
            QVERIFY2(reportOf(result, name).exact(), name.c_str());
        };
        expect("token_embd.weight", sourceTensor(source, "model.embed_tokens.weight"), {64, 512});
        expect("output_norm.weight", sourceTensor(source, "model.norm.weight"), {64});
        for (int b = 0; b < kBlocks; ++b) {
            const std::string p = "model.layers." + std::to_string(b) + ".";
            const std::string g = "blk." + std::to_string(b) + ".";
            expect(g + "attn_norm.weight", sourceTensor(source, p + "input_layernorm.weight"),
                   {64});
            expect(g + "ffn_norm.weight",
                   sourceTensor(source, p + "post_attention_layernorm.weight"), {64});
            for (int i = 0; i < 7; ++i) {
                const RowMatrix w = sourceTensor(source, hfName(b, i));
                expect(ggufName(b, i), i < 2 ? interleaved(w, kHeadDim) : w,
                       {std::uint64_t(w.cols()), std::uint64_t(w.rows())});
            }
        }

        // The llama2.c checkpoint rotates interleaved pairs already: nothing to permute, and the
        // same tensors byte for byte.
        GgufOptions options;
        options.tokenizer = test::dataPath("stories260K/tok512.model");
        exportGguf(test::dataPath("stories260K/stories260K.bin"), root / "bin.gguf", options,
                   JobContext{});
        const GgufFile llama2c(root / "bin.gguf");
        QCOMPARE(llama2c.tensors().size(), file.tensors().size());
        for (const auto& info : file.tensors()) {
            QCOMPARE(llama2c.tensor(info.name).dims, info.dims);
            QCOMPARE(llama2c.tensor(info.name).type, info.type);
            QVERIFY2(llama2c.bytes(info.name) == file.bytes(info.name), info.name.c_str());
        }
        QVERIFY(isString(llama2c.value("general.name"), "stories260K"));
    }

    // The keys llama.cpp reads, each with its GGUF value type, against config.json and the
    // llama2.c export of the same SentencePiece vocabulary.
    void metadata() {
        QTemporaryDir dir;
        const fs::path out = fs::path(dir.path().toStdString()) / "m.gguf";
        exportGguf(stories(), out, {}, JobContext{});
        const GgufFile file(out);
        const auto config = nlohmann::json::parse(test::readBytes(stories() / "config.json"));
        QCOMPARE(file.version(), 3u);
        QVERIFY(isString(file.value("general.architecture"), "llama"));
        QVERIFY(isString(file.value("general.name"), "stories260K-hf"));
        QVERIFY(isU32(file.value("general.alignment"), 32));
        QVERIFY(isU32(file.value("general.file_type"), 0)); // LLAMA_FTYPE_ALL_F32
        QVERIFY(isU32(file.value("general.quantization_version"), 2));
        const auto u = [&](const char* key, const char* configKey) {
            return isU32(file.value(key), config[configKey].get<std::uint64_t>());
        };
        QVERIFY(u("llama.context_length", "max_position_embeddings"));
        QVERIFY(u("llama.embedding_length", "hidden_size"));
        QVERIFY(u("llama.block_count", "num_hidden_layers"));
        QVERIFY(u("llama.feed_forward_length", "intermediate_size"));
        QVERIFY(u("llama.attention.head_count", "num_attention_heads"));
        QVERIFY(u("llama.attention.head_count_kv", "num_key_value_heads"));
        QVERIFY(u("llama.vocab_size", "vocab_size"));
        QVERIFY(isU32(file.value("llama.rope.dimension_count"),
                      config["hidden_size"].get<std::uint64_t>() /
                          config["num_attention_heads"].get<std::uint64_t>()));
        QVERIFY(isF32(file.value("llama.rope.freq_base"), config["rope_theta"].get<float>()));
        QVERIFY(isF32(file.value("llama.attention.layer_norm_rms_epsilon"),
                      config["rms_norm_eps"].get<float>()));
        for (const char* absent :
             {"llama.attention.key_length", "llama.rope.scaling.type", "llama.rope.scaling.factor"})
            QVERIFY2(!file.has(absent), absent);

        QVERIFY(isString(file.value("tokenizer.ggml.model"), "llama"));
        QVERIFY(isU32(file.value("tokenizer.ggml.bos_token_id"), 1));
        QVERIFY(isU32(file.value("tokenizer.ggml.eos_token_id"), 2));
        QVERIFY(isU32(file.value("tokenizer.ggml.unknown_token_id"), 0));
        QVERIFY(file.value("tokenizer.ggml.add_bos_token").type == GgufValueType::Bool);
        QVERIFY(file.value("tokenizer.ggml.add_bos_token").b);
        const GgufValue& tokens = file.value("tokenizer.ggml.tokens");
        const GgufValue& scores = file.value("tokenizer.ggml.scores");
        const GgufValue& types = file.value("tokenizer.ggml.token_type");
        QVERIFY(tokens.type == GgufValueType::Array);
        QVERIFY(tokens.elementType == GgufValueType::String);
        QVERIFY(scores.elementType == GgufValueType::Float32);
        QVERIFY(types.elementType == GgufValueType::Int32);
        const Llama2cVocabulary llama2c =
            readLlama2cVocabulary(test::dataPath("stories260K/tok512.bin"));
        QCOMPARE(tokens.items.size(), std::size_t(512));
        QCOMPARE(llama2c.pieces.size(), std::size_t(512));
        QCOMPARE(scores.items.size(), std::size_t(512));
        QCOMPARE(types.items.size(), std::size_t(512));
        int bytePieces = 0;
        for (std::size_t id = 0; id < 512; ++id) {
            const std::string& piece = tokens.items[id].s;
            QCOMPARE(float(scores.items[id].f), llama2c.scores[id]);
            if (id != 1 && id != 2) QCOMPARE(replaceAll(piece, "\u2581", " "), llama2c.pieces[id]);
            // llama.cpp's token types: 2 unknown, 3 control, 6 byte, 1 normal.
            const std::int64_t type = id == 0 ? 2 : id <= 2 ? 3 : isBytePiece(piece) ? 6 : 1;
            bytePieces += type == 6;
            QCOMPARE(types.items[id].i, type);
        }
        QVERIFY(isString(tokens.items[1], "<s>"));
        QVERIFY(isString(tokens.items[2], "</s>"));
        QCOMPARE(bytePieces, 256); // tok512 falls back to bytes
    }

    // Llama 3's RoPE scaling: llama.cpp divides each frequency by rope_freqs.weight.
    void llama3RopeFactorsAndUntiedHead() {
        QUANTLENS_REQUIRE_DATA("archs/llama3");
        QTemporaryDir dir;
        const fs::path out = fs::path(dir.path().toStdString()) / "l3.gguf";
        const GgufResult result = exportGguf(test::dataPath("archs/llama3"), out, {}, JobContext{});
        QVERIFY(result.exact());
        const GgufFile file(out);
        QCOMPARE(file.tensors().size(), std::size_t(1 + 1 + 3 * 9 + 1 + 1));
        QVERIFY(isF32(file.value("llama.rope.freq_base"), 500000.0f));
        QVERIFY(isU32(file.value("llama.rope.dimension_count"), 16));
        QVERIFY(!file.has("llama.rope.scaling.type"));
        const auto& info = file.tensor("rope_freqs.weight");
        QCOMPARE(info.dims, (std::vector<std::uint64_t>{8}));
        QCOMPARE(info.type, std::uint32_t(GgmlType::F32));
        const auto reference = nlohmann::json::parse(
            test::readBytes(test::dataPath("archs/llama3/reference.json")))["rope_inv_freq"];
        const std::vector<float> factors = file.values("rope_freqs.weight");
        for (int i = 0; i < 8; ++i) {
            const double base = std::pow(500000.0, -2.0 * i / 16.0);
            const double expected = base / reference[std::size_t(i)].get<double>();
            QVERIFY2(std::abs(factors[std::size_t(i)] - expected) <= 2e-5 * expected,
                     qPrintable(QString("factor %1: %2, expected %3")
                                    .arg(i)
                                    .arg(factors[std::size_t(i)])
                                    .arg(expected)));
        }
        const test::SafetensorsParts source =
            test::readSafetensorsParts(test::dataPath("archs/llama3/model.safetensors"));
        QVERIFY(
            sameBits(file.values("output.weight"), flat(sourceTensor(source, "lm_head.weight"))));
        // head_dim 16 over 4 heads is the 64-wide hidden size: no key_length needed.
        QVERIFY(!file.has("llama.attention.key_length"));
        QVERIFY(sameBits(file.values("blk.0.attn_q.weight"),
                         flat(interleaved(sourceTensor(source, hfName(0, 0)), 16))));
    }

    // Layers whose grid is a GGUF block type are moved, not requantized: d is the stored scale,
    // m = −d·zero, and every weight decodes to dequantize() bit for bit. The real runs' scales make
    // m no fp16 value (exactRefusesRoundedMinimum), so these layers get power-of-two scales (and
    // the 8-bit ones zero point 128) on the way into the checkpoint.
    void exactGridMapping_data() {
        QTest::addColumn<QuantConfig>("config");
        QTest::addColumn<int>("type");
        QTest::addColumn<uint>("fileType");
        QTest::newRow("rtn w4 g32") << QuantConfig(RtnConfig{4, 32}) << int(GgmlType::Q4_1) << 3u;
        QTest::newRow("rtn w3 g64") << QuantConfig(RtnConfig{3, 64}) << int(GgmlType::Q4_1) << 3u;
        QTest::newRow("gptq w5 g32")
            << QuantConfig(GptqConfig{5, 32, 128, 0.01, false}) << int(GgmlType::Q5_1) << 9u;
        QTest::newRow("rtn w8 g32") << QuantConfig(RtnConfig{8, 32}) << int(GgmlType::Q8_0) << 7u;
        QTest::newRow("gptq w4 per-row act-order")
            << QuantConfig(GptqConfig{4, 0, 128, 0.01, true}) << int(GgmlType::Q4_1) << 3u;
    }

    void exactGridMapping() {
        QFETCH(QuantConfig, config);
        QFETCH(int, type);
        QFETCH(uint, fileType);
        QTemporaryDir dir;
        const fs::path root = dir.path().toStdString();
        {
            const auto model = loadModel(stories());
            QuantlensWriter writer(*model, root / "q");
            const int bits = weightBits(config);
            quantizeModel(
                *model, calibration(), config, CalibrationConfig{4, 32},
                [&](int block, const std::string& name, const QuantizedLayer& layer,
                    const RowMatrix&) {
                    QuantizedLayer exact = layer;
                    StoredTensor& scales = exact.tensors.at("scales");
                    StoredTensor& zeros = exact.tensors.at("zeros");
                    for (std::size_t k = 0; k < scales.count(); ++k) {
                        const float d = halfToFloat(scales.at<std::uint16_t>(k));
                        const auto power = std::bit_cast<std::uint16_t>(
                            _Float16(std::exp2(std::floor(std::log2(d)))));
                        std::memcpy(scales.bytes.data() + 2 * k, &power, 2);
                        if (bits == 8) {
                            const auto zero = std::bit_cast<std::uint16_t>(_Float16(128.0f));
                            std::memcpy(zeros.bytes.data() + 2 * k, &zero, 2);
                        }
                    }
                    writer.writeLayer(block, name, exact);
                },
                JobContext{});
            writer.commit();
        }
        const GgufResult result = exportGguf(root / "q", root / "x.gguf", {}, JobContext{});
        QVERIFY(result.exact());
        QCOMPARE(result.fileType, fileType);
        const GgufFile file(root / "x.gguf");
        QVERIFY(isU32(file.value("general.file_type"), fileType));
        const auto model = loadModel(root / "q", CompressedLayers::Keep);
        for (int b = 0; b < kBlocks; ++b)
            for (int i = 0; i < 7; ++i) {
                const QuantizedLayer layer =
                    model->compressedLayers[std::size_t(b)][std::size_t(i)]->quantizedLayer();
                const RowMatrix w = layer.dequantize();
                const std::string name = ggufName(b, i);
                const auto& info = file.tensor(name);
                const GgufTensorReport& report = reportOf(result, name);
                QCOMPARE(info.dims, (std::vector<std::uint64_t>{std::uint64_t(layer.cols),
                                                                std::uint64_t(layer.rows)}));
                // down_proj's rows of 172 are no whole blocks: F32, exact.
                QCOMPARE(int(info.type), i == 6 ? int(GgmlType::F32) : type);
                QCOMPARE(report.method, std::string(i == 6 ? "dequantized" : "grid"));
                QVERIFY(gridFits(layer, type) || i == 6);
                QVERIFY2(sameBits(file.values(name), flat(i < 2 ? interleaved(w, kHeadDim) : w)),
                         name.c_str());
            }
        // One block read by hand: v_proj (not permuted), row 0, columns 0–31, group 0.
        const QuantizedLayer v = model->compressedLayers[0][2]->quantizedLayer();
        const std::string bytes = file.bytes("blk.0.attn_v.weight");
        std::uint16_t d;
        std::memcpy(&d, bytes.data(), 2);
        QCOMPARE(d, v.tensors.at("scales").at<std::uint16_t>(0));
        if (type != int(GgmlType::Q8_0)) {
            std::uint16_t m;
            std::memcpy(&m, bytes.data() + 2, 2);
            const float zero = halfToFloat(v.tensors.at("zeros").at<std::uint16_t>(0));
            QCOMPARE(halfToFloat(m), zero == 0.0f ? 0.0f : -(halfToFloat(d) * zero));
        }
    }

    // The stored statistics of a real RTN run make m = −d·zero no fp16 value: the exact export
    // names the first layer, row and group where that happens and writes nothing.
    void exactRefusesRoundedMinimum() {
        QTemporaryDir dir;
        const fs::path root = dir.path().toStdString();
        quantize(RtnConfig{4, 32}, root / "q");
        const auto model = loadModel(root / "q", CompressedLayers::Keep);
        std::string expected;
        for (int b = 0; b < kBlocks && expected.empty(); ++b)
            for (int i = 0; i < 6 && expected.empty(); ++i) { // down_proj falls back to F32
                const QuantizedLayer layer =
                    model->compressedLayers[std::size_t(b)][std::size_t(i)]->quantizedLayer();
                const StoredTensor& scales = layer.tensors.at("scales");
                const StoredTensor& zeros = layer.tensors.at("zeros");
                const int groups = int(scales.shape.at(1));
                for (int k = 0; k < layer.rows * groups && expected.empty(); ++k) {
                    const float d = halfToFloat(scales.at<std::uint16_t>(std::size_t(k)));
                    const float zero = halfToFloat(zeros.at<std::uint16_t>(std::size_t(k)));
                    if (roundHalf(-(d * zero)) != -(d * zero))
                        expected = hfName(b, i) + " does not map exactly to Q4_1: row " +
                                   std::to_string(k / groups) + " group " +
                                   std::to_string(k % groups) + " has d = ";
                }
            }
        QVERIFY(!expected.empty());
        const fs::path out = root / "q4.gguf";
        test::writeBytes(out, "an earlier file");
        const QString message = errorOf([&] { exportGguf(root / "q", out, {}, JobContext{}); });
        QVERIFY2(message.startsWith(QString::fromStdString(out.string() + ": " + expected)),
                 qPrintable(message));
        QVERIFY2(message.contains("while Q4_1 stores m in fp16; GGUF type q8_0 holds this layer "
                                  "exactly"),
                 qPrintable(message));
        QCOMPARE(test::readBytes(out), std::string("an earlier file"));
        QCOMPARE(test::entries(root), (std::vector<std::string>{"q", "q4.gguf"}));
    }

    void exactRefusals_data() {
        QTest::addColumn<QuantConfig>("config");
        QTest::addColumn<QString>("reason");
        QTest::newRow("gptq w4 g32 act-order") << QuantConfig(GptqConfig{4, 32, 128, 0.01, true})
                                               << QString("act-order puts columns ");
        QTest::newRow("rtn w4 g16")
            << QuantConfig(RtnConfig{4, 16})
            << QString("its groups of 16 columns split 32-column blocks, and a Q4_1 block has one "
                       "d and m");
        QTest::newRow("spqr") << QuantConfig(SpqrConfig{})
                              << QString("it is quantized with spqr, whose grid is no GGUF block "
                                         "type (only rtn and gptq grids are)");
        QTest::newRow("squeezellm") << QuantConfig(SqueezeConfig{4})
                                    << QString("it is quantized with squeezellm, whose grid is no "
                                               "GGUF block type (only rtn and gptq grids are)");
    }

    void exactRefusals() {
        QFETCH(QuantConfig, config);
        QFETCH(QString, reason);
        QTemporaryDir dir;
        const fs::path root = dir.path().toStdString();
        quantize(config, root / "q");
        const fs::path out = root / "x.gguf";
        const QString message = errorOf([&] { exportGguf(root / "q", out, {}, JobContext{}); });
        const QString prefix = QString::fromStdString(out.string()) +
                               ": model.layers.0.self_attn.q_proj.weight does not map exactly to "
                               "Q4_1: ";
        QVERIFY2(message.startsWith(prefix + reason), qPrintable(message));
        QCOMPARE(test::entries(root), (std::vector<std::string>{"q"}));
    }

    // Asked-for block types: exact from the grid where the layer's grid is that type, else
    // ggml's reference rule on dequantize(); down_proj (rows of 172) falls back to F16 as
    // llama.cpp's quantizer does. What the reader decodes is what the report says.
    void requestedBlockTypes_data() {
        QTest::addColumn<QuantConfig>("config");
        QTest::addColumn<int>("type");
        const int q8 = int(GgmlType::Q8_0), q4 = int(GgmlType::Q4_1), q5 = int(GgmlType::Q5_1);
        QTest::newRow("rtn w4 g32 q8_0") << QuantConfig(RtnConfig{4, 32}) << q8;
        QTest::newRow("gptq w4 g32 q8_0") << QuantConfig(GptqConfig{4, 32, 128, 0.01, false}) << q8;
        QTest::newRow("rtn w5 g32 q8_0") << QuantConfig(RtnConfig{5, 32}) << q8;
        QTest::newRow("rtn w8 g32 q8_0") << QuantConfig(RtnConfig{8, 32}) << q8;
        QTest::newRow("gptq w4 g128 q8_0")
            << QuantConfig(GptqConfig{4, 128, 128, 0.01, false}) << q8;
        QTest::newRow("gptq w4 g32 act-order q8_0")
            << QuantConfig(GptqConfig{4, 32, 128, 0.01, true}) << q8;
        QTest::newRow("spqr q8_0") << QuantConfig(SpqrConfig{}) << q8;
        QTest::newRow("rtn w4 g32 q4_1") << QuantConfig(RtnConfig{4, 32}) << q4;
        QTest::newRow("gptq w5 g32 q5_1") << QuantConfig(GptqConfig{5, 32, 128, 0.01, false}) << q5;
    }

    void requestedBlockTypes() {
        QFETCH(QuantConfig, config);
        QFETCH(int, type);
        QTemporaryDir dir;
        const fs::path root = dir.path().toStdString();
        quantize(config, root / "q");
        GgufOptions options;
        options.type = static_cast<GgufType>(type);
        const GgufResult result = exportGguf(root / "q", root / "x.gguf", options, JobContext{});
        const GgufFile file(root / "x.gguf");
        QCOMPARE(result.fileType, type == int(GgmlType::Q8_0)   ? 7u
                                  : type == int(GgmlType::Q4_1) ? 3u
                                                                : 9u);
        const auto model = loadModel(root / "q", CompressedLayers::Keep);
        const test::SafetensorsParts source =
            test::readSafetensorsParts(stories() / "model.safetensors");
        double overall = 0.0;
        const auto check = [&](const std::string& name, const std::vector<float>& reference,
                               bool exact) {
            const std::vector<float> written = file.values(name);
            const GgufTensorReport& report = reportOf(result, name);
            const Measured m = measure(written, reference);
            overall = std::max(overall, m.max);
            QVERIFY2(report.maxError == m.max, name.c_str());
            QVERIFY2(std::abs(report.rmsError - m.rms) <= 1e-12 * std::max(1.0, m.rms),
                     name.c_str());
            if (int(file.tensor(name).type) == int(GgmlType::F16)) {
                std::vector<float> rounded(reference.size());
                for (std::size_t k = 0; k < rounded.size(); ++k)
                    rounded[k] = roundHalf(reference[k]);
                QVERIFY2(sameBits(written, rounded), name.c_str());
                QCOMPARE(report.method, std::string("rounded"));
            } else if (exact) {
                QVERIFY2(sameBits(written, reference), name.c_str());
                QCOMPARE(report.method, std::string("grid"));
                QCOMPARE(m.max, 0.0);
            } else {
                QVERIFY2(sameBits(written, ggmlRoundTrip(reference, type)), name.c_str());
                QCOMPARE(report.method, std::string("requantized"));
            }
        };
        const RowMatrix embedding = sourceTensor(source, "model.embed_tokens.weight");
        QCOMPARE(int(file.tensor("token_embd.weight").type), type);
        check("token_embd.weight", flat(embedding), false);
        for (int b = 0; b < kBlocks; ++b)
            for (int i = 0; i < 7; ++i) {
                const QuantizedLayer layer =
                    model->compressedLayers[std::size_t(b)][std::size_t(i)]->quantizedLayer();
                const RowMatrix w = layer.dequantize();
                const std::string name = ggufName(b, i);
                QCOMPARE(int(file.tensor(name).type), i == 6 ? int(GgmlType::F16) : type);
                check(name, flat(i < 2 ? interleaved(w, kHeadDim) : w),
                      i != 6 && gridFits(layer, type));
                QCOMPARE(int(file.tensor("blk." + std::to_string(b) + ".attn_norm.weight").type),
                         int(GgmlType::F32));
            }
        QVERIFY(result.maxError == overall);
        QVERIFY(!result.exact());
    }

    // f32/f16/bf16: every 2-D weight converted (F32 of a quantized run is exact), norms F32.
    void requestedFloatTypes() {
        QTemporaryDir dir;
        const fs::path root = dir.path().toStdString();
        const test::SafetensorsParts source =
            test::readSafetensorsParts(stories() / "model.safetensors");
        for (const GgufType type : {GgufType::F16, GgufType::BF16}) {
            GgufOptions options;
            options.type = type;
            const fs::path out = root / (ggufTypeName(type) + ".gguf");
            const GgufResult result = exportGguf(stories(), out, options, JobContext{});
            QCOMPARE(result.fileType, type == GgufType::F16 ? 1u : 32u);
            const GgufFile file(out);
            for (int b = 0; b < kBlocks; ++b)
                for (int i = 0; i < 7; ++i) {
                    RowMatrix w = sourceTensor(source, hfName(b, i));
                    if (i < 2) w = interleaved(w, kHeadDim);
                    std::vector<float> expected = flat(w);
                    for (float& x : expected)
                        x = type == GgufType::F16 ? roundHalf(x) : roundBf16(x);
                    const std::string name = ggufName(b, i);
                    QCOMPARE(file.tensor(name).type, std::uint32_t(type));
                    QVERIFY2(sameBits(file.values(name), expected), name.c_str());
                    QCOMPARE(reportOf(result, name).maxError, measure(expected, flat(w)).max);
                }
            QCOMPARE(file.tensor("output_norm.weight").type, std::uint32_t(GgmlType::F32));
            QVERIFY(sameBits(file.values("output_norm.weight"),
                             flat(sourceTensor(source, "model.norm.weight"))));
        }

        quantize(RtnConfig{4, 32}, root / "q");
        GgufOptions options;
        options.type = GgufType::F32;
        const GgufResult result = exportGguf(root / "q", root / "f32.gguf", options, JobContext{});
        QVERIFY(result.exact());
        const GgufFile file(root / "f32.gguf");
        const auto model = loadModel(root / "q", CompressedLayers::Keep);
        for (int i = 0; i < 7; ++i) {
            const RowMatrix w =
                model->compressedLayers[3][std::size_t(i)]->quantizedLayer().dequantize();
            QVERIFY(
                sameBits(file.values(ggufName(3, i)), flat(i < 2 ? interleaved(w, kHeadDim) : w)));
            QCOMPARE(reportOf(result, ggufName(3, i)).method, std::string("dequantized"));
        }
    }

    void otherArchitecturesRefused() {
        QTemporaryDir dir;
        const fs::path out = fs::path(dir.path().toStdString()) / "x.gguf";
        for (const auto& [name, architecture] : std::map<std::string, std::string>{
                 {"archs/qwen2", "Qwen2ForCausalLM"}, {"archs/mistral", "MistralForCausalLM"}}) {
            if (!fs::exists(test::dataPath(name))) continue;
            QCOMPARE(errorOf([&] { exportGguf(test::dataPath(name), out, {}, JobContext{}); }),
                     QString::fromStdString(
                         out.string() + ": " + test::dataPath(name).string() + " is a " +
                         architecture +
                         " model; the GGUF export writes llama.cpp's \"llama\" architecture, "
                         "which holds LlamaForCausalLM models only"));
        }
        QVERIFY(!fs::exists(out));
    }

    void tokenizerRefused() {
        QTemporaryDir dir;
        const fs::path out = fs::path(dir.path().toStdString()) / "x.gguf";
        // stories260K.bin's own tokenizer is tok512.bin, which lacks SentencePiece's piece types.
        QCOMPARE(errorOf([&] {
                     exportGguf(test::dataPath("stories260K/stories260K.bin"), out, {},
                                JobContext{});
                 }),
                 QString::fromStdString(out.string() + ": " +
                                        test::dataPath("stories260K/tok512.bin").string() +
                                        " is a llama2.c tokenizer; llama.cpp's \"llama\" "
                                        "vocabulary needs the SentencePiece model it was exported "
                                        "from (a tokenizer.model)"));
        QVERIFY(!fs::exists(out));
        QCOMPARE(errorOf([] { parseGgufType("q4_0"); }),
                 QString("unknown GGUF type 'q4_0' (f32, f16, bf16, q8_0, q4_1 or q5_1)"));
    }

    // A cancel or a full disk leaves no file and an earlier one untouched.
    void atomicWrites() {
        QTemporaryDir dir;
        const fs::path root = dir.path().toStdString();
        const fs::path out = root / "m.gguf";
        test::writeBytes(out, "an earlier file");
        JobContext cancelled;
        cancelled.requestCancel();
        QCOMPARE(errorOf([&] { exportGguf(stories(), out, {}, cancelled); }), QString("cancelled"));
        QCOMPARE(test::readBytes(out), std::string("an earlier file"));

        const std::string message = test::inChildWithFileSizeLimit(64 * 1024, [&] {
            return errorOf([&] { exportGguf(stories(), root / "full.gguf", {}, JobContext{}); })
                .toStdString();
        });
        const std::string expected =
            (root / "full.gguf").string() + ": write failed: File too large";
        QVERIFY2(message.compare(0, expected.size(), expected) == 0, message.c_str());
        QCOMPARE(test::entries(root), (std::vector<std::string>{"m.gguf"}));
    }
};

QTEST_APPLESS_MAIN(TestGgufExport)
#include "test_gguf_export.moc"
