#include "test_data.h"

#include "quantlens/core/error.h"
#include "quantlens/encoding/bit_packing.h"
#include "quantlens/formats/model_loading.h"
#include "quantlens/gpu/cuda_backend.h"
#include "quantlens/gpu/device_compressed_matrix.h"
#include "quantlens/gpu/device_info.h"
#include "quantlens/io/text_file.h"
#include "quantlens/model/model.h"
#include "quantlens/model/synthetic_model.h"
#include "quantlens/quantization/layer_calibration.h"
#include "quantlens/quantization/layer_quantizer.h"
#include "quantlens/quantization/model_quantizer.h"
#include "quantlens/runtime/backend.h"
#include "quantlens/runtime/compressed_linear.h"
#include "quantlens/runtime/perplexity.h"

#include <nlohmann/json.hpp>

#include <QTemporaryDir>
#include <QtTest>

#include <cuda_runtime.h>

#include <memory>
#include <random>

// CPU against CUDA (issue 6). Every test skips on a machine without a usable GPU, as CI is.
// Tolerances:
// - Gram matrices: fp32 sums in another order, |ΔG| ≤ 1e-5 · max |G|.
// - OBS quantizers (GPTQ, SpQR): the feedback products round differently, which can move a weight
//   across a rounding boundary; ≥ 99.5% of codes are identical and the layer's output error
//   tr(ΔW H ΔWᵀ) is within 1% of the CPU's.
// - SqueezeLLM's assignment compares in double on both: identical bytes.
// - Compressed GEMV: |Δy| ≤ 1e-5 · Σ_j |w_j·x_j| against dequantize()·x summed in double.

Q_DECLARE_METATYPE(quantlens::QuantConfig)

using namespace quantlens;

namespace {

std::optional<std::string> noDeviceReason() {
    const gpu::DeviceQuery query = gpu::queryDevices();
    if (query.devices.empty()) return query.unavailableReason;
    return std::nullopt;
}

#define REQUIRE_GPU()                                                                              \
    do {                                                                                           \
        if (const auto reason = noDeviceReason())                                                  \
            QSKIP(qPrintable(QString("no CUDA device: %1").arg(QString::fromStdString(*reason)))); \
    } while (false)

// H = 2·XᵀX/n of seeded heavy-tailed activations with a shared low-rank part, as real ones have.
Eigen::MatrixXf syntheticHessian(int cols, std::uint64_t seed) {
    const RowMatrix x = syntheticMatrix(2 * cols, cols, seed, "parity.activations");
    const RowMatrix shared = syntheticMatrix(2 * cols, 4, seed, "parity.shared") *
                             syntheticMatrix(4, cols, seed, "parity.mixing") * 400.0f;
    const RowMatrix a = x + shared;
    return (2.0f / static_cast<float>(a.rows())) * (a.transpose() * a);
}

std::vector<std::uint32_t> unpackedCodes(const QuantizedLayer& layer) {
    const StoredTensor& t = layer.tensors.at("codes");
    const auto* words = reinterpret_cast<const std::uint32_t*>(t.bytes.data());
    const int bits = weightBits(layer.config);
    const std::size_t stride = wordsPerRow(static_cast<std::size_t>(layer.cols), bits);
    std::vector<std::uint32_t> codes;
    for (int r = 0; r < layer.rows; ++r)
        for (int j = 0; j < layer.cols; ++j)
            codes.push_back(unpackCode(words + r * stride, static_cast<std::size_t>(j), bits));
    return codes;
}

double outputError(const RowMatrix& w, const RowMatrix& q, const Eigen::MatrixXf& h) {
    const Eigen::MatrixXd d = (w - q).cast<double>();
    return (d * h.cast<double>() * d.transpose()).trace();
}

struct LayerCase {
    const char* name;
    RowMatrix weights;
    Eigen::MatrixXf hessian;
};

// Real stories260K layers with block 0's Hessians, and a synthetic layer wide enough for several
// 128-column blocks plus a partial one.
std::vector<LayerCase> obsCases() {
    const auto model = loadModel(test::dataPath("stories260K-hf"));
    std::vector<std::int32_t> stream(512);
    for (std::size_t i = 0; i < stream.size(); ++i)
        stream[i] = 1 + static_cast<std::int32_t>((i * 7919) % (model->config.vocabSize - 1));
    const BlockCalibration calibration =
        calibrateBlock(*model, stream, CalibrationConfig{4, 128}, 0, JobContext());
    std::vector<LayerCase> cases;
    const auto& block = model->blocks[0];
    cases.push_back(
        {"stories q_proj", FloatTensor(block.wq).matrix(), calibration.hessianOf("q_proj")});
    cases.push_back({"stories down_proj", FloatTensor(block.down).matrix(),
                     calibration.hessianOf("down_proj")});
    cases.push_back({"synthetic 96x600", syntheticMatrix(96, 600, 3, "parity.weights"),
                     syntheticHessian(600, 3)});
    return cases;
}

} // namespace

