// The layer quantizers (RTN, GPTQ, SpQR) against independent references and invariants, on real
// stories260K layers with the inputs the model really gives them, and on a seeded synthetic layer.
#include "error_text.h"
#include "test_data.h"

#include "quantlens/core/error.h"
#include "quantlens/core/parallel.h"
#include "quantlens/encoding/bit_packing.h"
#include "quantlens/formats/model_loading.h"
#include "quantlens/io/text_file.h"
#include "quantlens/model/synthetic_model.h"
#include "quantlens/quantization/hessian.h"
#include "quantlens/quantization/layer_quantizer.h"
#include "quantlens/runtime/backend.h"
#include "quantlens/runtime/compressed_linear.h"
#include "quantlens/runtime/perplexity.h"
#include "quantlens/runtime/transformer.h"
#include "quantlens/tokenizer/tokenizer.h"

#include <algorithm>
#include <bit>
#include <cmath>
#include <cstring>
#include <limits>
#include <map>
#include <numbers>
#include <random>

using namespace quantlens;

using quantlens::test::errorOf;

namespace {

constexpr double kInfinity = std::numeric_limits<double>::infinity();

// One linear layer of stories260K-hf with its real inputs X [n, in] (the original model run on
// TinyStories text) and H = 2·XᵀX/n.
struct RealLayer {
    std::string name; // e.g. "block 2 o_proj"
    RowMatrix weights;
    RowMatrix inputs;
    Eigen::MatrixXf hessian;
};

constexpr int kWindows = 4;
constexpr int kWindowLength = 128;

// Every linear layer of every block (kLinearLayers order), computed once.
const std::vector<RealLayer>& allRealLayers() {
    static const std::vector<RealLayer> layers = [] {
        const auto model = loadModel(test::dataPath("stories260K-hf"));
        const auto tokenizer = loadTokenizer(model->defaultTokenizer);
        const auto tokens = tokenizeForProtocol(
            *tokenizer, readTextFile(test::dataPath("text/tinystories-valid-excerpt.txt")),
            PerplexityProtocol::Documents, model->config.bosToken, "excerpt");
        if (tokens.size() < std::size_t(kWindows * kWindowLength))
            throw std::runtime_error("the excerpt is too short");

        const int blocks = model->config.layerCount;
        std::vector<std::vector<FloatTensor>> weights(static_cast<std::size_t>(blocks));
        std::vector<BlockView> views;
        for (const BlockWeights& b : model->blocks) {
            auto& w = weights[views.size()];
            for (const TensorView* t :
                 {&b.attnNorm, &b.wq, &b.wk, &b.wv, &b.wo, &b.ffnNorm, &b.gate, &b.up, &b.down})
                w.emplace_back(*t);
            views.push_back({w[0].data(), w[1].data(), w[2].data(), w[3].data(), w[4].data(),
                             w[5].data(), w[6].data(), w[7].data(), w[8].data()});
        }

        // inputs[block][stage]: rows of every window stacked.
        std::vector<std::map<LinearStage, std::vector<RowMatrix>>> inputs(
            static_cast<std::size_t>(blocks));
        const Transformer transformer(*model);
        for (int window = 0; window < kWindows; ++window) {
            const std::span<const std::int32_t> ids(tokens.data() + window * kWindowLength,
                                                    kWindowLength);
            RowMatrix hidden = transformer.embed(ids);
            KvCache cache(model->config, kWindowLength);
            for (int b = 0; b < blocks; ++b)
                transformer.runBlock(b, views[static_cast<std::size_t>(b)], hidden, cache, 0,
                                     [&](LinearStage stage, const RowMatrix& x) {
                                         inputs[static_cast<std::size_t>(b)][stage].push_back(x);
                                     });
        }

        const LinearStage stageOf[] = {LinearStage::Attention, LinearStage::Attention,
                                       LinearStage::Attention, LinearStage::AttentionOutput,
                                       LinearStage::Mlp,       LinearStage::Mlp,
                                       LinearStage::MlpOutput};
        const char* names[] = {"q_proj",    "k_proj",  "v_proj",   "o_proj",
                               "gate_proj", "up_proj", "down_proj"};
        std::vector<RealLayer> result;
        for (int b = 0; b < blocks; ++b)
            for (int i = 0; i < 7; ++i) {
                RealLayer layer;
                layer.name = "block " + std::to_string(b) + " " + names[i];
                layer.weights =
                    weights[static_cast<std::size_t>(b)][std::size_t(i) + 1 + (i >= 4 ? 1 : 0)]
                        .matrix();
                const auto& parts = inputs[static_cast<std::size_t>(b)][stageOf[i]];
                layer.inputs.resize(kWindows * kWindowLength, parts.front().cols());
                for (int window = 0; window < kWindows; ++window)
                    layer.inputs.middleRows(window * kWindowLength, kWindowLength) =
                        parts[static_cast<std::size_t>(window)];
                layer.hessian = 2.0f * layer.inputs.transpose() * layer.inputs /
                                static_cast<float>(layer.inputs.rows());
                result.push_back(std::move(layer));
            }
        return result;
    }();
    return layers;
}

const RealLayer& realLayer(const std::string& name) {
    for (const RealLayer& layer : allRealLayers())
        if (layer.name == name) return layer;
    throw std::runtime_error("no layer " + name);
}

// The layers the quality tests run on: attention input, attention output and the 172-wide FFN
// output, early, middle and last block.
std::vector<std::string> qualityLayers() {
    std::vector<std::string> names;
    for (int b : {0, 2, 4})
        for (const char* name : {"q_proj", "o_proj", "down_proj"})
            names.push_back("block " + std::to_string(b) + " " + name);
    return names;
}

// ‖WXᵀ − ŴXᵀ‖² / ‖WXᵀ‖² in double, straight from the inputs.
double outputError(const RowMatrix& original, const RowMatrix& reconstruction,
                   const RowMatrix& inputs) {
    const Eigen::MatrixXd x = inputs.cast<double>();
    const Eigen::MatrixXd reference = x * original.cast<double>().transpose();
    const Eigen::MatrixXd difference =
        x * (original.cast<double>() - reconstruction.cast<double>()).transpose();
    return difference.squaredNorm() / reference.squaredNorm();
}

// Seeded heavy-tailed numbers: Box–Muller normals, and Student-t with 3 degrees of freedom.
class Generator {
public:
    explicit Generator(std::uint32_t seed) : engine_(seed) {}
    double uniform() { return (static_cast<double>(engine_()) + 0.5) / 4294967296.0; }
    double normal() {
        return std::sqrt(-2.0 * std::log(uniform())) * std::cos(2.0 * std::numbers::pi * uniform());
    }
    double studentT3() {
        double chi2 = 0.0;
        for (int k = 0; k < 3; ++k) {
            const double z = normal();
            chi2 += z * z;
        }
        return normal() / std::sqrt(chi2 / 3.0);
    }

private:
    std::mt19937 engine_;
};

// A synthetic layer with heavy-tailed weights, a few large outliers, and correlated inputs whose
// channels differ in scale (as LLM activations do).
RealLayer syntheticLayer(int rows, int cols, int tokens, std::uint32_t seed) {
    Generator random(seed);
    RealLayer layer;
    layer.name = "synthetic " + std::to_string(rows) + "x" + std::to_string(cols);
    layer.weights.resize(rows, cols);
    for (Eigen::Index i = 0; i < layer.weights.size(); ++i)
        layer.weights.data()[i] = static_cast<float>(0.02 * random.studentT3());
    for (int k = 0; k < rows * cols / 200; ++k)
        layer.weights(static_cast<Eigen::Index>(random.uniform() * rows),
                      static_cast<Eigen::Index>(random.uniform() * cols)) *= 8.0f;
    Eigen::VectorXf channelScale(cols);
    for (int j = 0; j < cols; ++j)
        channelScale[j] = static_cast<float>(std::exp(0.8 * random.normal()));
    RowMatrix mixing(cols, cols);
    for (Eigen::Index i = 0; i < mixing.size(); ++i)
        mixing.data()[i] = static_cast<float>(random.normal() / std::sqrt(double(cols)));
    mixing.diagonal().array() += 1.0f;
    RowMatrix base(tokens, cols);
    for (Eigen::Index i = 0; i < base.size(); ++i)
        base.data()[i] = static_cast<float>(random.studentT3());
    layer.inputs = (base * mixing) * channelScale.asDiagonal();
    layer.hessian = 2.0f * layer.inputs.transpose() * layer.inputs / static_cast<float>(tokens);
    return layer;
}

QuantizedLayer quantize(const RealLayer& layer, const QuantConfig& config) {
    return quantizeLayer(layer.weights, {&layer.hessian}, config, JobContext{}, layer.name);
}

std::size_t ceilDiv(std::size_t a, std::size_t b) {
    return (a + b - 1) / b;
}

// Permuted column j holds original column perm[j] (docs/FORMAT.md: an index array).
std::vector<int> permutationOf(const QuantizedLayer& layer) {
    std::vector<int> perm(static_cast<std::size_t>(layer.cols));
    const auto it = layer.tensors.find("perm");
    if (it == layer.tensors.end()) {
        for (int j = 0; j < layer.cols; ++j)
            perm[std::size_t(j)] = j;
        return perm;
    }
    for (int j = 0; j < layer.cols; ++j)
        perm[std::size_t(j)] = int(it->second.indexAt(std::size_t(j)));
    return perm;
}

// docs/FORMAT.md: index arrays take 1, 2 or 4 bytes, the fewest that hold their largest value.
std::size_t indexBytes(std::size_t largest) {
    return largest <= 255 ? 1 : largest <= 65535 ? 2 : 4;
}

// Each tensor's dtype, shape and bytes; empty when equal, else the first difference.
QString differenceOf(const QuantizedLayer& a, const QuantizedLayer& b) {
    if (a.tensors.size() != b.tensors.size()) return "different tensor counts";
    for (const auto& [name, tensor] : a.tensors) {
        const auto other = b.tensors.find(name);
        if (other == b.tensors.end()) return QString("%1 missing").arg(name.c_str());
        if (tensor.dtype != other->second.dtype || tensor.shape != other->second.shape)
            return QString("%1: dtype or shape differs").arg(name.c_str());
        if (tensor.bytes != other->second.bytes)
            return QString("%1: bytes differ").arg(name.c_str());
    }
    if (a.outlierCount != b.outlierCount) return "outlier counts differ";
    return {};
}

SpqrConfig spqrConfig(double tau, bool actOrder) {
    SpqrConfig config;
    config.outlierThreshold = tau;
    config.actOrder = actOrder;
    return config;
}

} // namespace

