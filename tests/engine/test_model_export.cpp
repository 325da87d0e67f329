// Export of quantlens checkpoints: dense F32/F16/BF16 and the GPTQ checkpoint layout, each decoded
// here independently of the writers (the safetensors bytes read by hand, fp16 through the
// compiler's _Float16, GPTQ codes unpacked the way AutoGPTQ's QuantLinear does) and compared with
// QuantizedLayer::dequantize(); atomic output on failure, cancel and a full disk.
#include "error_text.h"
#include "file_size_limit.h"
#include "safetensors_mutator.h"
#include "synthetic_fixtures.h"
#include "test_data.h"

#include "quantlens/core/error.h"
#include "quantlens/encoding/bit_packing.h"
#include "quantlens/formats/gptq_checkpoint.h"
#include "quantlens/formats/model_export.h"
#include "quantlens/formats/model_loading.h"
#include "quantlens/formats/quantlens_checkpoint.h"
#include "quantlens/model/synthetic_model.h"
#include "quantlens/quantization/layer_quantizer.h"
#include "quantlens/quantization/model_quantizer.h"
#include "quantlens/runtime/compressed_linear.h"
#include "quantlens/runtime/kv_cache.h"
#include "quantlens/runtime/transformer.h"

#include <QTemporaryDir>

#include <bit>
#include <cstring>

using namespace quantlens;
using quantlens::test::errorOf;
namespace fs = std::filesystem;

Q_DECLARE_METATYPE(quantlens::QuantConfig)

namespace {

float fromHalf(std::uint16_t bits) {
    return static_cast<float>(std::bit_cast<_Float16>(bits));
}

// Round to nearest even on the 16 dropped bits (finite values).
std::uint16_t toBf16(float value) {
    const std::uint32_t bits = std::bit_cast<std::uint32_t>(value);
    const std::uint32_t dropped = bits & 0xffffu, kept = bits >> 16;
    return static_cast<std::uint16_t>(kept +
                                      (dropped > 0x8000u || (dropped == 0x8000u && (kept & 1u))));
}

// Code i of a column packed along its dimension, as AutoGPTQ's QuantLinear unpacks it: 2/4/8-bit
// codes sit at shifts 0, bits, … of each word; 3-bit codes come in triples of words holding 32
// codes, codes 10 and 21 split across words (qlinear_cuda_old's wf table and fix-ups).
int autoGptqCode(const std::function<std::uint32_t(std::size_t)>& word, int i, int bits) {
    if (bits != 3) {
        const int perWord = 32 / bits;
        return static_cast<int>((word(i / perWord) >> (bits * (i % perWord))) & ((1u << bits) - 1));
    }
    const std::uint32_t a = word(3 * (i / 32)), b = word(3 * (i / 32) + 1),
                        c = word(3 * (i / 32) + 2);
    const int k = i % 32;
    if (k < 10) return static_cast<int>((a >> (3 * k)) & 7);
    if (k == 10) return static_cast<int>(((a >> 30) & 3) | ((b << 2) & 4));
    if (k < 21) return static_cast<int>((b >> (3 * (k - 11) + 1)) & 7);
    if (k == 21) return static_cast<int>(((b >> 31) & 1) | ((c << 1) & 6));
    return static_cast<int>((c >> (3 * (k - 22) + 2)) & 7);
}

// W [out, in] from a GPTQ layer's four tensors: scales[g_idx[i], o] · (q − (qzero + 1)).
// v1 ("gptq") stores zero − 1; v2 ("gptq_v2") the zero itself.
RowMatrix decodeGptq(const std::vector<std::int32_t>& qweight,
                     const std::vector<std::int32_t>& qzeros,
                     const std::vector<std::uint16_t>& scales,
                     const std::vector<std::int32_t>& gIdx, int out, int in, int bits,
                     bool v1 = true) {
    RowMatrix w(out, in);
    const int zeroWords = out * bits / 32;
    for (int o = 0; o < out; ++o)
        for (int i = 0; i < in; ++i) {
            const int g = gIdx[std::size_t(i)];
            const int q = autoGptqCode(
                [&](std::size_t k) { return std::uint32_t(qweight[k * std::size_t(out) + o]); }, i,
                bits);
            const int zero = autoGptqCode(
                                 [&](std::size_t k) {
                                     return std::uint32_t(qzeros[std::size_t(g) * zeroWords + k]);
                                 },
                                 o, bits) +
                             (v1 ? 1 : 0);
            w(o, i) = fromHalf(scales[std::size_t(g) * out + o]) *
                      (static_cast<float>(q) - static_cast<float>(zero));
        }
    return w;
}

struct Quantized {
    std::unique_ptr<Model> source;
    std::vector<QuantizedLayer> layers; // block-major
};

Quantized writeQuantlens(const fs::path& model, const QuantConfig& config, const fs::path& out,
                         std::vector<std::int32_t> calibration) {
    Quantized q{loadModel(model), {}};
    QuantlensWriter writer(*q.source, out);
    quantizeModel(
        *q.source, calibration, config, CalibrationConfig{4, 32},
        [&](int block, const std::string& name, const QuantizedLayer& layer, const RowMatrix&) {
            q.layers.push_back(layer);
            writer.writeLayer(block, name, layer);
        },
        JobContext{});
    writer.commit();
    return q;
}

fs::path gptqShapedModel(const fs::path& root) {
    const fs::path dir = root / "synthetic";
    test::writeGptqShapedModel(dir, 5);
    return dir;
}

std::vector<std::int32_t> randomTokens(int count, int vocab) {
    return test::randomTokens(count, vocab, 3);
}

} // namespace

