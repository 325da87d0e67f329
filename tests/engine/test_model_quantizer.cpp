// quantizeModel end to end on stories260K: the reports, the sink, calibration errors, cancel, and
// the dense checkpoint it streams into (HF and llama2.c sources).
#include "calibration_text.h"
#include "error_text.h"
#include "test_data.h"

#include "quantlens/core/error.h"
#include "quantlens/formats/dense_checkpoint_writer.h"
#include "quantlens/formats/model_loading.h"
#include "quantlens/io/safetensors.h"
#include "quantlens/io/text_file.h"
#include "quantlens/quantization/fisher.h"
#include "quantlens/quantization/layer_quantizer.h"
#include "quantlens/quantization/model_quantizer.h"
#include "quantlens/runtime/perplexity.h"
#include "quantlens/runtime/transformer.h"
#include "quantlens/tokenizer/tokenizer.h"

#include <QTemporaryDir>

#include <cmath>
#include <cstring>

using namespace quantlens;
namespace fs = std::filesystem;

using quantlens::test::errorOf;

namespace {

constexpr int kSequences = 8;
constexpr int kSequenceLength = 128;

const CalibrationConfig kCalibration{kSequences, kSequenceLength};

int layerIndex(const std::string& name) {
    for (int i = 0; i < 7; ++i)
        if (name == kLinearLayers[i].name) return i;
    throw std::runtime_error("unknown layer " + name);
}

struct SinkEntry {
    int block;
    std::string name;
    int rows, cols;
    std::size_t storedBytes;
    std::int64_t outliers;
    bool reconstructionIsDequantize;
};

struct Run {
    QuantizeResult result;
    std::vector<SinkEntry> sink;
    std::vector<std::array<RowMatrix, 7>> reconstructions;
    std::vector<std::pair<double, std::string>> progress;
};

Run quantizeWithSink(const Model& model, std::span<const std::int32_t> stream,
                     const QuantConfig& method, DenseCheckpointWriter* writer = nullptr) {
    Run run;
    run.reconstructions.resize(model.blocks.size());
    const JobContext job([&](double fraction, const std::string& stage) {
        run.progress.emplace_back(fraction, stage);
    });
    run.result = quantizeModel(
        model, stream, method, kCalibration,
        [&](int block, const std::string& name, const QuantizedLayer& layer,
            const RowMatrix& reconstruction) {
            const RowMatrix dequantized = layer.dequantize();
            run.sink.push_back(
                {block, name, layer.rows, layer.cols, layer.storedBytes(), layer.outlierCount,
                 dequantized.rows() == reconstruction.rows() &&
                     dequantized.cols() == reconstruction.cols() &&
                     std::memcmp(dequantized.data(), reconstruction.data(),
                                 sizeof(float) * std::size_t(dequantized.size())) == 0});
            run.reconstructions[std::size_t(block)][std::size_t(layerIndex(name))] = reconstruction;
            if (writer) writer->writeLayer(block, name, reconstruction);
        },
        job);
    return run;
}

bool bitwiseEqual(const ConstRowMatrixMap& a, const RowMatrix& b) {
    return a.rows() == b.rows() && a.cols() == b.cols() &&
           std::memcmp(a.data(), b.data(), sizeof(float) * std::size_t(a.size())) == 0;
}

bool sameTensor(const TensorView& a, const TensorView& b) {
    if (a.shape != b.shape) return false;
    const FloatTensor x(a), y(b);
    return std::memcmp(x.data(), y.data(), sizeof(float) * std::size_t(a.elementCount())) == 0;
}

// ‖WXᵀ − ŴXᵀ‖² / ‖WXᵀ‖² in double.
double outputError(const RowMatrix& original, const RowMatrix& reconstruction,
                   const RowMatrix& inputs) {
    const Eigen::MatrixXd x = inputs.cast<double>();
    return (x * (original.cast<double>() - reconstruction.cast<double>()).transpose())
               .squaredNorm() /
           (x * original.cast<double>().transpose()).squaredNorm();
}

// Checks the reports against the model and each other, and the sink against the reports.
void checkReports(const Model& model, const Run& run, bool calibrated) {
    const ModelConfig& c = model.config;
    const QuantizeResult& r = run.result;
    QCOMPARE(r.layers.size(), std::size_t(7 * c.layerCount));
    QCOMPARE(run.sink.size(), r.layers.size());
    std::int64_t parameters = 0, outliers = 0;
    std::size_t bytes = 0;
    double paperBits = 0.0;
    for (std::size_t k = 0; k < r.layers.size(); ++k) {
        const LayerReport& l = r.layers[k];
        const int block = int(k / 7);
        const TensorView& tensor = *model.blocks[std::size_t(block)].linearLayers()[k % 7];
        QCOMPARE(l.block, block);
        QCOMPARE(l.name, std::string(kLinearLayers[k % 7].name));
        QCOMPARE(std::int64_t(l.rows), tensor.shape[0]);
        QCOMPARE(std::int64_t(l.cols), tensor.shape[1]);
        QCOMPARE(l.bitsPerParameter, double(l.storedBytes) * 8.0 / (double(l.rows) * l.cols));
        if (calibrated)
            QVERIFY2(l.relativeOutputError > 0.0 && l.relativeOutputError < 0.2,
                     qPrintable(QString("block %1 %2: %3")
                                    .arg(block)
                                    .arg(l.name.c_str())
                                    .arg(l.relativeOutputError)));
        else
            QVERIFY(std::isnan(l.relativeOutputError));

        const SinkEntry& s = run.sink[k];
        QCOMPARE(s.block, l.block);
        QCOMPARE(s.name, l.name);
        QCOMPARE(s.rows, l.rows);
        QCOMPARE(s.cols, l.cols);
        QCOMPARE(s.storedBytes, l.storedBytes);
        QCOMPARE(s.outliers, l.outliers);
        QVERIFY(s.reconstructionIsDequantize);

        parameters += std::int64_t(l.rows) * l.cols;
        bytes += l.storedBytes;
        outliers += l.outliers;
        paperBits += l.paperBitsPerParameter * double(l.rows) * l.cols;
    }
    // stories260K: 5 blocks of q, o [64, 64], k, v [32, 64], gate, up [172, 64], down [64, 172].
    QCOMPARE(parameters, std::int64_t(5 * (2 * 64 * 64 + 2 * 32 * 64 + 3 * 172 * 64)));
    QCOMPARE(r.parameters, parameters);
    QCOMPARE(r.storedBytes, bytes);
    QCOMPARE(r.bitsPerParameter, double(bytes) * 8.0 / double(parameters));
    QVERIFY(std::abs(r.paperBitsPerParameter - paperBits / double(parameters)) <= 1e-12);
    QCOMPARE(r.outlierFraction, double(outliers) / double(parameters));

    // Progress for the whole run: a start at 0, SqueezeLLM's Fisher reports, one report per layer
    // in order, each step as long as the layer before it has parameters, then 1.0.
    QCOMPARE(run.progress.front(), std::make_pair(0.0, std::string("starting")));
    std::vector<std::pair<double, std::string>> progress;
    double lastFisher = 0.0;
    for (std::size_t i = 1; i < run.progress.size(); ++i) {
        if (run.progress[i].second.starts_with("Fisher information"))
            lastFisher = run.progress[i].first;
        else
            progress.push_back(run.progress[i]);
    }
    QCOMPARE(progress.size(), r.layers.size() + 1);
    QVERIFY(lastFisher <= progress.front().first);
    const double perParameter =
        (progress.back().first - progress.front().first) / double(r.parameters);
    std::int64_t before = 0;
    for (std::size_t k = 0; k < r.layers.size(); ++k) {
        QCOMPARE(progress[k].second,
                 "block " + std::to_string(k / 7) + " " + kLinearLayers[k % 7].name);
        QVERIFY(std::abs(progress[k].first - progress.front().first -
                         perParameter * double(before)) <= 1e-12);
        before += std::int64_t(r.layers[k].rows) * r.layers[k].cols;
    }
    QCOMPARE(progress.back().first, 1.0);
}

} // namespace

