// Opening GGUF files (formats/gguf_loader.h): files written by the engine's writer from
// stories260K-hf (F32, Q8_0) and from a quantlens checkpoint, loaded back and compared tensor by
// tensor with the safetensors source and with the independent reader of tests/support/gguf_reader.h
// (q/k rows through this file's own copy of convert_hf_to_gguf.py's permutation), the config with
// the source's, and the forward pass of the F32 file with the source model's, bit for bit.
#include "error_text.h"
#include "gguf_reader.h"
#include "synthetic_fixtures.h"
#include "test_data.h"

#include "quantlens/core/error.h"
#include "quantlens/formats/gguf_loader.h"
#include "quantlens/formats/gguf_writer.h"
#include "quantlens/formats/model_export.h"
#include "quantlens/formats/model_loading.h"
#include "quantlens/runtime/perplexity.h"
#include "quantlens/runtime/transformer.h"

#include <QTemporaryDir>

#include <cstring>
#include <map>

using namespace quantlens;
using quantlens::test::errorOf;
using quantlens::test::GgufFile;
namespace fs = std::filesystem;

namespace {

constexpr int kHeadDim = 8; // stories260K: 8 heads of 8, 4 KV heads

fs::path stories() {
    return test::dataPath("stories260K-hf");
}

// llama.cpp's names of the stories260K tensors and the Hugging Face names they hold, written out
// here rather than taken from the loader.
std::string hfNameOf(const std::string& gguf) {
    static const std::map<std::string, std::string> kBlock = {
        {"attn_norm", "input_layernorm"},    {"attn_q", "self_attn.q_proj"},
        {"attn_k", "self_attn.k_proj"},      {"attn_v", "self_attn.v_proj"},
        {"attn_output", "self_attn.o_proj"}, {"ffn_norm", "post_attention_layernorm"},
        {"ffn_gate", "mlp.gate_proj"},       {"ffn_up", "mlp.up_proj"},
        {"ffn_down", "mlp.down_proj"}};
    if (gguf == "token_embd.weight") return "model.embed_tokens.weight";
    if (gguf == "output_norm.weight") return "model.norm.weight";
    if (gguf == "output.weight") return "lm_head.weight";
    const std::size_t dot = gguf.find('.', 4);
    const std::string block = gguf.substr(4, dot - 4);
    const std::string part = gguf.substr(dot + 1, gguf.size() - dot - 1 - std::strlen(".weight"));
    return "model.layers." + block + "." + kBlock.at(part) + ".weight";
}

bool isQueryOrKey(const std::string& gguf) {
    return gguf.find(".attn_q.") != std::string::npos || gguf.find(".attn_k.") != std::string::npos;
}

const TensorView& storedTensor(const Model& model, const std::string& name) {
    for (const TensorView& t : model.storedTensors)
        if (t.name == name) return t;
    throw std::runtime_error("no stored tensor " + name);
}

std::vector<float> valuesOf(const TensorView& t) {
    if (t.dtype != DType::F32) throw std::runtime_error(t.name + " is not F32");
    std::vector<float> out(static_cast<std::size_t>(t.elementCount()));
    std::memcpy(out.data(), t.data, out.size() * 4);
    return out;
}

// convert_hf_to_gguf.py's permute of a [rows, cols] matrix: within each head of d rows, llama.cpp's
// row 2i + k is Hugging Face's row k·d/2 + i.
std::vector<float> interleaved(const std::vector<float>& hf, std::int64_t rows, std::int64_t cols) {
    std::vector<float> out(hf.size());
    const int half = kHeadDim / 2;
    for (std::int64_t head = 0; head < rows / kHeadDim; ++head)
        for (int i = 0; i < half; ++i)
            for (int k = 0; k < 2; ++k)
                std::memcpy(&out[std::size_t((head * kHeadDim + 2 * i + k) * cols)],
                            &hf[std::size_t((head * kHeadDim + k * half + i) * cols)],
                            std::size_t(cols) * 4);
    return out;
}

bool sameBits(const std::vector<float>& a, const std::vector<float>& b) {
    return a.size() == b.size() && std::memcmp(a.data(), b.data(), a.size() * 4) == 0;
}

void compareConfigs(const ModelConfig& a, const ModelConfig& b) {
    QCOMPARE(a.architecture, b.architecture);
    QCOMPARE(a.hiddenSize, b.hiddenSize);
    QCOMPARE(a.intermediateSize, b.intermediateSize);
    QCOMPARE(a.layerCount, b.layerCount);
    QCOMPARE(a.headCount, b.headCount);
    QCOMPARE(a.kvHeadCount, b.kvHeadCount);
    QCOMPARE(a.headDim, b.headDim);
    QCOMPARE(a.vocabSize, b.vocabSize);
    QCOMPARE(a.maxPositions, b.maxPositions);
    QCOMPARE(a.rmsNormEps, b.rmsNormEps);
    QCOMPARE(a.ropeTheta, b.ropeTheta);
    QCOMPARE(a.ropeScaling.type, b.ropeScaling.type);
    QCOMPARE(a.ropeLayout, b.ropeLayout);
    QCOMPARE(a.slidingWindow, b.slidingWindow);
    QCOMPARE(a.attentionBias, b.attentionBias);
    QCOMPARE(a.qkNorm, b.qkNorm);
    QCOMPARE(a.tiedEmbeddings, b.tiedEmbeddings);
    QCOMPARE(a.bosToken, b.bosToken);
    QCOMPARE(a.eosTokens, b.eosTokens);
}

// Every tensor of the file, as the independent reader decodes it, equals the loaded model's (q/k
// rows permuted here into the file's order); the model holds exactly the file's tensors.
void compareWithReader(const Model& loaded, const fs::path& file) {
    const GgufFile reader(file);
    QCOMPARE(loaded.storedTensors.size(), reader.tensors().size());
    for (const auto& info : reader.tensors()) {
        const TensorView& view = storedTensor(loaded, hfNameOf(info.name));
        std::vector<float> values = valuesOf(view);
        if (isQueryOrKey(info.name))
            values =
                interleaved(values, std::int64_t(info.rowCount()), std::int64_t(info.rowLength()));
        QVERIFY2(sameBits(values, reader.values(info.name)), info.name.c_str());
        QCOMPARE(view.shape.back(), std::int64_t(info.rowLength()));
    }
}

fs::path exportTo(const fs::path& input, const fs::path& out, std::optional<GgufType> type) {
    GgufOptions options;
    options.type = type;
    exportGguf(input, out, options, JobContext{});
    return out;
}

} // namespace

