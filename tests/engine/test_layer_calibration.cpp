#include "test_data.h"

#include "quantlens/core/error.h"
#include "quantlens/formats/model_loading.h"
#include "quantlens/model/model.h"
#include "quantlens/quantization/fisher.h"
#include "quantlens/quantization/layer_calibration.h"
#include "quantlens/runtime/kv_cache.h"

#include <QtTest>

#include <Eigen/Eigenvalues>

#include <memory>
#include <vector>

namespace {

// A deterministic token stream: calibration only needs valid ids.
std::vector<std::int32_t> tokenStream(int count, int vocab) {
    std::vector<std::int32_t> ids(static_cast<std::size_t>(count));
    for (int i = 0; i < count; ++i)
        ids[std::size_t(i)] = 1 + (i * 7919 + i / 3) % (vocab - 1);
    return ids;
}

std::unique_ptr<quantlens::Model> loadStories() {
    return quantlens::loadModel(quantlens::test::dataPath("stories260K-hf"));
}

constexpr quantlens::CalibrationConfig kCalibration{3, 48};

} // namespace

class TestLayerCalibration : public QObject {
    Q_OBJECT

private slots:
    void firstStageIsNormalisedEmbedding();
    void matchesObserverAccumulation();
    void hessiansAreSymmetricPositiveSemidefinite();
    void analysesLayer();
    void analysesLayerFisher();
    void rejectsBadRequests();
    void stopsWhenCancelled();
};

// Block 0's q/k/v input is RMSNorm(embedding) · attnNorm, computed here without the engine.
void TestLayerCalibration::firstStageIsNormalisedEmbedding() {
    QUANTLENS_REQUIRE_DATA("stories260K-hf");
    const auto model = loadStories();
    const auto stream = tokenStream(200, model->config.vocabSize);
    const quantlens::BlockCalibration calibration =
        quantlens::calibrateBlock(*model, stream, kCalibration, 0, quantlens::JobContext());
    QCOMPARE(calibration.tokens, std::int64_t(3 * 48));

    const quantlens::FloatTensor embedding(model->embedding), norm(model->blocks[0].attnNorm);
    const int dim = model->config.hiddenSize;
    Eigen::MatrixXd xtx = Eigen::MatrixXd::Zero(dim, dim);
    for (std::size_t t = 0; t < 3 * 48; ++t) {
        const Eigen::VectorXd e = embedding.matrix().row(stream[t]).transpose().cast<double>();
        const double rms = std::sqrt(e.squaredNorm() / dim + model->config.rmsNormEps);
        const Eigen::VectorXd x = (e / rms).cwiseProduct(norm.vector().cast<double>());
        xtx += x * x.transpose();
    }
    const Eigen::MatrixXd expected = 2.0 * xtx / double(3 * 48);
    const Eigen::MatrixXd actual = calibration.hessianOf("k_proj").cast<double>();
    QVERIFY2((actual - expected).norm() <= 1e-5 * expected.norm(),
             qPrintable(QString::number((actual - expected).norm() / expected.norm())));
    // q, k and v share one input.
    QCOMPARE(&calibration.hessianOf("q_proj"), &calibration.hessianOf("v_proj"));
}