class TestModelQuantizer : public QObject {
    Q_OBJECT
private slots:
    void initTestCase() {
        QUANTLENS_REQUIRE_DATA("stories260K-hf");
        QUANTLENS_REQUIRE_DATA("stories260K/stories260K.bin");
        QUANTLENS_REQUIRE_DATA("text/wikitext2-test.txt");
        QUANTLENS_REQUIRE_DATA("text/tinystories-valid-excerpt.txt");
    }

    // GPTQ: every layer once, in order; totals add up; the sink sees what is reported; block 0's
    // output errors match ones computed here from the calibration inputs.
    void gptqReportsEveryLayer() {
        const auto model = loadModel(test::dataPath("stories260K-hf"));
        const auto stream = test::wikitextStream(*model);
        QVERIFY(stream.size() >= std::size_t(kSequences * kSequenceLength));
        GptqConfig gptq;
        gptq.wbits = 3;
        gptq.groupsize = 32;
        const Run run = quantizeWithSink(*model, stream, gptq);
        checkReports(*model, run, true);
        QCOMPARE(run.result.outlierFraction, 0.0);
        // GPTQ w3 g32 stores 3 + 32/32 bits when g divides the row and codes fill whole words.
        QCOMPARE(run.result.layers[0].bitsPerParameter, 4.0);

        // Block 0's inputs X, from the first eight 128-token windows of the stream: q/k/v see the
        // original block; o_proj sees the output of the quantized q/k/v.
        const BlockWeights& b = model->blocks[0];
        const FloatTensor attnNorm(b.attnNorm), wq(b.wq), wk(b.wk), wv(b.wv), wo(b.wo),
            ffnNorm(b.ffnNorm), gate(b.gate), up(b.up), down(b.down);
        const auto& quantized = run.reconstructions[0];
        const BlockView original{attnNorm.data(), wq.data(),   wk.data(), wv.data(),  wo.data(),
                                 ffnNorm.data(),  gate.data(), up.data(), down.data()};
        const BlockView withQuantizedQkv{
            attnNorm.data(),     quantized[0].data(), quantized[1].data(),
            quantized[2].data(), wo.data(),           ffnNorm.data(),
            gate.data(),         up.data(),           down.data()};
        const Transformer transformer(*model);
        RowMatrix attentionInputs(kSequences * kSequenceLength, model->config.hiddenSize);
        RowMatrix outputInputs(kSequences * kSequenceLength, model->config.hiddenSize);
        for (int s = 0; s < kSequences; ++s) {
            const std::span<const std::int32_t> ids(stream.data() + s * kSequenceLength,
                                                    kSequenceLength);
            for (const bool quantizedQkv : {false, true}) {
                RowMatrix hidden = transformer.embed(ids);
                KvCache cache(model->config, kSequenceLength);
                transformer.runBlock(
                    0, quantizedQkv ? withQuantizedQkv : original, hidden, cache, 0,
                    [&](LinearStage stage, const RowMatrix& x) {
                        if (!quantizedQkv && stage == LinearStage::Attention)
                            attentionInputs.middleRows(s * kSequenceLength, kSequenceLength) = x;
                        if (quantizedQkv && stage == LinearStage::AttentionOutput)
                            outputInputs.middleRows(s * kSequenceLength, kSequenceLength) = x;
                    },
                    LinearStage::AttentionOutput);
            }
        }
        const std::pair<const FloatTensor*, const RowMatrix*> layers[] = {{&wq, &attentionInputs},
                                                                          {&wk, &attentionInputs},
                                                                          {&wv, &attentionInputs},
                                                                          {&wo, &outputInputs}};
        for (int i = 0; i < 4; ++i) {
            const RowMatrix w = layers[i].first->matrix();
            const double expected = outputError(w, quantized[std::size_t(i)], *layers[i].second);
            const double reported = run.result.layers[std::size_t(i)].relativeOutputError;
            QVERIFY2(std::abs(reported - expected) <= 1e-3 * expected,
                     qPrintable(QString("%1: reported %2, computed %3")
                                    .arg(kLinearLayers[i].name)
                                    .arg(reported, 0, 'g', 9)
                                    .arg(expected, 0, 'g', 9)));
        }
    }