class TestQuantizers : public QObject {
    Q_OBJECT
private slots:
    void initTestCase() {
        QUANTLENS_REQUIRE_DATA("stories260K-hf");
        QUANTLENS_REQUIRE_DATA("text/tinystories-valid-excerpt.txt");
        QCOMPARE(allRealLayers().size(), std::size_t(35));
        QCOMPARE(realLayer("block 0 down_proj").weights.cols(), Eigen::Index(172));
    }

    void bitPackingRoundTrip_data() {
        QTest::addColumn<int>("bits");
        QTest::addColumn<int>("rowLength");
        for (int bits : {1, 2, 3, 4, 5, 6, 7, 8, 16})
            for (int length : {172, 1, 31, 33})
                QTest::newRow(qPrintable(QString("%1 bits x %2").arg(bits).arg(length)))
                    << bits << length;
    }

    void bitPackingRoundTrip() {
        QFETCH(int, bits);
        QFETCH(int, rowLength);
        const std::size_t rows = 5, length = static_cast<std::size_t>(rowLength);
        std::mt19937 engine(static_cast<std::uint32_t>(bits * 1000 + rowLength));
        std::vector<std::uint16_t> codes(rows * length);
        for (auto& c : codes)
            c = static_cast<std::uint16_t>(engine() & ((1u << bits) - 1u));
        codes[0] = static_cast<std::uint16_t>((1u << bits) - 1u); // all ones at the start

        const std::size_t stride = wordsPerRow(length, bits);
        QCOMPARE(stride, ceilDiv(length * std::size_t(bits), 32));
        const std::vector<std::uint32_t> words = packRows(codes, length, bits);
        QCOMPARE(words.size(), rows * stride);

        // Independent packer: bit by bit, LSB first, each row from a fresh word.
        std::vector<std::uint32_t> reference(rows * stride, 0u);
        for (std::size_t r = 0; r < rows; ++r)
            for (std::size_t i = 0; i < length; ++i)
                for (int b = 0; b < bits; ++b)
                    if ((codes[r * length + i] >> b) & 1u) {
                        const std::size_t bit = i * std::size_t(bits) + std::size_t(b);
                        reference[r * stride + bit / 32] |= 1u << (bit % 32);
                    }
        QVERIFY(words == reference);

        for (std::size_t r = 0; r < rows; ++r)
            for (std::size_t i = 0; i < length; ++i)
                QCOMPARE(unpackCode(words.data() + r * stride, i, bits),
                         std::uint32_t(codes[r * length + i]));
    }

