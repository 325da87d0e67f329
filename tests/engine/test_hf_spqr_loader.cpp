// Loading a Hugging Face SpQR directory (docs/HF_SPQR.md) dequantized: every converted layer
// against an independent decode of the quantlens checkpoint's own arrays (fp16 arithmetic through
// the compiler's _Float16, never a call into the engine's decoder) and against the checkpoint's
// dequantize() within the documented bounds; the fp16 layers and tensors against fp16 of the
// checkpoint and the source; lying files refused with the file and tensor named.
#include "error_text.h"
#include "safetensors_mutator.h"
#include "synthetic_fixtures.h"
#include "test_data.h"

#include "quantlens/core/error.h"
#include "quantlens/core/float_tensor.h"
#include "quantlens/formats/hf_spqr_loader.h"
#include "quantlens/formats/model_export.h"
#include "quantlens/formats/model_loading.h"
#include "quantlens/runtime/compressed_linear.h"

#include <QTemporaryDir>

#include <nlohmann/json.hpp>

#include <bit>
#include <cmath>

using namespace quantlens;
using quantlens::test::errorOf;
namespace fs = std::filesystem;

namespace {

// stories260K: 5 blocks; q/o_proj 64×64, k/v_proj 32×64 (converted), gate/up_proj 172×64 and
// down_proj 64×172 (not multiples of 16: stored fp16).
constexpr int kBlocks = 5;
constexpr int kConverted = 4; // q, k, v, o

SpqrConfig holdable() {
    SpqrConfig spqr;
    spqr.wbits = 3;
    spqr.groupsize = 16;
    spqr.qqBits = 3;
    spqr.statsGroupsize = 16;
    spqr.outlierThreshold = 0.1; // low enough for outliers in the attention layers
    return spqr;
}

float half(std::uint16_t bits) {
    return static_cast<float>(std::bit_cast<_Float16>(bits));
}

// One fp16 operation: the operands are fp16 values, the result rounded to fp16 by the compiler.
float h(float x) {
    return static_cast<float>(static_cast<_Float16>(x));
}

// Code i of row `row` of `bits`-bit codes packed LSB-first into 32-bit words (docs/FORMAT.md),
// each row of `length` codes starting on a new word.
int packedCode(const StoredTensor& t, std::size_t length, int bits, std::size_t row,
               std::size_t i) {
    const std::size_t stride = (length * std::size_t(bits) + 31) / 32;
    const std::size_t bit = i * std::size_t(bits), word = row * stride + bit / 32;
    std::uint64_t window = t.at<std::uint32_t>(word) >> (bit % 32);
    if (bit % 32 + std::size_t(bits) > 32)
        window |= std::uint64_t(t.at<std::uint32_t>(word + 1)) << (32 - bit % 32);
    return static_cast<int>(window & ((1u << bits) - 1));
}

std::vector<float> values(const TensorView& view) {
    const FloatTensor t(view);
    return {t.data(), t.data() + view.elementCount()};
}

} // namespace

class TestHfSpqrLoader : public QObject {
    Q_OBJECT
    QTemporaryDir scratch_;
    fs::path root_;
    fs::path checkpoint_; // stories260K-hf, SpQR w3 β1 = β2 = 16, qq 3
    fs::path export_;     // its hf-spqr export

private slots:
    void initTestCase() {
        QUANTLENS_REQUIRE_DATA("stories260K-hf");
        root_ = scratch_.path().toStdString();
        checkpoint_ = root_ / "spqr";
        export_ = root_ / "hf";
        quantizeToDirectory(*loadModel(test::dataPath("stories260K-hf")),
                            test::randomTokens(512, 512, 3), holdable(), CalibrationConfig{4, 32},
                            ExportFormat::Quantlens, checkpoint_, {}, JobContext{});
        exportModel(checkpoint_, ExportFormat::HfSpqr, export_, {});
    }

    void recognisesTheFormat() {
        QVERIFY(isHfSpqrCheckpoint(export_));
        QVERIFY(!isHfSpqrCheckpoint(checkpoint_));
        QVERIFY(!isHfSpqrCheckpoint(test::dataPath("stories260K-hf")));
        QVERIFY(!isHfSpqrCheckpoint(root_ / "nowhere"));
    }