    // RTN needs no calibration: an empty stream works, errors are NaN, and each layer is exactly
    // quantizeLayer's RTN of the original weights.
    void rtnWithoutCalibration() {
        const auto model = loadModel(test::dataPath("stories260K-hf"));
        const RtnConfig rtn{4, 32};
        const Run run = quantizeWithSink(*model, {}, rtn);
        checkReports(*model, run, false);
        for (std::size_t b = 0; b < model->blocks.size(); ++b)
            for (std::size_t i = 0; i < 7; ++i) {
                const RowMatrix w = FloatTensor(*model->blocks[b].linearLayers()[i]).matrix();
                const RowMatrix expected = quantizeLayer(w, {}, rtn, JobContext{}).dequantize();
                QVERIFY(expected == run.reconstructions[b][i]);
            }
    }

    void calibrationErrors() {
        const auto model = loadModel(test::dataPath("stories260K-hf"));
        const std::string source = model->path.string();
        QCOMPARE(errorOf([&] { quantizeModel(*model, {}, GptqConfig{}, kCalibration, {}, {}); }),
                 QString::fromStdString(source + ": gptq needs calibration text"));
        QCOMPARE(errorOf([&] { quantizeModel(*model, {}, SpqrConfig{}, kCalibration, {}, {}); }),
                 QString::fromStdString(source + ": spqr needs calibration text"));
        const std::vector<std::int32_t> shortStream(100, 5);
        QCOMPARE(errorOf([&] {
                     quantizeModel(*model, shortStream, GptqConfig{}, kCalibration, {}, {});
                 }),
                 QString::fromStdString(
                     source + ": calibration text has 100 tokens, fewer than one sequence of 128"));
        GptqConfig bad;
        bad.groupsize = -1;
        QCOMPARE(errorOf([&] { quantizeModel(*model, shortStream, bad, kCalibration, {}, {}); }),
                 QString("groupsize = -1 is outside [0, 1.04858e+06]"));

        const ModelConfig& c = model->config;
        std::vector<std::int32_t> stream(300);
        for (std::size_t i = 0; i < stream.size(); ++i)
            stream[i] = std::int32_t(i % 500);
        QCOMPARE(errorOf([&] {
                     calibrationSequences(stream, {8, 301}, c, "calib.txt");
                 }),
                 QString("calib.txt: calibration text has 300 tokens, fewer than one sequence "
                         "of 301"));
        // Length 0 means min(2048, the model's 512 positions).
        QCOMPARE(errorOf([&] {
                     calibrationSequences(stream, {8, 0}, c, "calib.txt");
                 }),
                 QString("calib.txt: calibration text has 300 tokens, fewer than one sequence "
                         "of 512"));
        QCOMPARE(errorOf([&] {
                     calibrationSequences(stream, {8, 1000}, c, "calib.txt");
                 }),
                 QString("calib.txt: calibration sequences of 1000 tokens exceed the model's 512 "
                         "positions"));
        QCOMPARE(errorOf([&] {
                     calibrationSequences(stream, {0, 128}, c, "calib.txt");
                 }),
                 QString("calib.txt: the number of calibration sequences must be positive"));
        std::vector<std::int32_t> outside = stream;
        outside[200] = 512;
        QCOMPARE(errorOf([&] {
                     calibrationSequences(outside, {8, 100}, c, "calib.txt");
                 }),
                 QString("calib.txt: calibration token id 512 is outside the vocabulary"));
        outside[200] = -1;
        QCOMPARE(errorOf([&] {
                     calibrationSequences(outside, {8, 100}, c, "calib.txt");
                 }),
                 QString("calib.txt: calibration token id -1 is outside the vocabulary"));

        // Consecutive, non-overlapping, at most `sequences`, the tail dropped.
        const auto three = calibrationSequences(stream, {8, 100}, c, "calib.txt");
        QCOMPARE(three.size(), std::size_t(3));
        for (std::size_t s = 0; s < 3; ++s)
            QVERIFY(std::equal(three[s].begin(), three[s].end(), stream.begin() + 100 * s) &&
                    three[s].size() == 100);
        QCOMPARE(calibrationSequences(stream, {2, 128}, c, "").size(), std::size_t(2));
        QCOMPARE(calibrationSequences(stream, {8, 128}, c, "").size(), std::size_t(2));
    }