class TestGgufLoader : public QObject {
    Q_OBJECT

private slots:
    void initTestCase() { QUANTLENS_REQUIRE_DATA("stories260K-hf"); }

    // The exact export of an F32 checkpoint comes back as the checkpoint: every tensor bit for
    // bit (q/k rows un-permuted), the config, and the logits and perplexity of the forward pass.
    void f32RoundTrip() {
        QTemporaryDir dir;
        const fs::path file =
            exportTo(stories(), fs::path(dir.path().toStdString()) / "m.gguf", std::nullopt);
        QVERIFY(isGgufFile(file));
        const auto source = loadModel(stories());
        // loadModel opens it too (inspect, eval and the studio read models through it).
        const auto loaded = loadModel(file);
        QCOMPARE(loaded->path, file);
        QVERIFY(loaded->compressedLayers.empty());
        QCOMPARE(loaded->defaultTokenizer, fs::path());
        compareConfigs(loaded->config, source->config);
        QVERIFY(loaded->config.tiedEmbeddings);
        QCOMPARE(loaded->lmHead.data, loaded->embedding.data);

        std::size_t compared = 0;
        forEachModelTensor(
            *source,
            [&](const std::string& name, const TensorView& view) {
                QVERIFY2(sameBits(valuesOf(storedTensor(*loaded, name)), valuesOf(view)),
                         name.c_str());
                ++compared;
            },
            [&](int block, int layer) {
                const std::string name = linearLayerPrefix(block, layer) + ".weight";
                const TensorView& view =
                    *source->blocks[std::size_t(block)].linearLayers()[std::size_t(layer)];
                const TensorView& mine =
                    *loaded->blocks[std::size_t(block)].linearLayers()[std::size_t(layer)];
                QCOMPARE(mine.name, name);
                QCOMPARE(mine.shape, view.shape);
                QVERIFY2(sameBits(valuesOf(mine), valuesOf(view)), name.c_str());
                ++compared;
            });
        QCOMPARE(compared, loaded->storedTensors.size());
        compareWithReader(*loaded, file);

        const Transformer reference(*source), opened(*loaded);
        const std::vector<std::int32_t> tokens = test::randomTokens(64, 512, 7);
        KvCache a(source->config, 64), b(loaded->config, 64);
        const RowMatrix expected = reference.forward(tokens, a);
        const RowMatrix logits = opened.forward(tokens, b);
        QCOMPARE(logits.rows(), expected.rows());
        QCOMPARE(logits.cols(), expected.cols());
        QVERIFY(std::memcmp(logits.data(), expected.data(), std::size_t(logits.size()) * 4) == 0);

        const std::vector<std::int32_t> stream = test::randomTokens(700, 512, 11);
        const PerplexityConfig config{128, PerplexityProtocol::Documents};
        const PerplexityResult p = evaluatePerplexity(reference, stream, config, JobContext{});
        const PerplexityResult q = evaluatePerplexity(opened, stream, config, JobContext{});
        QCOMPARE(q.windows, p.windows);
        QVERIFY(q.meanNll == p.meanNll);
        QVERIFY(q.perplexity == p.perplexity);
    }

