#include "safetensors_mutator.h"
#include "test_data.h"

#include <QTemporaryDir>

#include <algorithm>

#include "quantlens/core/error.h"
#include "quantlens/core/float_tensor.h"
#include "quantlens/formats/model_loading.h"
#include "quantlens/model/model.h"

using namespace quantlens;

namespace {

// stories260K (data/README.md): dim 64, 5 layers, 8 heads, 4 KV heads, FFN 172, vocab 512, tied.
constexpr std::int64_t kDim = 64, kFfn = 172, kVocab = 512, kLayers = 5, kKvDim = 32;
constexpr std::int64_t kParameters =
    kVocab * kDim + kLayers * (2 * kDim + 2 * kDim * kDim + 2 * kKvDim * kDim + 3 * kFfn * kDim) +
    kDim;

void checkStoriesConfig(const ModelConfig& c) {
    QCOMPARE(c.hiddenSize, 64);
    QCOMPARE(c.intermediateSize, 172);
    QCOMPARE(c.layerCount, 5);
    QCOMPARE(c.headCount, 8);
    QCOMPARE(c.kvHeadCount, 4);
    QCOMPARE(c.headDim, 8);
    QCOMPARE(c.vocabSize, 512);
    QCOMPARE(c.maxPositions, 512);
    QCOMPARE(c.rmsNormEps, 1e-5f);
    QCOMPARE(c.ropeTheta, 10000.0f);
    QVERIFY(c.tiedEmbeddings);
}

bool sameRow(const TensorView& a, std::int64_t rowA, const TensorView& b, std::int64_t rowB) {
    const FloatTensor fa(a), fb(b);
    return fa.matrix().row(rowA) == fb.matrix().row(rowB);
}

} // namespace

class TestModelLoading : public QObject {
    Q_OBJECT
private slots:
    void loadsHuggingFaceDirectory() {
        QUANTLENS_REQUIRE_DATA("stories260K-hf");
        const auto model = loadModel(test::dataPath("stories260K-hf"));
        QCOMPARE(model->format, ModelFormat::HuggingFace);
        checkStoriesConfig(model->config);
        QCOMPARE(model->config.ropeLayout, RopeLayout::RotateHalf);
        QCOMPARE(model->blocks.size(), std::size_t(5));
        QCOMPARE(model->parameterCount(), kParameters);
        QCOMPARE(model->storedBytes(), std::size_t(kParameters * 4));
        QCOMPARE(model->lmHead.data, model->embedding.data); // tied: the same bytes, no copy
        QCOMPARE(model->defaultTokenizer, test::dataPath("stories260K-hf/tokenizer.model"));
    }

    // The layer layout names every tensor the checkpoint stores, each once, and gives each linear
    // layer its view: one table for loaders and writers alike.
    void layerLayoutNamesEveryStoredTensor() {
        QUANTLENS_REQUIRE_DATA("stories260K-hf");
        const auto model = loadModel(test::dataPath("stories260K-hf"));
        std::vector<std::string> named, stored;
        forEachModelTensor(
            *model,
            [&](const std::string& name, const TensorView& view) {
                QCOMPARE(view.name, name);
                named.push_back(name);
            },
            [&](int block, int layer) {
                const TensorView& view =
                    *model->blocks[std::size_t(block)].linearLayers()[std::size_t(layer)];
                QCOMPARE(view.name, linearLayerPrefix(block, layer) + ".weight");
                QCOMPARE(view.shape,
                         linearLayerShape(kLinearLayers[std::size_t(layer)], model->config));
                named.push_back(view.name);
            });
        for (const TensorView& tensor : model->storedTensors)
            stored.push_back(tensor.name);
        std::sort(named.begin(), named.end());
        std::sort(stored.begin(), stored.end());
        QCOMPARE(named, stored);
        QCOMPARE(linearLayerIndex("down_proj"), 6);
        QCOMPARE(kLinearLayers[std::size_t(linearLayerIndex("o_proj"))].heads, HeadAxis::Columns);
    }

    void loadsBf16Directory() {
        QUANTLENS_REQUIRE_DATA("stories260K-hf-bf16");
        const auto model = loadModel(test::dataPath("stories260K-hf-bf16"));
        QCOMPARE(model->blocks[2].down.dtype, DType::BF16);
        QCOMPARE(model->storedBytes(), std::size_t(kParameters * 2));
    }