    // The dense checkpoint of an HF source: loads, its linear layers are the sink's reconstruction
    // bit for bit, everything else is the source's.
    void denseCheckpointFromHf() {
        const auto model = loadModel(test::dataPath("stories260K-hf"));
        const auto stream = test::wikitextStream(*model);
        QTemporaryDir dir;
        const fs::path out = fs::path(dir.path().toStdString()) / "gptq";
        GptqConfig gptq;
        gptq.wbits = 4;
        gptq.groupsize = 16;
        gptq.actOrder = false;
        Run run;
        {
            DenseCheckpointWriter writer(*model, out, DType::F32,
                                         {{"quantlens.method", describe(gptq)}});
            run = quantizeWithSink(*model, stream, gptq, &writer);
            writer.commit();
        }
        const auto written = loadModel(out);
        QCOMPARE(written->format, ModelFormat::HuggingFace);
        const ModelConfig &a = written->config, &b = model->config;
        QVERIFY(a.hiddenSize == b.hiddenSize && a.intermediateSize == b.intermediateSize &&
                a.layerCount == b.layerCount && a.headCount == b.headCount &&
                a.kvHeadCount == b.kvHeadCount && a.vocabSize == b.vocabSize &&
                a.maxPositions == b.maxPositions && a.tiedEmbeddings == b.tiedEmbeddings &&
                a.ropeLayout == b.ropeLayout && a.bosToken == b.bosToken);
        QCOMPARE(written->storedTensors.size(), model->storedTensors.size());
        for (std::size_t blk = 0; blk < model->blocks.size(); ++blk) {
            const auto layers = written->blocks[blk].linearLayers();
            for (std::size_t i = 0; i < 7; ++i) {
                QCOMPARE(layers[i]->dtype, DType::F32);
                QVERIFY2(
                    bitwiseEqual(FloatTensor(*layers[i]).matrix(), run.reconstructions[blk][i]),
                    qPrintable(QString("block %1 %2").arg(blk).arg(kLinearLayers[i].name)));
            }
            QVERIFY(sameTensor(written->blocks[blk].attnNorm, model->blocks[blk].attnNorm));
            QVERIFY(sameTensor(written->blocks[blk].ffnNorm, model->blocks[blk].ffnNorm));
        }
        QVERIFY(sameTensor(written->embedding, model->embedding));
        QVERIFY(sameTensor(written->finalNorm, model->finalNorm));
        QVERIFY(sameTensor(written->lmHead, model->lmHead));
        QCOMPARE(SafetensorsFile(out / "model.safetensors").metadata().at("quantlens.method"),
                 describe(gptq));
        QCOMPARE(readTextFile(out / "tokenizer.model"), readTextFile(model->defaultTokenizer));
    }