class TestGpuParity : public QObject {
    Q_OBJECT

private slots:
    void gramMatchesCpu() {
        REQUIRE_GPU();
        const auto cuda = gpu::makeCudaBackend();
        const RowMatrix a = syntheticMatrix(300, 172, 5, "parity.gram.a");
        const RowMatrix b = syntheticMatrix(77, 172, 6, "parity.gram.b");
        const auto cpuGram = cpuBackend()->gramAccumulator(172);
        const auto cudaGram = cuda->gramAccumulator(172);
        for (const RowMatrix* x : {&a, &b}) {
            cpuGram->add(*x);
            cudaGram->add(*x);
        }
        const Eigen::MatrixXf expected = cpuGram->result(), actual = cudaGram->result();
        QVERIFY(actual.isApprox(actual.transpose()));
        const float scale = expected.cwiseAbs().maxCoeff();
        QVERIFY2((actual - expected).cwiseAbs().maxCoeff() <= 1e-5f * scale,
                 qPrintable(QString::number((actual - expected).cwiseAbs().maxCoeff() / scale)));
    }

    // L⁻¹ of a dampened Hessian: as exact as the CPU's (L⁻¹·A·L⁻ᵀ ≈ I), lower triangular, and a
    // matrix that is not positive definite is refused by both.
    void inverseCholeskyFactorMatchesCpu() {
        REQUIRE_GPU();
        const auto cuda = gpu::makeCudaBackend();
        Eigen::MatrixXf a = syntheticHessian(300, 4);
        a.diagonal().array() += 0.01f * a.diagonal().mean();
        Eigen::MatrixXf onCpu = a, onCuda = a;
        QVERIFY(cpuBackend()->inverseCholeskyFactor(onCpu));
        QVERIFY(cuda->inverseCholeskyFactor(onCuda));
        QVERIFY(onCuda.triangularView<Eigen::StrictlyUpper>().toDenseMatrix().isZero(0.0f));
        const auto residual = [&](const Eigen::MatrixXf& inverse) {
            const Eigen::MatrixXd l = inverse.cast<double>();
            return (l * a.cast<double>() * l.transpose() - Eigen::MatrixXd::Identity(300, 300))
                .cwiseAbs()
                .maxCoeff();
        };
        QVERIFY2(
            residual(onCuda) <= std::max(10.0 * residual(onCpu), 1e-4),
            qPrintable(
                QString("%1 on CUDA, %2 on the CPU").arg(residual(onCuda)).arg(residual(onCpu))));
        Eigen::MatrixXf indefinite = Eigen::MatrixXf::Identity(8, 8);
        indefinite(5, 5) = -1.0f;
        Eigen::MatrixXf copy = indefinite;
        QVERIFY(!cpuBackend()->inverseCholeskyFactor(copy));
        QVERIFY(!cuda->inverseCholeskyFactor(indefinite));
    }