    void bitPackingStraddlesWords() {
        // 3-bit code 10 occupies bits 30, 31 of word 0 and bit 0 of word 1.
        std::vector<std::uint16_t> codes(12, 0);
        codes[10] = 7;
        const auto words = packRows(codes, 12, 3);
        QCOMPARE(words.size(), std::size_t(2));
        QCOMPARE(words[0], 0xC0000000u);
        QCOMPARE(words[1], 1u);
        QCOMPARE(unpackCode(words.data(), 10, 3), 7u);
        // 5-bit codes: 172 codes take 860 bits = 27 words; rows start on a fresh word.
        QCOMPARE(wordsPerRow(172, 5), std::size_t(27));
        QCOMPARE(wordsPerRow(172, 16), std::size_t(86));
        QCOMPARE(wordsPerRow(64, 3), std::size_t(6));
        QCOMPARE(wordsPerRow(1, 1), std::size_t(1));
        QCOMPARE(wordsPerRow(32, 1), std::size_t(1));
        QCOMPARE(wordsPerRow(33, 1), std::size_t(2));
        std::vector<std::uint16_t> twoRows(2 * 7, 1); // 7 one-bit codes per row
        const auto packed = packRows(twoRows, 7, 1);
        QCOMPARE(packed.size(), std::size_t(2));
        QCOMPARE(packed[0], 0x7Fu);
        QCOMPARE(packed[1], 0x7Fu);
    }

    void rtnMatchesReference_data() {
        QTest::addColumn<QString>("layer");
        QTest::addColumn<int>("wbits");
        QTest::addColumn<int>("groupsize");
        for (const char* layer : {"block 1 down_proj", "block 3 gate_proj", "block 0 q_proj"})
            for (int wbits : {2, 3, 4, 8})
                for (int groupsize : {16, 128, 0})
                    QTest::newRow(
                        qPrintable(QString("%1 w%2 g%3").arg(layer).arg(wbits).arg(groupsize)))
                        << QString(layer) << wbits << groupsize;
        QTest::newRow("synthetic w3 g32") << "synthetic" << 3 << 32;
    }

    // GPTQ's grid, written out here: min-max per row and group over a range extended to include 0,
    // scale rounded to fp16, integer zero.
    void rtnMatchesReference() {
        QFETCH(QString, layer);
        QFETCH(int, wbits);
        QFETCH(int, groupsize);
        const RowMatrix w = layer == "synthetic" ? syntheticLayer(48, 100, 16, 7).weights
                                                 : realLayer(layer.toStdString()).weights;
        const auto quantized = quantizeLayer(w, {}, RtnConfig{wbits, groupsize}, JobContext{});
        const int rows = int(w.rows()), cols = int(w.cols());
        const int group = groupsize == 0 ? cols : std::min(groupsize, cols);
        const int groups = (cols + group - 1) / group;
        const float maxq = float((1 << wbits) - 1);

        RowMatrix reference(rows, cols);
        std::vector<std::uint16_t> codes(std::size_t(rows) * cols);
        std::vector<float> scales(std::size_t(rows) * groups), zeros(scales.size());
        for (int r = 0; r < rows; ++r)
            for (int g = 0; g < groups; ++g) {
                const int first = g * group, count = std::min(group, cols - first);
                float low = std::min(w.row(r).segment(first, count).minCoeff(), 0.0f);
                float high = std::max(w.row(r).segment(first, count).maxCoeff(), 0.0f);
                if (low == high) low = -1.0f, high = 1.0f; // an all-zero group
                const float scale = static_cast<float>(static_cast<_Float16>((high - low) / maxq));
                const float zero = std::clamp(std::nearbyint(-low / scale), 0.0f, maxq);
                scales[std::size_t(r) * groups + g] = scale;
                zeros[std::size_t(r) * groups + g] = zero;
                for (int j = first; j < first + count; ++j) {
                    // The code is an integer (so a rounded -0 is the code 0).
                    const int q = static_cast<int>(
                        std::clamp(std::nearbyint(w(r, j) / scale + zero), 0.0f, maxq));
                    codes[std::size_t(r) * cols + j] = static_cast<std::uint16_t>(q);
                    reference(r, j) = scale * (static_cast<float>(q) - zero);
                }
            }

        QCOMPARE(quantized.tensors.size(), std::size_t(3));
        const StoredTensor& codeTensor = quantized.tensors.at("codes");
        const std::size_t stride = ceilDiv(std::size_t(cols) * wbits, 32);
        QCOMPARE(codeTensor.dtype, std::string("U32"));
        QCOMPARE(codeTensor.shape, (std::vector<std::int64_t>{rows, std::int64_t(stride)}));
        const auto* words = reinterpret_cast<const std::uint32_t*>(codeTensor.bytes.data());
        for (int r = 0; r < rows; ++r)
            for (int j = 0; j < cols; ++j)
                QCOMPARE(unpackCode(words + r * stride, std::size_t(j), wbits),
                         std::uint32_t(codes[std::size_t(r) * cols + j]));
        for (const char* name : {"scales", "zeros"}) {
            const StoredTensor& t = quantized.tensors.at(name);
            QCOMPARE(t.dtype, std::string("F16"));
            QCOMPARE(t.shape, (std::vector<std::int64_t>{rows, groups}));
            const auto& expected = std::string(name) == "scales" ? scales : zeros;
            for (std::size_t i = 0; i < expected.size(); ++i)
                QVERIFY2(t.f16At(i) == expected[i],
                         qPrintable(QString("%1[%2]: engine %3, reference %4")
                                        .arg(name)
                                        .arg(i)
                                        .arg(t.f16At(i), 0, 'g', 9)
                                        .arg(expected[i], 0, 'g', 9)));
        }
        const RowMatrix dequantized = quantized.dequantize();
        for (int r = 0; r < rows; ++r)
            for (int j = 0; j < cols; ++j)
                if (std::memcmp(&dequantized(r, j), &reference(r, j), sizeof(float)) != 0)
                    QFAIL(
                        qPrintable(QString("(%1, %2): engine %3 (bits %4), reference %5 (bits %6)")
                                       .arg(r)
                                       .arg(j)
                                       .arg(dequantized(r, j), 0, 'g', 9)
                                       .arg(std::bit_cast<std::uint32_t>(dequantized(r, j)), 8, 16)
                                       .arg(reference(r, j), 0, 'g', 9)
                                       .arg(std::bit_cast<std::uint32_t>(reference(r, j)), 8, 16)));
    }