    // From llama2.c: the written HF directory (Q/K rows moved to rotate-half RoPE) computes what
    // the in-memory quantized .bin model computes.
    void denseCheckpointFromLlama2c() {
        const auto model = loadModel(test::dataPath("stories260K/stories260K.bin"));
        QCOMPARE(model->format, ModelFormat::Llama2c);
        const auto stream = test::wikitextStream(*model);
        QTemporaryDir dir;
        const fs::path out = fs::path(dir.path().toStdString()) / "from-bin";
        GptqConfig gptq;
        gptq.wbits = 3;
        gptq.groupsize = 32;
        Run run;
        {
            DenseCheckpointWriter writer(*model, out, DType::F32, {});
            run = quantizeWithSink(*model, stream, gptq, &writer);
            writer.commit();
        }
        const auto written = loadModel(out);
        QCOMPARE(written->format, ModelFormat::HuggingFace);
        const auto inMemory = withLinearLayers(*model, run.reconstructions);

        const auto tokenizer = loadTokenizer(model->defaultTokenizer);
        auto tokens = tokenizeForProtocol(
            *tokenizer, readTextFile(test::dataPath("text/tinystories-valid-excerpt.txt")),
            PerplexityProtocol::Documents, model->config.bosToken, "excerpt");
        const Transformer quantized(*inMemory), reloaded(*written);
        {
            const std::span<const std::int32_t> ids(tokens.data(), 200);
            KvCache cacheA(model->config, 200), cacheB(written->config, 200);
            const RowMatrix expected = quantized.forward(ids, cacheA);
            const RowMatrix actual = reloaded.forward(ids, cacheB);
            const float difference = (expected - actual).cwiseAbs().maxCoeff();
            QVERIFY2(difference <= 1e-4f, qPrintable(QString("max |Δlogit| %1").arg(difference)));
            // The quantization did change the model.
            KvCache cacheC(model->config, 200);
            QVERIFY((Transformer(*model).forward(ids, cacheC) - expected).cwiseAbs().maxCoeff() >
                    1e-2f);
        }
        tokens.resize(1200);
        const PerplexityConfig config{128, PerplexityProtocol::Documents};
        const double expected = evaluatePerplexity(quantized, tokens, config, {}).perplexity;
        const double actual = evaluatePerplexity(reloaded, tokens, config, {}).perplexity;
        QVERIFY2(std::abs(actual - expected) <= 1e-6 * expected,
                 qPrintable(QString("written %1, in memory %2")
                                .arg(actual, 0, 'g', 12)
                                .arg(expected, 0, 'g', 12)));

        // The tokenizer travels with the checkpoint and is found when it is loaded.
        QVERIFY2(!written->defaultTokenizer.empty(),
                 "the written directory's tokenizer is not found by loadModel");
        QCOMPARE(loadTokenizer(written->defaultTokenizer)->encode("Once upon a time"),
                 tokenizer->encode("Once upon a time"));
    }