    // quantizeModel's walk: every stage's Gram of block 0 and, after advancing, of block 1, on
    // stories260K with real text, within fp32 summation order of the CPU's.
    void calibrationWalkMatchesCpu() {
        REQUIRE_GPU();
        QUANTLENS_REQUIRE_DATA("stories260K-hf");
        const auto model = loadModel(test::dataPath("stories260K-hf"));
        const Transformer transformer(*model, Transformer::WeightConversion::PerUse);
        const auto stream =
            tokenizeForProtocol(*loadTokenizer(test::dataPath("stories260K-hf/tokenizer.model")),
                                readTextFile(test::dataPath("text/tinystories-valid-excerpt.txt")),
                                PerplexityProtocol::Documents, model->config.bosToken, "excerpt");
        std::vector<RowMatrix> hidden;
        for (int s = 0; s < 4; ++s)
            hidden.push_back(transformer.embed(std::span(stream).subspan(std::size_t(s) * 96, 96)));
        const auto cuda = gpu::makeCudaBackend();
        const auto onCpu = cpuBackend()->calibrationWalk(transformer, hidden, JobContext{});
        const auto onCuda = cuda->calibrationWalk(transformer, hidden, JobContext{});
        for (int block = 0; block < 2; ++block) {
            const Transformer::FloatBlockWeights weights = transformer.blockWeights(block);
            for (const LinearStage stage : kLinearStages) {
                const Eigen::MatrixXf expected =
                    onCpu->stageGram(block, weights.view(), stage, JobContext());
                const Eigen::MatrixXf actual =
                    onCuda->stageGram(block, weights.view(), stage, JobContext());
                QCOMPARE(actual.rows(), expected.rows());
                const float scale = expected.cwiseAbs().maxCoeff();
                QVERIFY2((actual - expected).cwiseAbs().maxCoeff() <= 1e-5f * scale,
                         qPrintable(QString("block %1 stage %2: %3")
                                        .arg(block)
                                        .arg(int(stage))
                                        .arg((actual - expected).cwiseAbs().maxCoeff() / scale)));
            }
            onCpu->advance(block, weights.view(), JobContext());
            onCuda->advance(block, weights.view(), JobContext());
        }
    }

    // The whole of quantizeModel on each backend: same layers, same bits, output errors and
    // perplexity within the OBS tolerance above.
    void quantizeModelMatchesCpu() {
        REQUIRE_GPU();
        QUANTLENS_REQUIRE_DATA("stories260K-hf");
        const auto model = loadModel(test::dataPath("stories260K-hf"));
        const auto stream =
            tokenizeForProtocol(*loadTokenizer(test::dataPath("stories260K-hf/tokenizer.model")),
                                readTextFile(test::dataPath("text/tinystories-valid-excerpt.txt")),
                                PerplexityProtocol::Documents, model->config.bosToken, "excerpt");
        SpqrConfig spqr;
        spqr.blocksize = 32;
        const CalibrationConfig calibration{8, 128};
        const QuantizeResult cpu =
            quantizeModel(*model, stream, spqr, calibration, {}, JobContext());
        const auto cuda = gpu::makeCudaBackend();
        const QuantizeResult onCuda =
            quantizeModel(*model, stream, spqr, calibration, {}, JobContext(cuda));
        QCOMPARE(onCuda.layers.size(), cpu.layers.size());
        for (std::size_t i = 0; i < cpu.layers.size(); ++i) {
            const LayerReport& a = cpu.layers[i];
            const LayerReport& b = onCuda.layers[i];
            QCOMPARE(b.name, a.name);
            QVERIFY2(std::abs(b.relativeOutputError - a.relativeOutputError) <=
                         0.01 * a.relativeOutputError,
                     qPrintable(QString("block %1 %2: %3 on CUDA, %4 on the CPU")
                                    .arg(a.block)
                                    .arg(QString::fromStdString(a.name))
                                    .arg(b.relativeOutputError)
                                    .arg(a.relativeOutputError)));
        }
        QVERIFY(std::abs(onCuda.bitsPerParameter - cpu.bitsPerParameter) <=
                0.01 * cpu.bitsPerParameter);
    }