    // A group whose weights share one sign keeps its range down to 0 (GPTQ's rule): no weight is
    // clipped, so each decodes within half a step. An integer zero clamped to the code range
    // without widening clipped every weight beyond scale·maxCode.
    void affineGroupsSpanZero() {
        const RowMatrix positive = realLayer("block 0 q_proj").weights.cwiseAbs().array() + 0.05f;
        for (const QuantConfig& config : {QuantConfig{RtnConfig{3, 16}}, QuantConfig{[] {
                                              GptqConfig gptq;
                                              gptq.wbits = 3;
                                              gptq.groupsize = 16;
                                              return gptq;
                                          }()}}) {
            const RealLayer& l = realLayer("block 0 q_proj");
            const auto quantized = quantizeLayer(positive, {&l.hessian}, config, JobContext{});
            const StoredTensor& zeros = quantized.tensors.at("zeros");
            for (std::size_t i = 0; i < zeros.count(); ++i)
                QCOMPARE(zeros.f16At(i), 0.0f); // low is 0 in every group
            if (std::holds_alternative<RtnConfig>(config)) {
                const RowMatrix decoded = quantized.dequantize();
                const StoredTensor& scales = quantized.tensors.at("scales");
                for (int r = 0; r < positive.rows(); ++r)
                    for (int j = 0; j < positive.cols(); ++j) {
                        const float step = scales.f16At(std::size_t(r) * 4 + std::size_t(j / 16));
                        QVERIFY2(std::abs(decoded(r, j) - positive(r, j)) <= 0.5f * step * 1.001f,
                                 qPrintable(QString("(%1, %2): %3 decodes as %4")
                                                .arg(r)
                                                .arg(j)
                                                .arg(positive(r, j))
                                                .arg(decoded(r, j))));
                    }
            }
        }
    }

    // SpQR's first-level zero is real (§3.2), then quantized at qq bits: with 8-bit statistics
    // over groups of 2 rows, the decoded zero of each row lies within half a second-level step of
    // −min/scale of the row's group. Integer zeros were up to half a code away.
    void spqrFirstLevelZeroIsReal() {
        const RealLayer& l = realLayer("block 0 q_proj");
        SpqrConfig config = spqrConfig(kInfinity, false);
        config.groupsize = 0; // one group per row, fitted before any error feedback
        config.qqBits = 8;
        config.statsGroupsize = 2;
        const auto quantized = quantize(l, config);
        const int rows = int(l.weights.rows());
        const StoredTensor& zeroCodes = quantized.tensors.at("zero_codes");
        const StoredTensor& zeroStats = quantized.tensors.at("zero_stats");
        const auto* words = reinterpret_cast<const std::uint32_t*>(zeroCodes.bytes.data());
        int fractional = 0;
        for (int r = 0; r < rows; ++r) {
            const float low = l.weights.row(r).minCoeff(), high = l.weights.row(r).maxCoeff();
            const float real = -low / ((high - low) / 7.0f);
            const float step = zeroStats.f16At(std::size_t(r / 2) * 2);
            const float offset = zeroStats.f16At(std::size_t(r / 2) * 2 + 1);
            const float decoded = step * (float(unpackCode(words, std::size_t(r), 8)) - offset);
            // Half a step of rounding, plus the fp16 rounding of the stored second-level zero.
            const float tolerance = step * (0.5f + std::abs(offset) * 0x1p-11f) + 1e-6f;
            QVERIFY2(std::abs(decoded - real) <= tolerance,
                     qPrintable(QString("row %1: zero %2 decodes as %3 (step %4)")
                                    .arg(r)
                                    .arg(real)
                                    .arg(decoded)
                                    .arg(step)));
            fractional += std::abs(real - std::nearbyint(real)) > tolerance;
        }
        QVERIFY(fractional > rows / 2); // the check can tell a real zero from a rounded one
    }

    // A second-level group whose β2 statistics are all equal decodes them exactly (to the fp16 they
    // are stored in): identical rows give identical scales and zeros. A widened range decoded them
    // as 8v/7.
    void spqrConstantStatisticsDecodeExactly() {
        const RealLayer& l = realLayer("block 0 q_proj");
        RowMatrix same(16, l.weights.cols());
        for (int r = 0; r < 16; ++r)
            same.row(r) = l.weights.row(3);
        SpqrConfig config = spqrConfig(kInfinity, false);
        config.groupsize = 0;
        config.statsGroupsize = 16;
        const auto quantized = quantizeLayer(same, {&l.hessian}, config, JobContext{});
        const float low = same.row(0).minCoeff(), high = same.row(0).maxCoeff();
        const float scale = (high - low) / 7.0f, zero = -low / scale;
        const auto decode = [&](const char* codes, const char* stats) {
            const StoredTensor& s = quantized.tensors.at(stats);
            const auto* words =
                reinterpret_cast<const std::uint32_t*>(quantized.tensors.at(codes).bytes.data());
            return s.f16At(0) * (float(unpackCode(words, 0, config.qqBits)) - s.f16At(1));
        };
        const float fp16Step = 0x1p-10f; // relative spacing of fp16 around these values
        QVERIFY2(std::abs(decode("scale_codes", "scale_stats") - scale) <= fp16Step * scale,
                 qPrintable(QString("scale %1 decodes as %2")
                                .arg(scale, 0, 'g', 9)
                                .arg(decode("scale_codes", "scale_stats"), 0, 'g', 9)));
        QVERIFY2(std::abs(decode("zero_codes", "zero_stats") - zero) <= fp16Step * std::abs(zero),
                 qPrintable(QString("zero %1 decodes as %2")
                                .arg(zero, 0, 'g', 9)
                                .arg(decode("zero_codes", "zero_stats"), 0, 'g', 9)));
    }

    void gptqBeatsRtn_data() {
        QTest::addColumn<QString>("layer");
        QTest::addColumn<int>("wbits");
        QTest::addColumn<int>("groupsize");
        QTest::addColumn<bool>("actOrder");
        for (const std::string& layer : qualityLayers())
            for (int wbits : {3, 4})
                for (int groupsize : {16, 128})
                    QTest::newRow(qPrintable(
                        QString("%1 w%2 g%3").arg(layer.c_str()).arg(wbits).arg(groupsize)))
                        << QString::fromStdString(layer) << wbits << groupsize << false;
        for (const char* layer : {"block 1 q_proj", "block 3 down_proj"})
            QTest::newRow(qPrintable(QString("%1 w3 g16 act-order").arg(layer)))
                << QString(layer) << 3 << 16 << true;
    }

    void gptqBeatsRtn() {
        QFETCH(QString, layer);
        QFETCH(int, wbits);
        QFETCH(int, groupsize);
        QFETCH(bool, actOrder);
        const RealLayer& l = realLayer(layer.toStdString());
        GptqConfig gptq;
        gptq.wbits = wbits;
        gptq.groupsize = groupsize;
        gptq.actOrder = actOrder;
        const double gptqError = outputError(l.weights, quantize(l, gptq).dequantize(), l.inputs);
        const double rtnError =
            outputError(l.weights, quantize(l, RtnConfig{wbits, groupsize}).dequantize(), l.inputs);
        QVERIFY2(gptqError < rtnError,
                 qPrintable(QString("GPTQ %1 vs RTN %2").arg(gptqError).arg(rtnError)));
    }