class TestModelExport : public QObject {
    Q_OBJECT
private slots:
    void initTestCase() { QUANTLENS_REQUIRE_DATA("stories260K-hf"); }

    void denseExport() {
        QTemporaryDir dir;
        const fs::path root = dir.path().toStdString();
        const Quantized q = writeQuantlens(test::dataPath("stories260K-hf"), SpqrConfig{},
                                           root / "q", randomTokens(512, 512));
        const test::RawFile source(test::dataPath("stories260K-hf/model.safetensors"));
        const char* linear[] = {"self_attn.q_proj", "self_attn.k_proj", "self_attn.v_proj",
                                "self_attn.o_proj", "mlp.gate_proj",    "mlp.up_proj",
                                "mlp.down_proj"};
        for (const char* format : {"dense-f32", "dense-f16", "dense-bf16"}) {
            const fs::path out = root / format;
            exportModel(root / "q", parseExportFormat(format), out, JobContext{});
            QCOMPARE(
                test::entries(out),
                (std::vector<std::string>{"config.json", "model.safetensors", "tokenizer.model"}));
            const std::string dtype = std::string(format) == "dense-f32"   ? "F32"
                                      : std::string(format) == "dense-f16" ? "F16"
                                                                           : "BF16";
            const auto config = nlohmann::json::parse(test::readBytes(out / "config.json"));
            QCOMPARE(config["torch_dtype"].get<std::string>(),
                     std::string(dtype == "F32"   ? "float32"
                                 : dtype == "F16" ? "float16"
                                                  : "bfloat16"));
            const test::RawFile written(out / "model.safetensors");
            // Every tensor of the source, in the dtype, holding the expected values.
            const auto expect = [&](const std::string& name, const float* values, std::size_t n) {
                QCOMPARE(written.dtype(name), dtype);
                if (dtype == "F32") {
                    QVERIFY(written.values<float>(name) == std::vector<float>(values, values + n));
                    return;
                }
                const auto got = written.values<std::uint16_t>(name);
                QCOMPARE(got.size(), n);
                for (std::size_t k = 0; k < n; ++k) {
                    const std::uint16_t want =
                        dtype == "F16"
                            ? std::bit_cast<std::uint16_t>(static_cast<_Float16>(values[k]))
                            : toBf16(values[k]);
                    if (got[k] != want)
                        QFAIL(qPrintable(QString("%1[%2] = %3, expected %4")
                                             .arg(QString::fromStdString(name))
                                             .arg(k)
                                             .arg(got[k])
                                             .arg(want)));
                }
            };
            for (const auto& [name, entry] : source.parts.header.items()) {
                if (name == "__metadata__" || name.find("_proj.") != std::string::npos) continue;
                const auto values = source.values<float>(name);
                expect(name, values.data(), values.size());
            }
            for (int b = 0; b < 5; ++b)
                for (int i = 0; i < 7; ++i) {
                    const std::string name =
                        "model.layers." + std::to_string(b) + "." + linear[i] + ".weight";
                    const RowMatrix w = q.layers[std::size_t(b * 7 + i)].dequantize();
                    expect(name, w.data(), std::size_t(w.size()));
                }
        }
        // The F32 export is the in-memory quantized model: identical logits.
        std::vector<std::array<RowMatrix, 7>> reconstruction(5);
        for (int b = 0; b < 5; ++b)
            for (int i = 0; i < 7; ++i)
                reconstruction[std::size_t(b)][std::size_t(i)] =
                    q.layers[std::size_t(b * 7 + i)].dequantize();
        const auto inMemory = withLinearLayers(*q.source, std::move(reconstruction));
        const auto exported = loadModel(root / "dense-f32");
        const std::vector<std::int32_t> tokens = randomTokens(20, 512);
        KvCache a(inMemory->config, 32), b(exported->config, 32);
        QVERIFY(Transformer(*inMemory).forward(tokens, a) ==
                Transformer(*exported).forward(tokens, b));
    }