    // Cancelled from the progress callback: quantizeModel throws Cancelled, and the writer,
    // destroyed without commit, leaves no file behind.
    void cancelLeavesNothing_data() {
        QTest::addColumn<bool>("calibrated");
        QTest::newRow("gptq") << true;
        QTest::newRow("rtn without calibration") << false;
    }

    void cancelLeavesNothing() {
        QFETCH(bool, calibrated);
        const auto model = loadModel(test::dataPath("stories260K-hf"));
        const auto stream = calibrated ? test::wikitextStream(*model) : std::vector<std::int32_t>{};
        const QuantConfig method = calibrated ? QuantConfig(GptqConfig{}) : RtnConfig{};
        QTemporaryDir dir;
        const fs::path out = fs::path(dir.path().toStdString()) / "cancelled";
        JobContext* self = nullptr;
        std::vector<std::string> written;
        JobContext job([&](double, const std::string& stage) {
            if (stage == "block 1 q_proj") self->requestCancel();
        });
        self = &job;
        bool cancelled = false;
        try {
            DenseCheckpointWriter writer(*model, out, DType::F16, {});
            quantizeModel(
                *model, stream, method, kCalibration,
                [&](int block, const std::string& name, const QuantizedLayer&,
                    const RowMatrix& weights) {
                    writer.writeLayer(block, name, weights);
                    written.push_back(std::to_string(block) + " " + name);
                },
                job);
            writer.commit();
        } catch (const Cancelled&) {
            cancelled = true;
        }
        QVERIFY2(cancelled,
                 qPrintable(QString("not cancelled; %1 layers written").arg(written.size())));
        // Block 0 was finished and streamed; nothing of block 1.
        QCOMPARE(written.size(), std::size_t(7));
        QVERIFY(!fs::exists(out / "model.safetensors"));
        QVERIFY(!fs::exists(out / "config.json"));
        QVERIFY(fs::is_empty(out));
    }

    // SpQR with its defaults (act-order, outliers) through the whole model.
    void spqrReportsEveryLayer() {
        const auto model = loadModel(test::dataPath("stories260K-hf"));
        const auto stream = test::wikitextStream(*model);
        const Run run = quantizeWithSink(*model, stream, SpqrConfig{});
        checkReports(*model, run, true);
        QVERIFY(run.result.outlierFraction > 0.0);
        QVERIFY(run.result.outlierFraction < 0.05);
    }

    // SqueezeLLM quantizes every layer from the unquantized model's Fisher: each reconstruction
    // equals quantizing that layer alone with an independently accumulated Fisher.
    void squeezeLlmUsesTheModelsFisher() {
        const auto model = loadModel(test::dataPath("stories260K-hf"));
        const auto stream = test::wikitextStream(*model);
        const SqueezeConfig config{.wbits = 3, .sparsePercent = 0.40, .sensitivePercent = 0.05};
        const Run run = quantizeWithSink(*model, stream, config);
        checkReports(*model, run, true);
        QCOMPARE(std::count_if(run.progress.begin(), run.progress.end(),
                               [](const auto& p) { return p.second.starts_with("Fisher"); }),
                 std::ptrdiff_t(kSequences));

        const FisherInformation fisher = accumulateFisher(
            *model, calibrationSequences(stream, kCalibration, model->config, "wikitext"),
            JobContext{});
        QCOMPARE(fisher.sequences(), kSequences);
        for (int b = 0; b < model->config.layerCount; ++b)
            for (int i = 0; i < 7; ++i) {
                const RowMatrix weights =
                    FloatTensor(*model->blocks[std::size_t(b)].linearLayers()[std::size_t(i)])
                        .matrix();
                const RowMatrix layerFisher = fisher.layer(b, i);
                const RowMatrix expected =
                    quantizeLayer(weights, {.fisher = &layerFisher}, config, JobContext{})
                        .dequantize();
                QVERIFY2(bitwiseEqual(
                             ConstRowMatrixMap(expected.data(), expected.rows(), expected.cols()),
                             run.reconstructions[std::size_t(b)][std::size_t(i)]),
                         qPrintable(QString("block %1 %2").arg(b).arg(kLinearLayers[i].name)));
            }
        QVERIFY(std::abs(run.result.outlierFraction - 0.0045) < 1e-4);
    }
};

QTEST_GUILESS_MAIN(TestModelQuantizer)
#include "test_model_quantizer.moc"