    void spqrHugeThresholdIsNoOutliers_data() {
        QTest::addColumn<QString>("layer");
        QTest::addColumn<bool>("actOrder");
        for (const std::string& layer : qualityLayers())
            for (bool actOrder : {false, true})
                QTest::newRow(qPrintable(
                    QString("%1%2").arg(layer.c_str()).arg(actOrder ? " act-order" : "")))
                    << QString::fromStdString(layer) << actOrder;
    }

    // τ = 1e30 takes the outlier-aware code paths yet can set nothing aside: byte for byte the same
    // as τ = ∞, which skips them. Without outliers SpQR is still at least as good as RTN.
    void spqrHugeThresholdIsNoOutliers() {
        QFETCH(QString, layer);
        QFETCH(bool, actOrder);
        const RealLayer& l = realLayer(layer.toStdString());
        const auto huge = quantize(l, spqrConfig(1e30, actOrder));
        const auto infinite = quantize(l, spqrConfig(kInfinity, actOrder));
        QCOMPARE(huge.outlierCount, std::int64_t(0));
        QCOMPARE(infinite.outlierCount, std::int64_t(0));
        // A layer without outliers stores no CSR at all.
        QVERIFY(!huge.tensors.contains("outlier_row_ptr"));
        QVERIFY(!huge.tensors.contains("outlier_cols"));
        QVERIFY(!huge.tensors.contains("outlier_values"));
        QCOMPARE(differenceOf(huge, infinite), QString());

        const SpqrConfig config = spqrConfig(kInfinity, actOrder);
        const double spqrError = outputError(l.weights, infinite.dequantize(), l.inputs);
        const double rtnError = outputError(
            l.weights, quantize(l, RtnConfig{config.wbits, config.groupsize}).dequantize(),
            l.inputs);
        QVERIFY2(
            spqrError <= rtnError,
            qPrintable(QString("SpQR without outliers %1 vs RTN %2").arg(spqrError).arg(rtnError)));
    }

    void spqrMoreOutliersNeverHurt_data() {
        QTest::addColumn<QString>("layer");
        QTest::addColumn<bool>("actOrder");
        for (const std::string& layer : qualityLayers())
            QTest::newRow(layer.c_str()) << QString::fromStdString(layer) << false;
        QTest::newRow("block 2 o_proj act-order") << "block 2 o_proj" << true;
        QTest::newRow("synthetic") << "synthetic" << false;
    }

    // Sweeping τ down: the outlier count never falls and the layer's output error never rises.
    void spqrMoreOutliersNeverHurt() {
        QFETCH(QString, layer);
        QFETCH(bool, actOrder);
        static const RealLayer synthetic = syntheticLayer(64, 96, 256, 11);
        const RealLayer& l = layer == "synthetic" ? synthetic : realLayer(layer.toStdString());
        QString table;
        std::int64_t previousCount = -1;
        double previousError = kInfinity;
        bool monotone = true;
        for (double tau : {kInfinity, 4.0, 2.0, 1.0, 0.5, 0.25, 0.1, 0.05}) {
            const auto quantized = quantize(l, spqrConfig(tau, actOrder));
            const double error = outputError(l.weights, quantized.dequantize(), l.inputs);
            table += QString(" tau=%1: %2 outliers, error %3;")
                         .arg(tau)
                         .arg(quantized.outlierCount)
                         .arg(error, 0, 'g', 8);
            if (quantized.outlierCount < previousCount || error > previousError * (1.0 + 1e-6))
                monotone = false;
            previousCount = quantized.outlierCount;
            previousError = error;
        }
        QVERIFY2(previousCount > 0, qPrintable("the sweep never found an outlier:" + table));
        QVERIFY2(monotone, qPrintable("not monotone:" + table));
    }

    void storedBytesMatchLayout_data() {
        QTest::addColumn<QString>("layer");
        QTest::addColumn<int>(
            "method"); // 0 RTN, 1 GPTQ, 2 GPTQ act-order, 3 SpQR, 4 SpQR act-order
        QTest::addColumn<int>("wbits");
        QTest::addColumn<int>("groupsize");
        const char* methods[] = {"rtn", "gptq", "gptq act-order", "spqr", "spqr act-order"};
        for (const char* layer : {"block 0 q_proj", "block 1 down_proj", "block 2 up_proj"})
            for (int method = 0; method < 5; ++method)
                for (auto [wbits, groupsize] : {std::pair{3, 16}, {4, 32}, {2, 0}, {5, 128}})
                    QTest::newRow(qPrintable(QString("%1 %2 w%3 g%4")
                                                 .arg(layer, methods[method])
                                                 .arg(wbits)
                                                 .arg(groupsize)))
                        << QString(layer) << method << wbits << groupsize;
    }

    void storedBytesMatchLayout() {
        QFETCH(QString, layer);
        QFETCH(int, method);
        QFETCH(int, wbits);
        QFETCH(int, groupsize);
        const RealLayer& l = realLayer(layer.toStdString());
        QuantConfig config = RtnConfig{wbits, groupsize};
        SpqrConfig spqr = spqrConfig(0.25, method == 4);
        spqr.wbits = wbits;
        spqr.groupsize = groupsize;
        if (method == 1 || method == 2) {
            GptqConfig gptq;
            gptq.wbits = wbits;
            gptq.groupsize = groupsize;
            gptq.actOrder = method == 2;
            config = gptq;
        } else if (method >= 3) {
            config = spqr;
        }
        const auto quantized = quantize(l, config);
        const std::size_t rows = std::size_t(l.weights.rows()),
                          cols = std::size_t(l.weights.cols());
        const std::size_t group = groupsize == 0 ? cols : std::min<std::size_t>(groupsize, cols);
        const std::size_t groups = ceilDiv(cols, group);

        std::size_t expected = rows * ceilDiv(cols * wbits, 32) * 4;
        std::map<std::string, std::vector<std::int64_t>> shapes{
            {"codes", {std::int64_t(rows), std::int64_t(ceilDiv(cols * wbits, 32))}}};
        if (method < 3) {
            expected += 2 * rows * groups * 2;
            shapes["scales"] = shapes["zeros"] = {std::int64_t(rows), std::int64_t(groups)};
        } else {
            const std::size_t nnz = std::size_t(quantized.outlierCount);
            const std::size_t rowGroups = ceilDiv(rows, std::size_t(spqr.statsGroupsize));
            expected += 2 * groups * ceilDiv(rows * spqr.qqBits, 32) * 4; // scale and zero codes
            expected += 2 * groups * rowGroups * 2 * 2;                   // their fp16 statistics
            shapes["scale_codes"] = shapes["zero_codes"] = {
                std::int64_t(groups), std::int64_t(ceilDiv(rows * spqr.qqBits, 32))};
            shapes["scale_stats"] =
                shapes["zero_stats"] = {std::int64_t(groups), std::int64_t(rowGroups), 2};
            if (nnz > 0) { // CSR: fp16 values, columns and row pointers as narrow as they fit
                expected += nnz * (2 + indexBytes(cols - 1)) + (rows + 1) * indexBytes(nnz);
                shapes["outlier_row_ptr"] = {std::int64_t(rows + 1)};
                shapes["outlier_cols"] = shapes["outlier_values"] = {std::int64_t(nnz)};
                QCOMPARE(quantized.tensors.at("outlier_values").dtype, std::string("F16"));
            }
        }
        if (method == 2 || method == 4) {
            expected += cols * indexBytes(cols - 1);
            shapes["perm"] = {std::int64_t(cols)};
        }
        QCOMPARE(quantized.tensors.size(), shapes.size());
        for (const auto& [name, shape] : shapes) {
            QVERIFY2(quantized.tensors.count(name), name.c_str());
            QCOMPARE(quantized.tensors.at(name).shape, shape);
            const std::string& dtype = quantized.tensors.at(name).dtype;
            QCOMPARE(quantized.tensors.at(name).bytes.size(),
                     quantized.tensors.at(name).count() * (dtype == "U32" || dtype == "I32" ? 4
                                                           : dtype == "U8"                  ? 1
                                                                                            : 2));
        }
        QCOMPARE(quantized.storedBytes(), expected);
        const double reported = quantized.bitsPerParameter() * double(rows * cols) / 8.0;
        QVERIFY2(std::abs(reported - double(expected)) <= 1e-9 * double(expected),
                 qPrintable(QString("%1 vs %2").arg(reported, 0, 'g', 17).arg(expected)));
    }