    void obsQuantizersMatchCpu_data() {
        QTest::addColumn<QuantConfig>("config");
        GptqConfig gptq{3, 16, 32, 0.01, true}; // narrow blocks: many feedback steps on 64 inputs
        QTest::newRow("gptq w3 g16 act-order") << QuantConfig(gptq);
        GptqConfig wholeRow{4, 0, 32, 0.01, false}; // one group wider than every block
        QTest::newRow("gptq w4 per-channel") << QuantConfig(wholeRow);
        GptqConfig widerGroups{4, 48, 32, 0.01, false}; // groups fetched ahead of their block
        QTest::newRow("gptq w4 g48, 32-column blocks") << QuantConfig(widerGroups);
        SpqrConfig spqr;
        spqr.blocksize = 32;
        QTest::newRow("spqr paper setting, 32-column blocks") << QuantConfig(spqr);
        spqr.groupsize = 48;
        QTest::newRow("spqr g48, 32-column blocks") << QuantConfig(spqr);
    }
    void obsQuantizersMatchCpu() {
        REQUIRE_GPU();
        QUANTLENS_REQUIRE_DATA("stories260K-hf");
        QFETCH(QuantConfig, config);
        const auto cuda = gpu::makeCudaBackend();
        for (const LayerCase& c : obsCases()) {
            const LayerCalibration calibration{.hessian = &c.hessian};
            const QuantizedLayer onCpu =
                quantizeLayer(c.weights, calibration, config, JobContext(), c.name);
            const QuantizedLayer onCuda =
                quantizeLayer(c.weights, calibration, config, JobContext(cuda), c.name);
            const auto a = unpackedCodes(onCpu), b = unpackedCodes(onCuda);
            std::size_t same = 0;
            for (std::size_t i = 0; i < a.size(); ++i)
                same += a[i] == b[i];
            QVERIFY2(same >= 0.995 * static_cast<double>(a.size()),
                     qPrintable(
                         QString("%1: %2 of %3 codes agree").arg(c.name).arg(same).arg(a.size())));
            const double cpuError = outputError(c.weights, onCpu.dequantize(), c.hessian);
            const double cudaError = outputError(c.weights, onCuda.dequantize(), c.hessian);
            QVERIFY2(std::abs(cudaError - cpuError) <= 0.01 * cpuError,
                     qPrintable(QString("%1: output error %2 on CUDA, %3 on the CPU")
                                    .arg(c.name)
                                    .arg(cudaError)
                                    .arg(cpuError)));
        }
    }

    void squeezeLlmIsIdentical() {
        REQUIRE_GPU();
        const auto cuda = gpu::makeCudaBackend();
        const RowMatrix weights = syntheticMatrix(40, 300, 9, "parity.squeeze.w");
        const RowMatrix fisher = syntheticMatrix(40, 300, 9, "parity.squeeze.f").cwiseAbs2();
        const SqueezeConfig config{.wbits = 3, .sparsePercent = 0.4, .sensitivePercent = 0.05};
        const LayerCalibration calibration{.fisher = &fisher};
        const QuantizedLayer onCpu = quantizeLayer(weights, calibration, config, JobContext());
        const QuantizedLayer onCuda = quantizeLayer(weights, calibration, config, JobContext(cuda));
        for (const auto& [name, tensor] : onCpu.tensors)
            QVERIFY2(onCuda.tensors.at(name).bytes == tensor.bytes, name.c_str());

        // Ties and duplicate centroids: the lower index wins on both.
        const RowMatrix values =
            (RowMatrix(1, 8) << -1.0f, 0.5f, 0.25f, 2.0f, 0.0f, 9.0f, 0.6f, 0.75f).finished();
        const std::vector<float> table{0.0f, 0.5f, 0.5f, 1.0f};
        std::vector<std::uint16_t> cpuCodes(8), cudaCodes(8);
        cpuBackend()->assignNearest(values, table, 4, cpuCodes);
        cuda->assignNearest(values, table, 4, cudaCodes);
        QCOMPARE(cudaCodes, cpuCodes);
        QCOMPARE(cpuCodes, (std::vector<std::uint16_t>{0, 1, 0, 3, 0, 3, 1, 1}));
    }