    // Each converted weight is the kernels' fp16 decode of the checkpoint's codes and statistics,
    // bit for bit, and within the bound of dequantize(); each outlier lands on the checkpoint's
    // weight within its bound plus the rounding of the sum to fp32.
    void convertedLayersDecodeAsTheKernels() {
        const auto loaded = loadHfSpqrModel(export_);
        const auto model = loadModel(checkpoint_, CompressedLayers::Keep);
        QCOMPARE(loaded->blocks.size(), std::size_t(kBlocks));
        std::int64_t outliers = 0;
        double maxError = 0.0;
        for (int b = 0; b < kBlocks; ++b)
            for (int i = 0; i < kConverted; ++i) {
                const QuantizedLayer layer =
                    model->compressedLayers[std::size_t(b)][std::size_t(i)]->quantizedLayer();
                const TensorView& view =
                    loaded->blocks[std::size_t(b)].*kLinearLayers[std::size_t(i)].weights;
                const std::string name = linearLayerPrefix(b, i);
                QVERIFY(view.dtype == DType::F32);
                QCOMPARE(view.shape, (std::vector<std::int64_t>{layer.rows, layer.cols}));
                const ConstRowMatrixMap got(reinterpret_cast<const float*>(view.data), layer.rows,
                                            layer.cols);
                const RowMatrix want = layer.dequantize();
                const int rows = layer.rows, cols = layer.cols, rowTiles = rows / 16;
                const auto perm = layer.tensors.find("perm");
                const auto column = [&](int j) {
                    return perm == layer.tensors.end() ? j
                                                       : int(perm->second.indexAt(std::size_t(j)));
                };
                std::vector<char> isOutlier(std::size_t(rows) * cols, 0);
                if (const auto ptr = layer.tensors.find("outlier_row_ptr");
                    ptr != layer.tensors.end())
                    for (int r = 0; r < rows; ++r)
                        for (auto e = ptr->second.indexAt(std::size_t(r));
                             e < ptr->second.indexAt(std::size_t(r) + 1); ++e)
                            isOutlier[std::size_t(r) * cols +
                                      std::size_t(layer.tensors.at("outlier_cols")
                                                      .indexAt(std::size_t(e)))] = 1;
                const StoredTensor& scaleStats = layer.tensors.at("scale_stats");
                const StoredTensor& zeroStats = layer.tensors.at("zero_stats");
                for (int r = 0; r < rows; ++r)
                    for (int j = 0; j < cols; ++j) {
                        const int g = j / 16;
                        const std::size_t at = (std::size_t(g) * rowTiles + r / 16) * 2;
                        const float ssx = half(scaleStats.at<std::uint16_t>(at));
                        const float zzx = half(scaleStats.at<std::uint16_t>(at + 1));
                        const float ssy = half(zeroStats.at<std::uint16_t>(at));
                        const float zzy = half(zeroStats.at<std::uint16_t>(at + 1));
                        const int sc =
                            packedCode(layer.tensors.at("scale_codes"), std::size_t(rows), 3,
                                       std::size_t(g), std::size_t(r));
                        const int zc = packedCode(layer.tensors.at("zero_codes"), std::size_t(rows),
                                                  3, std::size_t(g), std::size_t(r));
                        const int q = packedCode(layer.tensors.at("codes"), std::size_t(cols), 3,
                                                 std::size_t(r), std::size_t(j));
                        const float s = h(ssx * h(float(sc) - zzx));
                        const float z = h(ssy * h(float(zc) - zzy));
                        const float weight = h(s * h(float(q) - z));
                        const int c = column(j);
                        const double value = got(r, c), target = want(r, c);
                        const double error = std::abs(value - target);
                        double bound;
                        if (isOutlier[std::size_t(r) * cols + j]) {
                            bound = std::ldexp(std::abs(target - double(weight)), -11) +
                                    std::ldexp(1.0, -25) + std::ldexp(std::abs(value), -24);
                            ++outliers;
                        } else {
                            const std::string where =
                                name + " row " + std::to_string(r) + " column " + std::to_string(c);
                            QVERIFY2(float(value) == weight, where.c_str());
                            const double as = std::abs(s), az = std::abs(z);
                            bound =
                                std::ldexp(as * (q + 2 * az), -8) +
                                std::ldexp((1 + std::abs(ssx) + std::abs(ssy)) * (2 + q + az + as),
                                           -24);
                        }
                        QVERIFY2(error <= bound,
                                 (name + " row " + std::to_string(r) + " column " +
                                  std::to_string(c) + ": error " + std::to_string(error) +
                                  " > bound " + std::to_string(bound))
                                     .c_str());
                        maxError = std::max(maxError, error);
                    }
            }
        QVERIFY2(outliers > 0, "no outliers: the CSR path is untested; lower the threshold");
        qInfo("%lld outliers; max |loaded − dequantize()| %.3g", static_cast<long long>(outliers),
              maxError);
    }