    void loadsLlama2cCheckpoint() {
        QUANTLENS_REQUIRE_DATA("stories260K/stories260K.bin");
        const auto model = loadModel(test::dataPath("stories260K/stories260K.bin"));
        QCOMPARE(model->format, ModelFormat::Llama2c);
        checkStoriesConfig(model->config);
        QCOMPARE(model->config.ropeLayout, RopeLayout::Interleaved);
        QCOMPARE(model->parameterCount(), kParameters);
        QCOMPARE(model->defaultTokenizer, test::dataPath("stories260K/tok512.bin"));
        QCOMPARE(model->blocks[3].wk.shape, (std::vector<std::int64_t>{32, 64}));
    }

    // The two files hold the same model: equal weights, Q/K rows permuted from interleaved pairs
    // (2i, 2i+1) to halves (i, i + d/2) as HF's conversion script does.
    void llama2cAndHfWeightsAgree() {
        QUANTLENS_REQUIRE_DATA("stories260K/stories260K.bin");
        QUANTLENS_REQUIRE_DATA("stories260K-hf");
        const auto bin = loadModel(test::dataPath("stories260K/stories260K.bin"));
        const auto hf = loadModel(test::dataPath("stories260K-hf"));
        QVERIFY(FloatTensor(bin->embedding).matrix() == FloatTensor(hf->embedding).matrix());
        QVERIFY(FloatTensor(bin->finalNorm).vector() == FloatTensor(hf->finalNorm).vector());
        for (std::size_t b = 0; b < bin->blocks.size(); ++b) {
            const BlockWeights& x = bin->blocks[b];
            const BlockWeights& y = hf->blocks[b];
            for (const auto& [p, q] : {std::pair{&x.wv, &y.wv},
                                       {&x.wo, &y.wo},
                                       {&x.gate, &y.gate},
                                       {&x.up, &y.up},
                                       {&x.down, &y.down},
                                       {&x.attnNorm, &y.attnNorm},
                                       {&x.ffnNorm, &y.ffnNorm}})
                QVERIFY2(FloatTensor(*p).matrix() == FloatTensor(*q).matrix(), q->name.c_str());
            const int headDim = 8, half = 4;
            for (const auto& [p, q, heads] : {std::tuple{&x.wq, &y.wq, 8}, {&x.wk, &y.wk, 4}})
                for (int h = 0; h < heads; ++h)
                    for (int i = 0; i < half; ++i)
                        for (int j = 0; j < 2; ++j)
                            QVERIFY(sameRow(*p, h * headDim + 2 * i + j, *q,
                                            h * headDim + j * half + i));
        }
    }

    // Optional config.json fields take HF's defaults; EOS may be a list (Llama 3 style).
    void configDefaultsAndVariants() {
        QUANTLENS_REQUIRE_DATA("stories260K-hf");
        QTemporaryDir dir;
        const std::filesystem::path copy = dir.filePath("model").toStdString();
        test::copyModelDirectory(test::dataPath("stories260K-hf"), copy);
        test::editJsonFile(copy / "config.json", [](nlohmann::json& c) {
            c.erase("rope_theta");
            c.erase("max_position_embeddings");
            c["eos_token_id"] = {2, 1};
            c["head_dim"] = 8;
        });
        auto model = loadModel(copy);
        QCOMPARE(model->config.ropeTheta, 10000.0f);
        QCOMPARE(model->config.maxPositions, 2048);
        QCOMPARE(model->config.eosTokens, (std::vector<int>{2, 1}));
        test::editJsonFile(copy / "config.json",
                           [](nlohmann::json& c) { c.erase("num_key_value_heads"); });
        try {
            loadModel(copy);
            QFAIL("k_proj of 4 KV heads loaded as 8 heads");
        } catch (const Error& e) {
            QVERIFY(QString(e.what()).contains(
                "'model.layers.0.self_attn.k_proj.weight' has shape [32, 64]"));
        }
    }

    void missingPathIsReported() {
        try {
            loadModel("/nonexistent/model");
            QFAIL("loaded a missing path");
        } catch (const Error& e) {
            QCOMPARE(QString(e.what()), QString("/nonexistent/model: no such file or directory"));
        }
    }
};

QTEST_APPLESS_MAIN(TestModelLoading)
#include "test_model_loading.moc"