    // Both RoPE layouts (HF rotate-half, llama2.c interleaved) and a bf16 checkpoint, against the
    // reference perplexities of shared/data/README.md that test_perplexity holds the CPU to.
    void perplexityMatchesCpu_data() {
        QTest::addColumn<QString>("model");
        QTest::addColumn<QString>("tokenizer");
        QTest::addColumn<int>("context");
        QTest::addColumn<double>("referencePerplexity");
        QTest::newRow("hf f32 ctx256") << "stories260K-hf"
                                       << "stories260K-hf/tokenizer.model" << 256 << 5.461168;
        QTest::newRow("bin f32 ctx128") << "stories260K/stories260K.bin"
                                        << "stories260K/tok512.bin" << 128 << 5.685983;
        QTest::newRow("hf bf16 ctx256") << "stories260K-hf-bf16"
                                        << "stories260K-hf-bf16/tokenizer.model" << 256 << 5.465639;
    }
    void perplexityMatchesCpu() {
        REQUIRE_GPU();
        QFETCH(QString, model);
        QFETCH(QString, tokenizer);
        QFETCH(int, context);
        QFETCH(double, referencePerplexity);
        QUANTLENS_REQUIRE_DATA(model.toStdString());
        const auto loaded = loadModel(test::dataPath(model.toStdString()));
        const auto stream =
            tokenizeForProtocol(*loadTokenizer(test::dataPath(tokenizer.toStdString())),
                                readTextFile(test::dataPath("text/tinystories-valid-excerpt.txt")),
                                PerplexityProtocol::Documents, loaded->config.bosToken, "excerpt");
        const Transformer transformer(*loaded);
        const PerplexityConfig config{context, PerplexityProtocol::Documents};
        const PerplexityResult cpu = evaluatePerplexity(transformer, stream, config, JobContext());
        const auto cuda = gpu::makeCudaBackend();
        const PerplexityResult onCuda =
            evaluatePerplexity(transformer, stream, config, JobContext(cuda));
        QCOMPARE(onCuda.scoredTokens, cpu.scoredTokens);
        for (const double expected : {cpu.perplexity, referencePerplexity})
            QVERIFY2(std::abs(onCuda.perplexity - expected) <= 1e-4 * expected,
                     qPrintable(QString("%1 on CUDA vs %2")
                                    .arg(onCuda.perplexity, 0, 'f', 7)
                                    .arg(expected, 0, 'f', 7)));

        // One window's logits, element by element.
        const std::span<const std::int32_t> window(stream.data(), std::size_t(context));
        const RowMatrix expected =
            cpuBackend()->sequenceForward(transformer, JobContext{})->logits(window, {});
        const RowMatrix actual =
            cuda->sequenceForward(transformer, JobContext{})->logits(window, {});
        const float scale = expected.cwiseAbs().maxCoeff();
        QVERIFY2((actual - expected).cwiseAbs().maxCoeff() <= 1e-4f * scale,
                 qPrintable(QString::number((actual - expected).cwiseAbs().maxCoeff() / scale)));
    }

    // The architectures of ../shared/data/archs on the device: Qwen2's biases, Qwen3's q/k norms
    // and wider heads, Mistral's window, Llama 3's scaled RoPE. The excerpt's perplexity against
    // the CPU's and reference.json's, one window's logits element by element, and every stage's
    // Gram of the calibration walk through two blocks.
    void architecturesMatchCpu_data() {
        QTest::addColumn<QString>("arch");
        for (const char* arch : {"llama3", "mistral", "qwen2", "qwen3"})
            QTest::newRow(arch) << arch;
    }
    void architecturesMatchCpu() {
        REQUIRE_GPU();
        QFETCH(QString, arch);
        const std::string directory = "archs/" + arch.toStdString();
        QUANTLENS_REQUIRE_DATA(directory + "/reference.json");
        const auto reference = nlohmann::json::parse(
            test::readBytes(test::dataPath(directory + "/reference.json")))["excerpt_ppl"];
        const auto model = loadModel(test::dataPath(directory));
        const auto stream =
            tokenizeForProtocol(*loadTokenizer(test::dataPath(directory + "/tokenizer.model")),
                                readTextFile(test::dataPath("text/tinystories-valid-excerpt.txt")),
                                PerplexityProtocol::Documents, model->config.bosToken, "excerpt");
        const Transformer transformer(*model);
        const PerplexityConfig config{reference["ctx"].get<int>(), PerplexityProtocol::Documents};
        const PerplexityResult cpu = evaluatePerplexity(transformer, stream, config, JobContext());
        const auto cuda = gpu::makeCudaBackend();
        const PerplexityResult onCuda =
            evaluatePerplexity(transformer, stream, config, JobContext(cuda));
        for (const double expected : {cpu.perplexity, reference["ppl"].get<double>()})
            QVERIFY2(std::abs(onCuda.perplexity - expected) <= 1e-4 * expected,
                     qPrintable(QString("%1 on CUDA vs %2")
                                    .arg(onCuda.perplexity, 0, 'f', 7)
                                    .arg(expected, 0, 'f', 7)));

        // 96 tokens: past Mistral's 32-token window.
        const std::span<const std::int32_t> window(stream.data(), 96);
        const RowMatrix expected =
            cpuBackend()->sequenceForward(transformer, JobContext{})->logits(window, {});
        const RowMatrix actual =
            cuda->sequenceForward(transformer, JobContext{})->logits(window, {});
        const float scale = expected.cwiseAbs().maxCoeff();
        QVERIFY2((actual - expected).cwiseAbs().maxCoeff() <= 1e-4f * scale,
                 qPrintable(QString::number((actual - expected).cwiseAbs().maxCoeff() / scale)));

        std::vector<RowMatrix> hidden;
        for (int s = 0; s < 3; ++s)
            hidden.push_back(transformer.embed(window));
        const auto onCpu = cpuBackend()->calibrationWalk(transformer, hidden, JobContext{});
        const auto walk = cuda->calibrationWalk(transformer, hidden, JobContext{});
        for (int block = 0; block < 2; ++block) {
            const Transformer::FloatBlockWeights weights = transformer.blockWeights(block);
            for (const LinearStage stage : kLinearStages) {
                const Eigen::MatrixXf gram =
                    onCpu->stageGram(block, weights.view(), stage, JobContext());
                const Eigen::MatrixXf onDevice =
                    walk->stageGram(block, weights.view(), stage, JobContext());
                QCOMPARE(onDevice.rows(), gram.rows());
                QVERIFY((onDevice - gram).cwiseAbs().maxCoeff() <=
                        1e-5f * gram.cwiseAbs().maxCoeff());
            }
            onCpu->advance(block, weights.view(), JobContext());
            walk->advance(block, weights.view(), JobContext());
        }
    }