// Every stage of block 2 against XᵀX accumulated in double from the forward pass's own observer.
void TestLayerCalibration::matchesObserverAccumulation() {
    QUANTLENS_REQUIRE_DATA("stories260K-hf");
    const auto model = loadStories();
    const auto stream = tokenStream(200, model->config.vocabSize);
    constexpr int block = 2;
    const quantlens::BlockCalibration calibration =
        quantlens::calibrateBlock(*model, stream, kCalibration, block, quantlens::JobContext());
    QCOMPARE(calibration.block, block);

    const quantlens::Transformer transformer(*model);
    const quantlens::BlockWeights& b = model->blocks[block];
    std::vector<std::unique_ptr<quantlens::FloatTensor>> w;
    for (const auto* t :
         {&b.attnNorm, &b.wq, &b.wk, &b.wv, &b.wo, &b.ffnNorm, &b.gate, &b.up, &b.down})
        w.push_back(std::make_unique<quantlens::FloatTensor>(*t));
    const quantlens::BlockView view{w[0]->data(), w[1]->data(), w[2]->data(),
                                    w[3]->data(), w[4]->data(), w[5]->data(),
                                    w[6]->data(), w[7]->data(), w[8]->data()};
    std::array<Eigen::MatrixXd, 4> xtx;
    for (std::size_t s = 0; s < 3; ++s) {
        const std::span<const std::int32_t> sequence(stream.data() + s * 48, 48);
        quantlens::RowMatrix hidden = transformer.embed(sequence);
        quantlens::KvCache cache(model->config, 48);
        for (int before = 0; before < block; ++before)
            transformer.runBlock(before, hidden, cache, 0);
        transformer.runBlock(
            block, view, hidden, cache, 0,
            [&](quantlens::LinearStage stage, const quantlens::RowMatrix& x) {
                const Eigen::MatrixXd xd = x.cast<double>();
                Eigen::MatrixXd& sum = xtx[std::size_t(stage)];
                if (sum.size() == 0) sum = Eigen::MatrixXd::Zero(xd.cols(), xd.cols());
                sum += xd.transpose() * xd;
            },
            quantlens::LinearStage::MlpOutput);
    }
    const char* layers[] = {"q_proj", "o_proj", "up_proj", "down_proj"};
    for (std::size_t s = 0; s < 4; ++s) {
        const Eigen::MatrixXd expected = 2.0 * xtx[s] / double(3 * 48);
        const Eigen::MatrixXd actual = calibration.hessianOf(layers[s]).cast<double>();
        QCOMPARE(actual.rows(), expected.rows());
        QVERIFY2((actual - expected).norm() <= 1e-5 * expected.norm(), layers[s]);
    }
    QCOMPARE(calibration.hessianOf("down_proj").rows(), Eigen::Index(172));
}

void TestLayerCalibration::hessiansAreSymmetricPositiveSemidefinite() {
    QUANTLENS_REQUIRE_DATA("stories260K-hf");
    const auto model = loadStories();
    const quantlens::BlockCalibration calibration =
        quantlens::calibrateBlock(*model, tokenStream(200, model->config.vocabSize), kCalibration,
                                  4, quantlens::JobContext());
    for (const Eigen::MatrixXf& h : calibration.hessians) {
        const Eigen::MatrixXd hd = h.cast<double>();
        QVERIFY((hd - hd.transpose()).norm() <= 1e-6 * hd.norm());
        const Eigen::VectorXd eigenvalues =
            Eigen::SelfAdjointEigenSolver<Eigen::MatrixXd>(hd, Eigen::EigenvaluesOnly)
                .eigenvalues();
        QVERIFY(eigenvalues.minCoeff() >= -1e-5 * eigenvalues.maxCoeff());
        QVERIFY(eigenvalues.maxCoeff() > 0.0);
    }
}

void TestLayerCalibration::analysesLayer() {
    QUANTLENS_REQUIRE_DATA("stories260K-hf");
    const auto model = loadStories();
    const quantlens::BlockCalibration calibration =
        quantlens::calibrateBlock(*model, tokenStream(200, model->config.vocabSize), kCalibration,
                                  1, quantlens::JobContext());
    const quantlens::SpqrConfig spqr;
    const quantlens::LayerAnalysis k =
        quantlens::analyseLayer(*model, calibration, "k_proj", spqr, {});
    QCOMPARE(k.block, 1);
    QCOMPARE(k.layer, std::string("k_proj"));
    QCOMPARE(k.weights.rows(), Eigen::Index(32));
    QCOMPARE(k.weights.cols(), Eigen::Index(64));
    QCOMPARE(k.weights, quantlens::RowMatrix(quantlens::FloatTensor(model->blocks[1].wk).matrix()));
    QCOMPARE(k.preview.map().rows, 32);
    QVERIFY(k.preview.map().heads.axis == quantlens::HeadAxis::Rows);
    QCOMPARE(k.preview.map().headTotals.size(), Eigen::Index(4)); // 4 kv heads of 8 rows
    QCOMPARE(k.preview.baseBits(), quantlens::baseBitsPerParameter(spqr, 32, 64));

    const quantlens::LayerAnalysis down =
        quantlens::analyseLayer(*model, calibration, "down_proj", spqr, {});
    QCOMPARE(down.preview.map().cols, 172);
    QVERIFY(down.preview.map().heads.axis == quantlens::HeadAxis::None);
}