    void gptqExport_data() {
        QTest::addColumn<QuantConfig>("config");
        QTest::addColumn<int>("groupSize");
        QTest::newRow("gptq w4 g32 act-order")
            << QuantConfig(GptqConfig{4, 32, 128, 0.01, true}) << 32;
        QTest::newRow("gptq w3 per-row") << QuantConfig(GptqConfig{3, 0, 128, 0.01, false}) << -1;
        QTest::newRow("gptq w3 g16 act-order")
            << QuantConfig(GptqConfig{3, 16, 128, 0.01, true}) << 16;
        QTest::newRow("rtn w2 g16") << QuantConfig(RtnConfig{2, 16}) << 16;
        QTest::newRow("rtn w8 g64") << QuantConfig(RtnConfig{8, 64}) << 64;
    }

    void gptqExport() {
        QFETCH(QuantConfig, config);
        QFETCH(int, groupSize);
        QTemporaryDir dir;
        const fs::path root = dir.path().toStdString();
        const fs::path model = gptqShapedModel(root);
        const Quantized q = writeQuantlens(model, config, root / "q", randomTokens(256, 128));
        exportModel(root / "q", ExportFormat::Gptq, root / "gptq", JobContext{});
        QCOMPARE(
            test::entries(root / "gptq"),
            (std::vector<std::string>{"config.json", "model.safetensors", "quantize_config.json"}));
        const int bits = weightBits(config);
        const auto quantization = nlohmann::json::parse(
            test::readBytes(root / "gptq/config.json"))["quantization_config"];
        QCOMPARE(quantization["quant_method"].get<std::string>(), std::string("gptq"));
        QCOMPARE(quantization["bits"].get<int>(), bits);
        QCOMPARE(quantization["group_size"].get<int>(), groupSize);
        QCOMPARE(quantization["desc_act"].get<bool>(), std::holds_alternative<GptqConfig>(config) &&
                                                           std::get<GptqConfig>(config).actOrder);
        QCOMPARE(quantization["sym"].get<bool>(), false);
        const std::string format = quantization["checkpoint_format"].get<std::string>();
        QVERIFY(format == "gptq" || format == "gptq_v2");
        QCOMPARE(nlohmann::json::parse(test::readBytes(root / "gptq/quantize_config.json")),
                 quantization);

        const test::RawFile written(root / "gptq/model.safetensors");
        const test::RawFile source(model / "model.safetensors");
        QVERIFY(written.values<float>("model.embed_tokens.weight") ==
                source.values<float>("model.embed_tokens.weight"));
        const char* linear[] = {"self_attn.q_proj", "self_attn.k_proj", "self_attn.v_proj",
                                "self_attn.o_proj", "mlp.gate_proj",    "mlp.up_proj",
                                "mlp.down_proj"};
        for (int b = 0; b < 2; ++b)
            for (int i = 0; i < 7; ++i) {
                const QuantizedLayer& layer = q.layers[std::size_t(b * 7 + i)];
                const std::string p = "model.layers." + std::to_string(b) + "." + linear[i];
                QVERIFY(!written.has(p + ".weight"));
                const int out = layer.rows, in = layer.cols;
                const int groupsize = statisticsGroupsize(config, in);
                const int groups = (in + groupsize - 1) / groupsize;
                QCOMPARE(written.dtype(p + ".qweight"), std::string("I32"));
                QCOMPARE(written.shape(p + ".qweight"),
                         (std::vector<std::int64_t>{in * bits / 32, out}));
                QCOMPARE(written.shape(p + ".qzeros"),
                         (std::vector<std::int64_t>{groups, out * bits / 32}));
                QCOMPARE(written.dtype(p + ".scales"), std::string("F16"));
                QCOMPARE(written.shape(p + ".scales"), (std::vector<std::int64_t>{groups, out}));
                QCOMPARE(written.shape(p + ".g_idx"), (std::vector<std::int64_t>{in}));
                const RowMatrix decoded = decodeGptq(written.values<std::int32_t>(p + ".qweight"),
                                                     written.values<std::int32_t>(p + ".qzeros"),
                                                     written.values<std::uint16_t>(p + ".scales"),
                                                     written.values<std::int32_t>(p + ".g_idx"),
                                                     out, in, bits, format == "gptq");
                QVERIFY2(decoded == layer.dequantize(), p.c_str());
                // v2 is written only when some layer cannot be held by v1.
                if (format == "gptq") QVERIFY(fitsGptqV1(layer));
            }
    }