    // Q8_0 (ffn_down, rows of 172, as F16): the writer's requantization decoded as the
    // independent reader decodes it; the tokenizer beside the file is found.
    void q8RoundTrip() {
        QTemporaryDir dir;
        const fs::path root = dir.path().toStdString();
        const fs::path file = exportTo(stories(), root / "m.gguf", GgufType::Q8_0);
        fs::copy_file(stories() / "tokenizer.model", root / "tokenizer.model");
        const auto loaded = loadGgufModel(file);
        compareConfigs(loaded->config, loadModel(stories())->config);
        compareWithReader(*loaded, file);
        QCOMPARE(loaded->defaultTokenizer, root / "tokenizer.model");
        // Requantized, so not the source: the comparison above would not be vacuous.
        const auto source = loadModel(stories());
        QVERIFY(!sameBits(valuesOf(loaded->blocks[0].wv), valuesOf(source->blocks[0].wv)));
    }

    // A quantlens checkpoint (RTN w4 g32) as Q8_0: its grids moved exactly, read back as
    // dequantize() gives them, in the source's row order.
    void quantlensCheckpoint() {
        QTemporaryDir dir;
        const fs::path root = dir.path().toStdString();
        {
            const auto model = loadModel(stories());
            quantizeToDirectory(*model, test::randomTokens(512, 512, 3), RtnConfig{4, 32},
                                CalibrationConfig{4, 32}, ExportFormat::Quantlens, root / "q", {},
                                JobContext{});
        }
        const fs::path file = exportTo(root / "q", root / "q.gguf", GgufType::Q8_0);
        const auto loaded = loadGgufModel(file);
        compareConfigs(loaded->config, loadModel(stories())->config);
        compareWithReader(*loaded, file);
        const auto dequantized = loadModel(root / "q");
        for (std::size_t b = 0; b < dequantized->blocks.size(); ++b)
            for (std::size_t i = 0; i < 6; ++i) { // down_proj (rows of 172) is F16, rounded
                const TensorView& expected = *dequantized->blocks[b].linearLayers()[i];
                const TensorView& mine = *loaded->blocks[b].linearLayers()[i];
                QVERIFY2(sameBits(valuesOf(mine), valuesOf(expected)), mine.name.c_str());
            }
    }

    void truncatedFile() {
        QTemporaryDir dir;
        const fs::path root = dir.path().toStdString();
        const fs::path file = exportTo(stories(), root / "m.gguf", std::nullopt);
        const std::string bytes = test::readBytes(file);
        const fs::path cut = root / "cut.gguf";
        const std::string prefix = cut.string() + ": truncated: ";
        for (const std::size_t length : {std::size_t(3), std::size_t(10), std::size_t(30),
                                         std::size_t(300), bytes.size() / 2, bytes.size() - 1}) {
            test::writeBytes(cut, bytes.substr(0, length));
            const QString error = errorOf([&] { loadGgufModel(cut); });
            QVERIFY2(error.startsWith(QString::fromStdString(prefix)),
                     qPrintable(QString::number(length) + ": " + error));
        }
        // A count that claims more than the file holds is refused before anything is allocated.
        std::string lying = bytes;
        const std::uint64_t tensors = std::uint64_t(1) << 60;
        std::memcpy(lying.data() + 8, &tensors, 8);
        test::writeBytes(cut, lying);
        QVERIFY(errorOf([&] {
                    loadGgufModel(cut);
                }).startsWith(QString::fromStdString(prefix + "the header claims")));
    }

    void badMagic() {
        QTemporaryDir dir;
        const fs::path root = dir.path().toStdString();
        const fs::path file = exportTo(stories(), root / "m.gguf", std::nullopt);
        std::string bytes = test::readBytes(file);
        bytes[0] = 'X';
        const fs::path bad = root / "bad.gguf";
        test::writeBytes(bad, bytes);
        QVERIFY(!isGgufFile(bad));
        QVERIFY(!isGgufFile(root));
        QVERIFY(!isGgufFile(stories() / "model.safetensors"));
        QCOMPARE(errorOf([&] { loadGgufModel(bad); }),
                 QString::fromStdString(bad.string() +
                                        ": not a GGUF file: it does not start with the magic "
                                        "\"GGUF\""));
    }
};

QTEST_APPLESS_MAIN(TestGgufLoader)
#include "test_gguf_loader.moc"