    // Shapes stories260K lacks (headDim 128, widths past one block of threads, plain multi-head
    // and grouped-query attention), on seeded synthetic checkpoints.
    void syntheticModelsMatchCpu_data() {
        QTest::addColumn<int>("kvHeads");
        QTest::addColumn<QString>("dtype");
        QTest::newRow("4 heads, 2 kv heads, bf16") << 2 << "BF16";
        QTest::newRow("4 heads, 4 kv heads, f32") << 4 << "F32";
    }
    void syntheticModelsMatchCpu() {
        REQUIRE_GPU();
        QFETCH(int, kvHeads);
        QFETCH(QString, dtype);
        QTemporaryDir dir;
        const SyntheticModelSpec spec{.hiddenSize = 512,
                                      .intermediateSize = 1000,
                                      .layers = 2,
                                      .heads = 4,
                                      .kvHeads = kvHeads,
                                      .vocab = 512,
                                      .maxPositions = 512,
                                      .dtype = dtype.toStdString(),
                                      .seed = 3};
        writeSyntheticModel(spec, dir.path().toStdString(), JobContext());
        const auto model = loadModel(dir.path().toStdString());
        const Transformer transformer(*model);
        std::vector<std::int32_t> stream(1200);
        for (std::size_t i = 0; i < stream.size(); ++i)
            stream[i] = static_cast<std::int32_t>((i * 7919 + i / 5) % 512);
        const PerplexityConfig config{300, PerplexityProtocol::Documents};
        const auto cuda = gpu::makeCudaBackend();
        const double cpu = evaluatePerplexity(transformer, stream, config, JobContext()).perplexity;
        const double onCuda =
            evaluatePerplexity(transformer, stream, config, JobContext(cuda)).perplexity;
        QVERIFY2(std::abs(onCuda - cpu) <= 1e-4 * cpu,
                 qPrintable(QString("%1 on CUDA vs %2").arg(onCuda).arg(cpu)));
        const std::span<const std::int32_t> window(stream.data(), 300);
        const RowMatrix expected =
            cpuBackend()->sequenceForward(transformer, JobContext{})->logits(window, {});
        const RowMatrix actual =
            cuda->sequenceForward(transformer, JobContext{})->logits(window, {});
        const float scale = expected.cwiseAbs().maxCoeff();
        QVERIFY2((actual - expected).cwiseAbs().maxCoeff() <= 1e-4f * scale,
                 qPrintable(QString::number((actual - expected).cwiseAbs().maxCoeff() / scale)));
        // No tokens: the CPU's error on both.
        const auto emptyError = [&](const Backend& backend) {
            try {
                backend.sequenceForward(transformer, JobContext{})->logits({}, {});
            } catch (const quantlens::Error& e) {
                return std::string(e.what());
            }
            return std::string("no error");
        };
        QCOMPARE(emptyError(*cuda), emptyError(*cpuBackend()));
    }