    // Zero points of 0 are re-expressed (codes + 1) or refused; llama2.c row order is undone.
    void gptqLayerEdgeCases() {
        QuantizedLayer layer =
            quantizeLayer(syntheticMatrix(64, 64, 9, "edge"), {}, RtnConfig{3, 32}, JobContext{});
        std::vector<std::uint16_t> codes(64 * 64);
        const auto* words =
            reinterpret_cast<const std::uint32_t*>(layer.tensors.at("codes").bytes.data());
        for (int r = 0; r < 64; ++r)
            for (int j = 0; j < 64; ++j)
                codes[std::size_t(r * 64 + j)] =
                    static_cast<std::uint16_t>(unpackCode(words + r * 6, std::size_t(j), 3));
        // Row 0, group 1 (columns 32…63) gets zero point 0; every group with zero 0 keeps its
        // codes at most 6, so that + 1 fits.
        const std::uint16_t zeroBits = 0;
        std::memcpy(layer.tensors.at("zeros").bytes.data() + 2 * 1, &zeroBits, 2);
        for (int r = 0; r < 64; ++r)
            for (int g = 0; g < 2; ++g)
                if (layer.tensors.at("zeros").f16At(std::size_t(r * 2 + g)) == 0.0f)
                    for (int j = 32 * g; j < 32 * g + 32; ++j)
                        codes[std::size_t(r * 64 + j)] =
                            std::min<std::uint16_t>(codes[std::size_t(r * 64 + j)], 6);
        const auto store = [&](QuantizedLayer& l) {
            l.tensors["codes"] = StoredTensor::of("U32", {64, 6}, packRows(codes, 64, 3));
        };
        store(layer);
        const auto decodeLayer = [](const GptqLayer& g) {
            return decodeGptq(g.qweight, g.qzeros, g.scales, g.gIdx, g.rows, g.cols, g.bits);
        };
        const RowMatrix expected = layer.dequantize();
        QVERIFY(fitsGptqV1(layer));
        QVERIFY(decodeLayer(toGptqLayer(layer, "edge", false, 0)) == expected);

        // llama2.c rotates pairs (2i, 2i+1) of each head; the export puts row 2i+k at k·8+i.
        const RowMatrix rope = decodeLayer(toGptqLayer(layer, "edge", true, 16));
        for (int head = 0; head < 4; ++head)
            for (int i = 0; i < 8; ++i)
                for (int k = 0; k < 2; ++k)
                    QVERIFY(rope.row(head * 16 + k * 8 + i) == expected.row(head * 16 + 2 * i + k));

        codes[40] = 7;
        store(layer);
        QVERIFY(!fitsGptqV1(layer));
        QCOMPARE(errorOf([&] { toGptqLayer(layer, "edge", false, 0); }),
                 QString("edge: row 0 group 1 has zero point 0 and uses code 7: the GPTQ v1 layout "
                         "stores zero − 1 and cannot hold it"));
        const GptqLayer v2 = toGptqLayer(layer, "edge", false, 0, GptqZeros::V2);
        QVERIFY(decodeGptq(v2.qweight, v2.qzeros, v2.scales, v2.gIdx, 64, 64, 3, false) ==
                layer.dequantize());
    }