    // The layers in modules_to_not_convert are fp16 of dequantize(); every other tensor is fp16
    // of the source; the head is the embedding (tied); the tokenizer is found.
    void denseTensorsAreFp16() {
        const auto loaded = loadHfSpqrModel(export_);
        const auto model = loadModel(checkpoint_, CompressedLayers::Keep);
        const auto source = loadModel(test::dataPath("stories260K-hf"));
        QCOMPARE(loaded->config.hiddenSize, source->config.hiddenSize);
        QCOMPARE(loaded->config.layerCount, source->config.layerCount);
        QVERIFY(loaded->config.tiedEmbeddings);
        QCOMPARE(loaded->lmHead.data, loaded->embedding.data);
        QCOMPARE(loaded->defaultTokenizer.string(), (export_ / "tokenizer.model").string());
        for (int b = 0; b < kBlocks; ++b)
            for (int i = kConverted; i < kLinearLayerCount; ++i) {
                const TensorView& view =
                    loaded->blocks[std::size_t(b)].*kLinearLayers[std::size_t(i)].weights;
                QVERIFY(view.dtype == DType::F16);
                const RowMatrix want = model->compressedLayers[std::size_t(b)][std::size_t(i)]
                                           ->quantizedLayer()
                                           .dequantize();
                QCOMPARE(view.shape, (std::vector<std::int64_t>{want.rows(), want.cols()}));
                const std::vector<float> got = values(view);
                for (Eigen::Index k = 0; k < want.size(); ++k)
                    QCOMPARE(got[std::size_t(k)], h(want.data()[k]));
            }
        std::vector<std::pair<TensorView, TensorView>> pairs = {
            {loaded->embedding, source->embedding}, {loaded->finalNorm, source->finalNorm}};
        for (int b = 0; b < kBlocks; ++b) {
            pairs.push_back(
                {loaded->blocks[std::size_t(b)].attnNorm, source->blocks[std::size_t(b)].attnNorm});
            pairs.push_back(
                {loaded->blocks[std::size_t(b)].ffnNorm, source->blocks[std::size_t(b)].ffnNorm});
        }
        for (const auto& [got, want] : pairs) {
            QCOMPARE(got.name, want.name);
            QVERIFY(got.dtype == DType::F16);
            QCOMPARE(got.shape, want.shape);
            const std::vector<float> a = values(got), e = values(want);
            for (std::size_t k = 0; k < e.size(); ++k)
                QCOMPARE(a[k], h(e[k]));
        }
    }

    // A dense_weights array shorter than quantization_config.shapes says, and one whose shapes
    // entry agrees but which is too short for the layer.
    void damagedDenseWeightsAreRefused() {
        const fs::path damaged = root_ / "damaged";
        test::copyModelDirectory(export_, damaged);
        const std::string tensor = "model.layers.0.self_attn.q_proj.dense_weights";
        const fs::path weights = damaged / "model.safetensors";
        test::SafetensorsParts parts = test::readSafetensorsParts(weights);
        test::convertTensors(parts, [&](const std::string& name, const std::string& dtype,
                                        const std::string& bytes) {
            return std::pair<std::string, std::string>{
                dtype, name == tensor ? bytes.substr(0, bytes.size() - 16 * 8) : bytes};
        });
        parts.header[tensor]["shape"] = nlohmann::json::array({64 * 64 / 16 - 16});
        test::writeSafetensorsParts(weights, parts);
        const fs::path config = damaged / "config.json";
        QCOMPARE(errorOf([&] { loadHfSpqrModel(damaged); }),
                 QString::fromStdString(weights.string() + ": tensor '" + tensor +
                                        "' has 240 elements, but " + config.string() +
                                        " gives 256 in quantization_config.shapes"));
        test::editJsonFile(config, [&](nlohmann::json& j) {
            j["quantization_config"]["shapes"][tensor + ".shape"] = 240;
        });
        QCOMPARE(errorOf([&] { loadHfSpqrModel(damaged); }),
                 QString::fromStdString(weights.string() + ": tensor '" + tensor +
                                        "' has 240 elements, but a 64×64 layer needs 256"));
    }

    void wrongQuantMethodIsRefused() {
        const fs::path other = root_ / "gptq";
        test::copyModelDirectory(export_, other);
        test::editJsonFile(other / "config.json", [](nlohmann::json& j) {
            j["quantization_config"]["quant_method"] = "gptq";
        });
        QVERIFY(!isHfSpqrCheckpoint(other));
        QCOMPARE(errorOf([&] { loadHfSpqrModel(other); }),
                 QString::fromStdString((other / "config.json").string() +
                                        ": quantization_config.quant_method is \"gptq\", not "
                                        "\"spqr\""));
    }
};

QTEST_APPLESS_MAIN(TestHfSpqrLoader)
#include "test_hf_spqr_loader.moc"