    void paperBits_data() {
        QTest::addColumn<QString>("layer");
        QTest::addColumn<int>("wbits");
        QTest::addColumn<int>("groupsize");
        for (const char* layer : {"block 0 q_proj", "block 4 o_proj"})
            for (int wbits : {3, 4})
                for (int groupsize : {16, 32, 64})
                    QTest::newRow(
                        qPrintable(QString("%1 w%2 g%3").arg(layer).arg(wbits).arg(groupsize)))
                        << QString(layer) << wbits << groupsize;
    }

    // wbits + 32/g for RTN/GPTQ; the SpQR formula of docs/DESIGN.md when β1 | cols and β2 | rows.
    void paperBits() {
        QFETCH(QString, layer);
        QFETCH(int, wbits);
        QFETCH(int, groupsize);
        const RealLayer& l = realLayer(layer.toStdString());
        QCOMPARE(l.weights.cols() % groupsize, Eigen::Index(0));
        const auto rtn = quantize(l, RtnConfig{wbits, groupsize});
        QCOMPARE(rtn.paperBitsPerParameter(), wbits + 32.0 / groupsize);
        // The stored bytes say the same for RTN: codes fill whole words at these shapes.
        QCOMPARE(rtn.bitsPerParameter(), wbits + 32.0 / groupsize);
        GptqConfig gptq;
        gptq.wbits = wbits;
        gptq.groupsize = groupsize;
        QCOMPARE(quantize(l, gptq).paperBitsPerParameter(), wbits + 32.0 / groupsize);

        for (int beta2 : {16, 32}) {
            SpqrConfig spqr = spqrConfig(0.2, true);
            spqr.wbits = wbits;
            spqr.groupsize = groupsize;
            spqr.statsGroupsize = beta2;
            const auto quantized = quantize(l, spqr);
            const double nnz = double(quantized.outlierCount);
            QCOMPARE(double(quantized.outlierCount), nnz);
            const double fraction = nnz / double(l.weights.size());
            const double expected = wbits + 2.0 * spqr.qqBits / groupsize +
                                    64.0 / (double(groupsize) * beta2) + 32.0 * fraction;
            QVERIFY2(std::abs(quantized.paperBitsPerParameter() - expected) <= 1e-12 * expected,
                     qPrintable(QString("%1 vs %2")
                                    .arg(quantized.paperBitsPerParameter(), 0, 'g', 17)
                                    .arg(expected, 0, 'g', 17)));
            QCOMPARE(quantized.outlierFraction(), fraction);
        }
    }

    void sameInputsSameBytes_data() {
        QTest::addColumn<int>("method");
        QTest::newRow("rtn") << 0;
        QTest::newRow("gptq") << 1;
        QTest::newRow("gptq act-order") << 2;
        QTest::newRow("spqr") << 3;
        QTest::newRow("spqr no act-order") << 4;
    }

    // Twice with the same inputs, and with 1 and 2 threads: identical bytes.
    void sameInputsSameBytes() {
        QFETCH(int, method);
        static const RealLayer synthetic = syntheticLayer(128, 256, 256, 5);
        QuantConfig config = RtnConfig{3, 32};
        if (method == 1 || method == 2) {
            GptqConfig gptq;
            gptq.wbits = 3;
            gptq.groupsize = 32;
            gptq.actOrder = method == 2;
            config = gptq;
        } else if (method >= 3) {
            config = spqrConfig(0.2, method == 3);
        }
        const int threads = threadCount();
        setThreadCount(1);
        const auto single = quantize(synthetic, config);
        const auto real = quantize(realLayer("block 2 down_proj"), config);
        setThreadCount(2);
        const auto first = quantize(synthetic, config);
        const auto second = quantize(synthetic, config);
        const auto realTwo = quantize(realLayer("block 2 down_proj"), config);
        setThreadCount(threads);
        QCOMPARE(differenceOf(first, second), QString());
        QCOMPARE(differenceOf(single, first), QString());
        QCOMPARE(differenceOf(real, realTwo), QString());
        if (method >= 3) QVERIFY(single.outlierCount > 0);
    }

    // 8-bit statistics over runs of 3 rows: a run of nearly equal scales gives a second-level
    // range so small that its fp16 scale is clamped, and the real zero −low/scale must still fit
    // fp16 (it overflowed to Inf, which the checkpoint reader then refused).
    void spqrSecondLevelStaysFinite_data() {
        QTest::addColumn<int>("wbits");
        QTest::addColumn<int>("groupsize");
        QTest::addColumn<bool>("actOrder");
        for (const bool actOrder : {false, true}) {
            QTest::newRow(actOrder ? "w1 g33 act-order" : "w1 g33") << 1 << 33 << actOrder;
            QTest::newRow(actOrder ? "w3 g48 act-order" : "w3 g48") << 3 << 48 << actOrder;
        }
    }
    void spqrSecondLevelStaysFinite() {
        QFETCH(int, wbits);
        QFETCH(int, groupsize);
        QFETCH(bool, actOrder);
        // Weights and activations from the engine's seeded heavy-tailed generator.
        const RowMatrix weights = syntheticMatrix(37, 300, 570, "emu.w");
        const RowMatrix inputs = syntheticMatrix(608, 300, 305, "emu.a");
        const Eigen::MatrixXf hessian = (2.0f / 608.0f) * (inputs.transpose() * inputs) +
                                        0.1f * Eigen::MatrixXf::Identity(300, 300);
        SpqrConfig config;
        config.wbits = wbits;
        config.groupsize = groupsize;
        config.qqBits = 8;
        config.statsGroupsize = 3;
        config.blocksize = 32;
        config.actOrder = actOrder;
        const auto quantized = std::make_shared<QuantizedLayer>(
            quantizeLayer(weights, {&hessian}, config, JobContext{}, "synthetic"));
        for (const char* stats : {"scale_stats", "zero_stats"}) {
            const StoredTensor& t = quantized->tensors.at(stats);
            for (std::size_t i = 0; i < t.count(); ++i)
                QVERIFY2(std::isfinite(t.f16At(i)), stats);
        }
        CompressedLinear::fromLayer(quantized, "l"); // the reader's checks accept it
        QVERIFY(quantized->dequantize().allFinite());
    }