// The Fisher form of block 2's o_proj is computeFisherSensitivity on accumulateFisher's layer,
// over the sequences quantizeModel would cut.
void TestLayerCalibration::analysesLayerFisher() {
    QUANTLENS_REQUIRE_DATA("stories260K-hf");
    const auto model = loadStories();
    const auto sequences = quantlens::calibrationSequences(
        tokenStream(200, model->config.vocabSize), kCalibration, model->config, "stream");
    const quantlens::FisherInformation fisher =
        quantlens::accumulateFisher(*model, sequences, quantlens::JobContext());
    const quantlens::SqueezeConfig config{.wbits = 3, .sensitivePercent = 0.5};
    const quantlens::LayerAnalysis o =
        quantlens::analyseLayerFisher(*model, fisher, 2, "o_proj", config, quantlens::JobContext());
    QCOMPARE(o.block, 2);
    QCOMPARE(o.layer, std::string("o_proj"));
    QVERIFY(std::holds_alternative<quantlens::SqueezeConfig>(o.config));
    const quantlens::RowMatrix weights = quantlens::FloatTensor(model->blocks[2].wo).matrix();
    QCOMPARE(o.weights, weights);
    const quantlens::SensitivityMap expected =
        quantlens::computeFisherSensitivity(weights, quantlens::RowMatrix(fisher.layer(2, 3)), 3,
                                            {quantlens::HeadAxis::Columns, model->config.headDim});
    QCOMPARE(o.preview.map().values, expected.values);
    QCOMPARE(o.preview.map().outlierScale, expected.outlierScale);
    QCOMPARE(o.preview.map().headTotals, expected.headTotals);
    QCOMPARE(o.preview.map().headTotals.size(), Eigen::Index(8));
    QVERIFY(o.preview.map().total() > 0.0);
    // 3 bits + a 2³-entry fp16 table per row of 64 inputs; the sparse share comes on top.
    QCOMPARE(o.preview.baseBits(), 3.0 + 16.0 * 8.0 / 64.0);

    try {
        quantlens::analyseLayerFisher(*model, fisher, 5, "q_proj", config, quantlens::JobContext());
        QFAIL("block 5 analysed");
    } catch (const quantlens::Error& error) {
        QCOMPARE(QString(error.what()),
                 QString::fromStdString(model->path.string() +
                                        ": block 5 does not exist (the model has 5)"));
    }
    quantlens::JobContext cancelled;
    cancelled.requestCancel();
    QVERIFY_THROWS_EXCEPTION(
        quantlens::Cancelled,
        quantlens::analyseLayerFisher(*model, fisher, 0, "down_proj", config, cancelled));
}

void TestLayerCalibration::rejectsBadRequests() {
    QUANTLENS_REQUIRE_DATA("stories260K-hf");
    const auto model = loadStories();
    const auto stream = tokenStream(200, model->config.vocabSize);
    const std::string path = model->path.string();
    try {
        quantlens::calibrateBlock(*model, stream, kCalibration, 5, quantlens::JobContext());
        QFAIL("block 5 calibrated");
    } catch (const quantlens::Error& error) {
        QCOMPARE(QString(error.what()),
                 QString::fromStdString(path + ": block 5 does not exist (the model has 5)"));
    }
    try {
        quantlens::calibrateBlock(*model, tokenStream(20, 512), kCalibration, 0,
                                  quantlens::JobContext());
        QFAIL("20 tokens calibrated");
    } catch (const quantlens::Error& error) {
        QCOMPARE(QString(error.what()),
                 QString::fromStdString(
                     path + ": calibration text has 20 tokens, fewer than one sequence of 48"));
    }
    const quantlens::BlockCalibration calibration =
        quantlens::calibrateBlock(*model, stream, kCalibration, 0, quantlens::JobContext());
    try {
        calibration.hessianOf("lm_head");
        QFAIL("lm_head has a block Hessian");
    } catch (const quantlens::Error& error) {
        QCOMPARE(QString(error.what()), QString("unknown linear layer \"lm_head\""));
    }
}

void TestLayerCalibration::stopsWhenCancelled() {
    QUANTLENS_REQUIRE_DATA("stories260K-hf");
    const auto model = loadStories();
    int reports = 0;
    quantlens::JobContext job([&](double, const std::string&) { ++reports; });
    job.requestCancel();
    QVERIFY_THROWS_EXCEPTION(quantlens::Cancelled,
                             quantlens::calibrateBlock(*model,
                                                       tokenStream(200, model->config.vocabSize),
                                                       kCalibration, 3, job));
    QCOMPARE(reports, 0);
}

QTEST_GUILESS_MAIN(TestLayerCalibration)
#include "test_layer_calibration.moc"