    void gptqRefusals() {
        QTemporaryDir dir;
        const fs::path root = dir.path().toStdString();
        writeQuantlens(test::dataPath("stories260K-hf"), SpqrConfig{}, root / "spqr",
                       randomTokens(512, 512));
        writeQuantlens(test::dataPath("stories260K-hf"), GptqConfig{4, 16, 128, 0.01, false},
                       root / "gptq", randomTokens(512, 512));
        QCOMPARE(errorOf([&] { exportModel(root / "spqr", ExportFormat::Gptq, root / "out", {}); }),
                 QString("model.layers.0.self_attn.q_proj: is quantized with spqr; the GPTQ layout "
                         "holds only rtn and gptq layers (export spqr as quantlens or dense)"));
        QCOMPARE(errorOf([&] { exportModel(root / "gptq", ExportFormat::Gptq, root / "out", {}); }),
                 QString("model.layers.0.mlp.gate_proj: is 172×64; the GPTQ layout packs 32 codes "
                         "into 4 words along both dimensions, so in and out features must be "
                         "multiples of 32"));
        QCOMPARE(test::entries(root), (std::vector<std::string>{"gptq", "spqr"}));
        QCOMPARE(errorOf([&] {
                     exportModel(test::dataPath("stories260K-hf"), ExportFormat::DenseF16,
                                 root / "out", {});
                 }),
                 QString::fromStdString(test::dataPath("stories260K-hf").string()) +
                     ": is not a quantlens checkpoint (export reads the directories `quantize "
                     "--format quantlens` writes)");
    }

    // Failed, cancelled and disk-full exports leave nothing behind and the old output intact.
    void atomicExport() {
        QTemporaryDir dir;
        const fs::path root = dir.path().toStdString();
        writeQuantlens(test::dataPath("stories260K-hf"), SqueezeConfig{3, 0.45, 0.05, 20},
                       root / "q", randomTokens(512, 512));
        exportModel(root / "q", ExportFormat::DenseF16, root / "out", JobContext{});
        const std::string before = test::readBytes(root / "out/model.safetensors");

        JobContext cancelled;
        cancelled.requestCancel();
        QCOMPARE(errorOf([&] {
                     exportModel(root / "q", ExportFormat::DenseF32, root / "out", cancelled);
                 }),
                 QString("cancelled"));
        QCOMPARE(errorOf([&] { exportModel(root / "q", ExportFormat::Gptq, root / "out", {}); }),
                 QString("model.layers.0.self_attn.q_proj: is quantized with squeezellm; the GPTQ "
                         "layout holds only rtn and gptq layers (export squeezellm as quantlens "
                         "or dense)"));
        QCOMPARE(test::entries(root), (std::vector<std::string>{"out", "q"}));
        QVERIFY(test::readBytes(root / "out/model.safetensors") == before);

        // A full disk: the child may write 64 KiB per file; the export fails part-way.
        const std::string message = test::inChildWithFileSizeLimit(64 * 1024, [&] {
            return errorOf(
                       [&] { exportModel(root / "q", ExportFormat::DenseF32, root / "full", {}); })
                .toStdString();
        });
        // Attributed to the file the user asked for, not to the staging directory.
        const std::string expected = (root / "full/model.safetensors").string() +
                                     ": write failed: File too large (while writing tensor '";
        QVERIFY2(message.compare(0, expected.size(), expected) == 0, message.c_str());
        QCOMPARE(test::entries(root), (std::vector<std::string>{"out", "q"}));
    }

    // Re-writing a quantlens checkpoint keeps every array.
    void quantlensRewrite() {
        QTemporaryDir dir;
        const fs::path root = dir.path().toStdString();
        const Quantized q = writeQuantlens(test::dataPath("stories260K-hf"), SpqrConfig{},
                                           root / "q", randomTokens(512, 512));
        exportModel(root / "q", ExportFormat::Quantlens, root / "again", JobContext{});
        const auto model = loadModel(root / "again", CompressedLayers::Keep);
        for (int b = 0; b < 5; ++b)
            for (int i = 0; i < 7; ++i) {
                const QuantizedLayer read =
                    model->compressedLayers[std::size_t(b)][std::size_t(i)]->quantizedLayer();
                for (const auto& [key, tensor] : q.layers[std::size_t(b * 7 + i)].tensors)
                    QVERIFY(read.tensors.at(key).bytes == tensor.bytes);
            }
    }
};

QTEST_APPLESS_MAIN(TestModelExport)
#include "test_model_export.moc"