    void compressedGemvMatchesDequantize_data() {
        QTest::addColumn<QuantConfig>("config");
        QTest::addColumn<int>("rows");
        QTest::addColumn<int>("cols");
        QTest::newRow("rtn w4 g32") << QuantConfig(RtnConfig{4, 32}) << 70 << 600;
        QTest::newRow("rtn w8 g24") << QuantConfig(RtnConfig{8, 24}) << 20 << 300;
        QTest::newRow("rtn w1 g5, 20 inputs") << QuantConfig(RtnConfig{1, 5}) << 9 << 20;
        QTest::newRow("gptq w3 g128 act-order 172 inputs")
            << QuantConfig(GptqConfig{3, 128, 128, 0.01, true}) << 64 << 172;
        QTest::newRow("spqr paper setting") << QuantConfig(SpqrConfig{}) << 96 << 600;
        QTest::newRow("spqr w2 g48 β2 8, no act-order")
            << QuantConfig(SpqrConfig{2, 48, 3, 8, 0.1, 128, 1.0, false}) << 50 << 300;
        QTest::newRow("squeezellm w3 0.45% sparse")
            << QuantConfig(SqueezeConfig{3, 0.4, 0.05, 50}) << 64 << 172;
        QTest::newRow("squeezellm w4 dense")
            << QuantConfig(SqueezeConfig{4, 0, 0, 50}) << 33 << 256;
        QTest::newRow("squeezellm w8 3% sparse")
            << QuantConfig(SqueezeConfig{8, 2.0, 1.0, 10}) << 12 << 300;
    }
    void compressedGemvMatchesDequantize() {
        REQUIRE_GPU();
        QFETCH(QuantConfig, config);
        QFETCH(int, rows);
        QFETCH(int, cols);
        const RowMatrix weights = syntheticMatrix(rows, cols, 11, "parity.gemv.w");
        const Eigen::MatrixXf hessian = syntheticHessian(cols, 11);
        const RowMatrix fisher = syntheticMatrix(rows, cols, 11, "parity.gemv.f").cwiseAbs2();
        const auto layer = std::make_shared<QuantizedLayer>(
            quantizeLayer(weights, {.hessian = &hessian, .fisher = &fisher}, config, JobContext()));
        const auto op = CompressedLinear::fromLayer(layer, "parity");
        const RowMatrix dense = layer->dequantize();

        std::mt19937 engine(3);
        std::normal_distribution<float> normal;
        std::vector<float> x(static_cast<std::size_t>(cols)), y(static_cast<std::size_t>(rows));
        for (float& v : x)
            v = normal(engine);
        const gpu::DeviceCompressedMatrix device(op->matrix());
        float *dx = nullptr, *dy = nullptr;
        QCOMPARE(cudaMalloc(&dx, x.size() * sizeof(float)), cudaSuccess);
        QCOMPARE(cudaMalloc(&dy, y.size() * sizeof(float)), cudaSuccess);
        cudaMemcpy(dx, x.data(), x.size() * sizeof(float), cudaMemcpyHostToDevice);
        device.multiply(dx, dy);
        QCOMPARE(cudaMemcpy(y.data(), dy, y.size() * sizeof(float), cudaMemcpyDeviceToHost),
                 cudaSuccess);
        cudaFree(dx);
        cudaFree(dy);
        for (int r = 0; r < rows; ++r) {
            double expected = 0.0, magnitude = 0.0;
            for (int j = 0; j < cols; ++j) {
                expected += double(dense(r, j)) * x[std::size_t(j)];
                magnitude += std::abs(double(dense(r, j)) * x[std::size_t(j)]);
            }
            QVERIFY2(std::abs(y[std::size_t(r)] - expected) <= 1e-5 * magnitude + 1e-30,
                     qPrintable(
                         QString("row %1: %2 vs %3").arg(r).arg(y[std::size_t(r)]).arg(expected)));
        }
    }
};

QTEST_GUILESS_MAIN(TestGpuParity)
#include "test_gpu_parity.moc"