    void codesAndOutliersWellFormed_data() {
        QTest::addColumn<QString>("layer");
        QTest::addColumn<int>("wbits");
        QTest::addColumn<bool>("actOrder");
        for (const char* layer : {"block 0 q_proj", "block 3 down_proj", "synthetic"})
            for (bool actOrder : {false, true})
                QTest::newRow(
                    qPrintable(QString("%1 w3%2").arg(layer).arg(actOrder ? " act-order" : "")))
                    << QString(layer) << 3 << actOrder;
        QTest::newRow("block 4 gate_proj w2 act-order") << "block 4 gate_proj" << 2 << true;
    }

    void codesAndOutliersWellFormed() {
        QFETCH(QString, layer);
        QFETCH(int, wbits);
        QFETCH(bool, actOrder);
        static const RealLayer synthetic = syntheticLayer(96, 80, 256, 3);
        const RealLayer& l = layer == "synthetic" ? synthetic : realLayer(layer.toStdString());
        SpqrConfig config = spqrConfig(0.1, actOrder);
        config.wbits = wbits;
        const auto quantized = quantize(l, config);
        const int rows = quantized.rows, cols = quantized.cols;

        // Every code below 2^bits, and the padding after each row's last code is zero.
        const auto checkCodes = [](const StoredTensor& t, std::size_t length, int bits) {
            const std::size_t stride = std::size_t(t.shape[1]);
            const auto* words = reinterpret_cast<const std::uint32_t*>(t.bytes.data());
            for (std::size_t r = 0; r < std::size_t(t.shape[0]); ++r) {
                for (std::size_t i = 0; i < length; ++i)
                    if (unpackCode(words + r * stride, i, bits) >= (1u << bits)) return false;
                const std::size_t used = length * std::size_t(bits) % 32;
                if (used != 0 && (words[r * stride + stride - 1] >> used) != 0) return false;
            }
            return true;
        };
        QVERIFY(checkCodes(quantized.tensors.at("codes"), std::size_t(cols), wbits));
        QVERIFY(checkCodes(quantized.tensors.at("scale_codes"), std::size_t(rows), config.qqBits));
        QVERIFY(checkCodes(quantized.tensors.at("zero_codes"), std::size_t(rows), config.qqBits));

        const StoredTensor& rowPtr = quantized.tensors.at("outlier_row_ptr");
        const StoredTensor& columns = quantized.tensors.at("outlier_cols");
        const StoredTensor& values = quantized.tensors.at("outlier_values");
        const auto nnz = std::int32_t(quantized.outlierCount);
        QVERIFY2(nnz > 0, "τ = 0.1 should find outliers");
        QCOMPARE(rowPtr.indexAt(0), std::int64_t(0));
        QCOMPARE(rowPtr.indexAt(std::size_t(rows)), std::int64_t(nnz));
        QCOMPARE(std::int32_t(columns.count()), nnz);
        QCOMPARE(std::int32_t(values.count()), nnz);

        const std::vector<int> perm = permutationOf(quantized);
        std::vector<int> sorted = perm;
        std::sort(sorted.begin(), sorted.end());
        for (int j = 0; j < cols; ++j)
            QCOMPARE(sorted[std::size_t(j)], j);

        const RowMatrix dequantized = quantized.dequantize();
        for (int r = 0; r < rows; ++r) {
            const auto begin = std::int32_t(rowPtr.indexAt(std::size_t(r)));
            const auto end = std::int32_t(rowPtr.indexAt(std::size_t(r) + 1));
            QVERIFY(begin <= end);
            for (std::int32_t k = begin; k < end; ++k) {
                const int column = int(columns.indexAt(std::size_t(k)));
                QVERIFY(column < cols);
                if (k > begin) QVERIFY(column > columns.indexAt(std::size_t(k) - 1));
                const float stored = values.f16At(std::size_t(k));
                // Outliers keep their error-updated value (SpQR Alg. 1), in fp16.
                QVERIFY(std::isfinite(stored));
                QVERIFY2(dequantized(r, perm[std::size_t(column)]) == stored,
                         qPrintable(QString("(%1, %2): dequantized %3, outlier %4")
                                        .arg(r)
                                        .arg(perm[std::size_t(column)])
                                        .arg(dequantized(r, perm[std::size_t(column)]))
                                        .arg(stored)));
            }
        }
    }

    void rejectsBadInput() {
        const RealLayer& l = realLayer("block 0 q_proj");
        const JobContext job;
        RowMatrix nan = l.weights;
        nan(3, 5) = std::numeric_limits<float>::quiet_NaN();
        QCOMPARE(errorOf([&] { quantizeLayer(nan, {}, RtnConfig{}, job, "layers.0.wq"); }),
                 QString("layers.0.wq: weights contain NaN or Inf; cannot quantize"));
        nan(3, 5) = std::numeric_limits<float>::infinity();
        QCOMPARE(errorOf([&] { quantizeLayer(nan, {&l.hessian}, GptqConfig{}, job, "wq"); }),
                 QString("wq: weights contain NaN or Inf; cannot quantize"));

        const Eigen::MatrixXf small = Eigen::MatrixXf::Identity(10, 10);
        QCOMPARE(errorOf([&] { quantizeLayer(l.weights, {&small}, GptqConfig{}, job, "wq"); }),
                 QString("wq: calibration Hessian is 10×10 but the layer has 64 inputs"));
        const Eigen::MatrixXf wide = Eigen::MatrixXf::Identity(64, 65);
        QCOMPARE(errorOf([&] { quantizeLayer(l.weights, {&wide}, SpqrConfig{}, job, "wq"); }),
                 QString("wq: calibration Hessian is 64×65 but the layer has 64 inputs"));

        QCOMPARE(errorOf([&] { quantizeLayer(l.weights, {}, GptqConfig{}, job, "wq"); }),
                 QString("wq: gptq needs a calibration Hessian"));
        QCOMPARE(errorOf([&] { quantizeLayer(l.weights, {}, SpqrConfig{}, job, "wq"); }),
                 QString("wq: spqr needs a calibration Hessian"));

        QCOMPARE(errorOf([&] {
                     quantizeLayer(l.weights, {}, RtnConfig{0, 128}, job);
                 }),
                 QString("wbits = 0 is outside [1, 8]"));
        GptqConfig gptq;
        gptq.wbits = 0;
        QCOMPARE(errorOf([&] { quantizeLayer(l.weights, {&l.hessian}, gptq, job); }),
                 QString("wbits = 0 is outside [1, 8]"));
        SpqrConfig spqr;
        spqr.outlierThreshold = -1.0;
        QCOMPARE(errorOf([&] { quantizeLayer(l.weights, {&l.hessian}, spqr, job); }),
                 QString("outlier-threshold = -1 is outside [0, inf]"));
        spqr = SpqrConfig{};
        spqr.qqBits = 9;
        QCOMPARE(errorOf([&] { quantizeLayer(l.weights, {&l.hessian}, spqr, job); }),
                 QString("qq-bits = 9 is outside [1, 8]"));

        Eigen::MatrixXf nanHessian = l.hessian;
        nanHessian(2, 7) = std::numeric_limits<float>::quiet_NaN();
        QCOMPARE(errorOf([&] { quantizeLayer(l.weights, {&nanHessian}, GptqConfig{}, job, "wq"); }),
                 QString("wq: calibration Hessian contains NaN or Inf"));
        const Eigen::MatrixXf negative = -Eigen::MatrixXf::Identity(64, 64);
        gptq = GptqConfig{};
        gptq.percdamp = 0.0;
        QVERIFY(errorOf([&] { quantizeLayer(l.weights, {&negative}, gptq, job, "wq"); })
                    .startsWith("wq: calibration Hessian is not positive definite even after "
                                "dampening"));
        QCOMPARE(errorOf([&] { quantizeLayer(RowMatrix(0, 64), {}, RtnConfig{}, job, "e"); }),
                 QString("e: cannot quantize an empty layer"));
    }

    void deadInputsReconstructToZero_data() {
        QTest::addColumn<QString>("layer");
        QTest::addColumn<int>("method"); // 1 GPTQ, 2 GPTQ act-order, 3 SpQR, 4 SpQR act-order
        const char* methods[] = {"", "gptq", "gptq act-order", "spqr", "spqr act-order"};
        for (const char* layer : {"block 0 q_proj", "block 1 down_proj"})
            for (int method = 1; method <= 4; ++method)
                QTest::newRow(qPrintable(QString("%1 %2").arg(layer, methods[method])))
                    << QString(layer) << method;
    }

    // Inputs that are never active (zero rows and columns of H): quantization succeeds, and their
    // weights reconstruct to exactly 0 (GPTQ: integer zero points) or within one quantization step
    // of 0 (SpQR: its qq-bit zero points are not integers, so 0 decodes to scale·(round(z) − z)).
    void deadInputsReconstructToZero() {
        QFETCH(QString, layer);
        QFETCH(int, method);
        RealLayer l = realLayer(layer.toStdString());
        const std::vector<int> dead{0, 5, 33, int(l.weights.cols()) - 1};
        for (int j : dead)
            l.inputs.col(j).setZero();
        l.hessian = 2.0f * l.inputs.transpose() * l.inputs / static_cast<float>(l.inputs.rows());
        for (int j : dead)
            QCOMPARE(l.hessian.col(j).squaredNorm(), 0.0f);
        QuantConfig config = spqrConfig(0.2, method == 4);
        if (method <= 2) {
            GptqConfig gptq;
            gptq.wbits = 3;
            gptq.groupsize = 16;
            gptq.actOrder = method == 2;
            config = gptq;
        }
        const auto quantized = quantize(l, config);
        const RowMatrix dequantized = quantized.dequantize();
        QVERIFY(dequantized.allFinite());
        QString nonzero;
        int count = 0;
        for (int j : dead)
            for (Eigen::Index r = 0; r < dequantized.rows(); ++r) {
                const float step =
                    (l.weights.row(r).maxCoeff() - l.weights.row(r).minCoeff()) / 7.0f;
                const float allowed = method >= 3 ? step : 0.0f;
                if (std::abs(dequantized(r, j)) > allowed && count++ < 5)
                    nonzero += QString(" (%1, %2) = %3;").arg(r).arg(j).arg(dequantized(r, j));
            }
        QVERIFY2(count == 0,
                 qPrintable(QString("%1 dead-input weights are not 0:%2").arg(count).arg(nonzero)));
        // The live weights are still quantized well.
        const double error = outputError(l.weights, dequantized, l.inputs);
        QVERIFY2(error < 0.1, qPrintable(QString("output error %1").arg(error)));
    }

    void prepareHessianMarksDeadInputs() {
        Eigen::MatrixXf h = realLayer("block 0 q_proj").hessian;
        h.row(7).setZero();
        h.col(7).setZero();
        const PreparedHessian prepared =
            prepareHessian(*quantlens::cpuBackend(), h, 0.01, true, "h");
        QCOMPARE(prepared.deadColumns.size(), std::size_t(64));
        for (int j = 0; j < 64; ++j)
            QCOMPARE(bool(prepared.deadColumns[std::size_t(j)]), j == 7);
        // Act-order: descending diag H, ties in index order, the dead input's diagonal counting
        // as 1 (GPTQ sets it before sorting).
        h(7, 7) = 1.0f;
        std::vector<int> expected(64);
        for (int j = 0; j < 64; ++j)
            expected[std::size_t(j)] = j;
        std::stable_sort(expected.begin(), expected.end(),
                         [&](int a, int b) { return h(a, a) > h(b, b); });
        QVERIFY(prepared.permutation == expected);
        // UᵀU is the inverse of the permuted, dampened H.
        Eigen::MatrixXd damped(64, 64);
        for (int i = 0; i < 64; ++i)
            for (int j = 0; j < 64; ++j)
                damped(i, j) =
                    h(prepared.permutation[std::size_t(i)], prepared.permutation[std::size_t(j)]);
        damped.diagonal().array() += 0.01 * damped.diagonal().mean();
        const Eigen::MatrixXd u = prepared.inverseCholesky.cast<double>();
        QVERIFY(u.isUpperTriangular());
        const double residual =
            (u.transpose() * u * damped - Eigen::MatrixXd::Identity(64, 64)).cwiseAbs().maxCoeff();
        QVERIFY2(residual < 1e-3, qPrintable(QString("residual %1").arg(residual)));
    }
};

QTEST_GUILESS_MAIN(TestQuantizers)
#include "test_quantizers.moc"
