#include "error_text.h"
#include "test_data.h"

#include "quantlens/core/error.h"
#include "quantlens/formats/model_loading.h"
#include "quantlens/io/text_file.h"
#include "quantlens/quantization/layer_quantizer.h"
#include "quantlens/quantization/sensitivity.h"
#include "quantlens/runtime/perplexity.h"
#include "quantlens/runtime/transformer.h"
#include "quantlens/tokenizer/tokenizer.h"

#include <Eigen/LU>

#include <chrono>
#include <cmath>
#include <functional>
#include <limits>
#include <random>

using namespace quantlens;

using quantlens::test::errorOf;

namespace {

// Block 0 of stories260K-hf with the Hessians of its attention input (q/k/v) and of o_proj's input,
// from the real model run on the TinyStories excerpt.
struct CalibratedBlock {
    ModelConfig config;
    RowMatrix wq, wk, wo;
    Eigen::MatrixXf attentionHessian, outputHessian;
};

CalibratedBlock calibrateBlock0() {
    const auto model = loadModel(test::dataPath("stories260K-hf"));
    const auto tokenizer = loadTokenizer(model->defaultTokenizer);
    auto tokens = tokenizeForProtocol(
        *tokenizer, readTextFile(test::dataPath("text/tinystories-valid-excerpt.txt")),
        PerplexityProtocol::Documents, model->config.bosToken, "excerpt");
    tokens.resize(static_cast<std::size_t>(model->config.maxPositions));

    const BlockWeights& stored = model->blocks[0];
    const FloatTensor attnNorm(stored.attnNorm), wq(stored.wq), wk(stored.wk), wv(stored.wv),
        wo(stored.wo), ffnNorm(stored.ffnNorm), gate(stored.gate), up(stored.up), down(stored.down);
    const BlockView view{attnNorm.data(), wq.data(),   wk.data(), wv.data(),  wo.data(),
                         ffnNorm.data(),  gate.data(), up.data(), down.data()};

    CalibratedBlock block;
    block.config = model->config;
    block.wq = wq.matrix();
    block.wk = wk.matrix();
    block.wo = wo.matrix();
    const Transformer transformer(*model);
    RowMatrix hidden = transformer.embed(tokens);
    KvCache cache(model->config, static_cast<int>(tokens.size()));
    transformer.runBlock(
        0, view, hidden, cache, 0,
        [&](LinearStage stage, const RowMatrix& x) {
            const Eigen::MatrixXf h = 2.0f * x.transpose() * x / static_cast<float>(x.rows());
            if (stage == LinearStage::Attention) block.attentionHessian = h;
            if (stage == LinearStage::AttentionOutput) block.outputHessian = h;
        },
        LinearStage::AttentionOutput);
    return block;
}

// s_ij written out independently: min-max round-to-nearest with an integer zero in double, and the
// inverse of the dampened Hessian by LU in double.
Eigen::MatrixXd referenceSensitivity(const RowMatrix& w, const Eigen::MatrixXf& hessian, int wbits,
                                     int groupsize, double percdamp) {
    Eigen::MatrixXd h = hessian.cast<double>();
    h.diagonal().array() += percdamp * h.diagonal().mean();
    const Eigen::VectorXd inverseDiagonal = h.inverse().diagonal();
    const double maxCode = std::pow(2.0, wbits) - 1.0;
    const Eigen::Index cols = w.cols(), group = groupsize == 0 ? cols : groupsize;
    Eigen::MatrixXd s(w.rows(), cols);
    for (Eigen::Index r = 0; r < w.rows(); ++r)
        for (Eigen::Index first = 0; first < cols; first += group) {
            const Eigen::Index count = std::min(group, cols - first);
            const Eigen::VectorXd values = w.row(r).segment(first, count).cast<double>();
            const double low = values.minCoeff(), high = values.maxCoeff();
            // SpQR's first level: min-max with a real zero (§3.2).
            const double scale = (high - low) / maxCode;
            const double zero = -low / scale;
            for (Eigen::Index k = 0; k < count; ++k) {
                const double code = std::clamp(std::round(values[k] / scale + zero), 0.0, maxCode);
                const double error = values[k] - scale * (code - zero);
                s(r, first + k) = error * error / inverseDiagonal[first + k];
            }
        }
    return s;
}

double referenceOutlierScale(const RowMatrix& w, const Eigen::MatrixXf& hessian, double percdamp) {
    Eigen::MatrixXd h = hessian.cast<double>();
    h.diagonal().array() += percdamp * h.diagonal().mean();
    const Eigen::VectorXd inverseDiagonal = h.inverse().diagonal();
    const Eigen::MatrixXd wd = w.cast<double>();
    double total = 0.0;
    for (Eigen::Index j = 0; j < w.cols(); ++j) {
        const double mean = wd.col(j).mean();
        const double variance = (wd.col(j).array() - mean).square().sum() / double(w.rows() - 1);
        total += variance / inverseDiagonal[j];
    }
    return total / static_cast<double>(w.cols());
}

// The brute-force count: every ν_ij = s_ij / scale (in float, as documented) compared with τ.
std::int64_t bruteForceCount(const SensitivityMap& map, double tau) {
    const float scale = static_cast<float>(map.outlierScale);
    std::int64_t count = 0;
    for (Eigen::Index k = 0; k < map.values.size(); ++k)
        count += map.values.data()[k] / scale > tau;
    return count;
}

void verifyTotals(const SensitivityMap& map) {
    const Eigen::MatrixXd s = map.values.cast<double>();
    const double total = s.sum();
    QVERIFY(total > 0.0);
    QVERIFY(std::abs(map.rowTotals.sum() - total) <= 1e-9 * total);
    QVERIFY(std::abs(map.columnTotals.sum() - total) <= 1e-9 * total);
    QVERIFY(std::abs(map.total() - total) <= 1e-9 * total);
    for (Eigen::Index r = 0; r < s.rows(); ++r)
        QVERIFY(std::abs(map.rowTotals[r] - s.row(r).sum()) <= 1e-9 * total);
    for (Eigen::Index c = 0; c < s.cols(); ++c)
        QVERIFY(std::abs(map.columnTotals[c] - s.col(c).sum()) <= 1e-9 * total);
    if (map.heads.axis != HeadAxis::None)
        QVERIFY(std::abs(map.headTotals.sum() - total) <= 1e-9 * total);
}

} // namespace

class TestSensitivity : public QObject {
    Q_OBJECT
private slots:
    void initTestCase() {
        QUANTLENS_REQUIRE_DATA("stories260K-hf");
        QUANTLENS_REQUIRE_DATA("text/tinystories-valid-excerpt.txt");
        block_ = calibrateBlock0();
        QCOMPARE(block_.wq.rows(), Eigen::Index(64));
        QCOMPARE(block_.wk.rows(), Eigen::Index(32));
        QCOMPARE(block_.attentionHessian.rows(), Eigen::Index(64));
        QCOMPARE(block_.outputHessian.rows(), Eigen::Index(64));
    }

    // s_ij against the independent double-precision computation, for per-group and per-row
    // statistics, a partial last group (64 columns in groups of 24) and light and heavy dampening.
    void obsSensitivityMatchesReference() {
        struct Case {
            int wbits, groupsize;
            double percdamp;
        };
        for (const Case c : {Case{3, 16, 1.0}, Case{4, 0, 0.01}, Case{2, 24, 0.1}}) {
            const SensitivityMap map = computeSensitivity(block_.wq, block_.attentionHessian,
                                                          c.wbits, c.groupsize, c.percdamp);
            const Eigen::MatrixXd reference = referenceSensitivity(
                block_.wq, block_.attentionHessian, c.wbits, c.groupsize, c.percdamp);
            QCOMPARE(map.rows, 64);
            QCOMPARE(map.cols, 64);
            const double largest = reference.maxCoeff();
            QVERIFY(largest > 0.0);
            for (Eigen::Index r = 0; r < 64; ++r)
                for (Eigen::Index j = 0; j < 64; ++j) {
                    const double difference = std::abs(map.values(r, j) - reference(r, j));
                    QVERIFY2(difference <= 1e-3 * reference(r, j) + 1e-7 * largest,
                             qPrintable(QString("w%1 g%2: s(%3, %4) = %5, reference %6")
                                            .arg(c.wbits)
                                            .arg(c.groupsize)
                                            .arg(r)
                                            .arg(j)
                                            .arg(map.values(r, j))
                                            .arg(reference(r, j))));
                }
            const double scale =
                referenceOutlierScale(block_.wq, block_.attentionHessian, c.percdamp);
            QVERIFY2(std::abs(map.outlierScale - scale) <= 1e-4 * scale,
                     qPrintable(QString("%1 vs %2").arg(map.outlierScale).arg(scale)));
            verifyTotals(map);
            QCOMPARE(map.headTotals.size(), Eigen::Index(0));
        }
    }

    // q_proj and k_proj split by rows into heads of 8 (8 query heads, 4 key heads); o_proj by
    // columns; the MLP not at all.
    void headTotalsSumTheirSlices() {
        const auto check = [](const SensitivityMap& map, int heads, HeadAxis axis) {
            QCOMPARE(map.headTotals.size(), Eigen::Index(heads));
            const Eigen::MatrixXd s = map.values.cast<double>();
            for (int h = 0; h < heads; ++h) {
                const double slice = axis == HeadAxis::Rows ? s.middleRows(h * 8, 8).sum()
                                                            : s.middleCols(h * 8, 8).sum();
                QVERIFY2(
                    std::abs(map.headTotals[h] - slice) <= 1e-9 * s.sum(),
                    qPrintable(
                        QString("head %1: %2 vs %3").arg(h).arg(map.headTotals[h]).arg(slice)));
            }
            verifyTotals(map);
        };
        const ModelConfig& config = block_.config;
        const HeadSplit q = headSplitOf(config, "q_proj");
        QCOMPARE(q.axis, HeadAxis::Rows);
        QCOMPARE(q.headDim, 8);
        check(computeSensitivity(block_.wq, block_.attentionHessian, 3, 16, 1.0, q), 8,
              HeadAxis::Rows);
        check(computeSensitivity(block_.wk, block_.attentionHessian, 3, 16, 1.0,
                                 headSplitOf(config, "k_proj")),
              4, HeadAxis::Rows);
        const HeadSplit o = headSplitOf(config, "o_proj");
        QCOMPARE(o.axis, HeadAxis::Columns);
        check(computeSensitivity(block_.wo, block_.outputHessian, 3, 16, 1.0, o), 8,
              HeadAxis::Columns);
        QCOMPARE(headSplitOf(config, "down_proj").axis, HeadAxis::None);
        QCOMPARE(errorOf([&] { headSplitOf(config, "lm_head"); }),
                 QString("unknown linear layer \"lm_head\""));
    }

    // An input never active (zero Hessian row and column) carries no sensitivity, and its weights
    // (zeroed, as the quantizers zero them) do not enter the other columns' group statistics.
    void deadColumnsHaveZeroSensitivity() {
        Eigen::MatrixXf hessian = block_.attentionHessian;
        hessian.row(5).setZero();
        hessian.col(5).setZero();
        RowMatrix w = block_.wq;
        const SensitivityMap map = computeSensitivity(w, hessian, 3, 16, 1.0);
        QCOMPARE(map.values.col(5).cwiseAbs().maxCoeff(), 0.0f);
        QCOMPARE(map.columnTotals[5], 0.0);
        w.col(5).setZero();
        Eigen::MatrixXf alive = hessian;
        alive(5, 5) = 1.0f; // what GPTQ puts on a dead diagonal before dampening
        const SensitivityMap zeroed = computeSensitivity(w, alive, 3, 16, 1.0);
        Eigen::MatrixXf expected = zeroed.values;
        expected.col(5).setZero();
        QVERIFY((map.values - expected).cwiseAbs().maxCoeff() <= 1e-6f * expected.maxCoeff());
    }

    void badInputsAreRejected() {
        const RowMatrix& w = block_.wq;
        QCOMPARE(errorOf([&] {
                     computeSensitivity(w, Eigen::MatrixXf::Identity(32, 32), 3, 16, 1.0, {}, "q");
                 }),
                 QString("q: calibration Hessian is 32×32 but the layer has 64 inputs"));
        QCOMPARE(errorOf([&] {
                     computeSensitivity(w, block_.attentionHessian, 3, 16, 1.0, {HeadAxis::Rows, 7},
                                        "q");
                 }),
                 QString("q: a head size of 7 does not divide the layer's 64 rows"));
        QCOMPARE(errorOf([&] { computeSensitivity(w, block_.attentionHessian, 9, 16, 1.0); }),
                 QString("wbits = 9 is outside [1, 8]"));
        RowMatrix broken = w;
        broken(3, 3) = std::numeric_limits<float>::quiet_NaN();
        QCOMPARE(errorOf([&] { computeSensitivity(broken, block_.attentionHessian, 3, 16, 1.0); }),
                 QString("weights contain NaN or Inf; cannot analyse"));
    }

    // The preview's count equals a brute-force count at every τ (including each ν itself, where the
    // strict inequality matters), never rises with τ, and bits follow the documented formula.
    void previewCountsLikeBruteForce() {
        const SpqrConfig spqr; // w3, β1 = β2 = 16, qq3: 3 + 6/16 + 64/256 on a 64×64 layer
        const double base = baseBitsPerParameter(spqr, 64, 64);
        QCOMPARE(base, 3.625);
        const OutlierPreview preview(computeSensitivity(block_.wq, block_.attentionHessian,
                                                        spqr.wbits, spqr.groupsize, spqr.percdamp,
                                                        headSplitOf(block_.config, "q_proj")),
                                     base);
        const SensitivityMap& map = preview.map();

        std::vector<double> taus{-1.0, 0.0, 1e-9, std::numeric_limits<double>::infinity()};
        for (double tau = 1e-4; tau < 1e4; tau *= 1.3)
            taus.push_back(tau);
        const float scale = static_cast<float>(map.outlierScale);
        for (Eigen::Index k = 0; k < map.values.size(); k += 37)
            taus.push_back(map.values.data()[k] / scale);
        for (const double tau : taus) {
            const std::int64_t count = preview.outlierCount(tau);
            QVERIFY2(count == bruteForceCount(map, tau),
                     qPrintable(QString("tau %1: %2 vs %3")
                                    .arg(tau)
                                    .arg(count)
                                    .arg(bruteForceCount(map, tau))));
            std::int64_t masked = 0;
            for (int r = 0; r < map.rows; ++r)
                for (int c = 0; c < map.cols; ++c)
                    masked += preview.isOutlier(r, c, tau);
            QCOMPARE(masked, count);
            QCOMPARE(preview.bitsPerParameter(tau),
                     base + 32.0 * static_cast<double>(count) / 4096.0);
        }

        std::sort(taus.begin(), taus.end());
        for (std::size_t k = 1; k < taus.size(); ++k)
            QVERIFY(preview.outlierCount(taus[k]) <= preview.outlierCount(taus[k - 1]));
        QCOMPARE(preview.outlierCount(-1.0), std::int64_t(4096));
        QCOMPARE(preview.outlierCount(0.0), std::int64_t((map.values.array() > 0.0f).count()));
        QCOMPARE(preview.outlierCount(std::numeric_limits<double>::infinity()), std::int64_t(0));
        QVERIFY(preview.outlierCount(SpqrConfig{}.outlierThreshold) > 0);
        QCOMPARE(errorOf([&] { preview.outlierCount(std::nan("")); }),
                 QString("the outlier threshold is NaN"));
    }

    // Every column constant: no variance, so SpQR's threshold τ·scale is 0 and each weight the
    // base grid misses is an outlier at any finite τ.
    void zeroScaleMakesEveryErrorAnOutlier() {
        RowMatrix w(16, 64);
        for (Eigen::Index j = 0; j < 64; ++j)
            w.col(j).setConstant(0.01f * static_cast<float>((j * 37) % 23) - 0.1f);
        const OutlierPreview preview(computeSensitivity(w, block_.attentionHessian, 3, 16, 1.0),
                                     3.625);
        QCOMPARE(preview.map().outlierScale, 0.0);
        const auto nonzero = std::int64_t((preview.map().values.array() > 0.0f).count());
        QVERIFY(nonzero > 0);
        QCOMPARE(preview.outlierCount(0.0), nonzero);
        QCOMPARE(preview.outlierCount(1e30), nonzero);
        QCOMPARE(preview.outlierCount(std::numeric_limits<double>::infinity()), std::int64_t(0));
        QCOMPARE(preview.outlierCount(-1.0), std::int64_t(16 * 64));
    }

    // The base is the paper's formula the quantized layer reports: SpQR with τ = ∞ keeps no
    // outlier. Alongside, how close the estimate comes to what SpQR actually keeps (informational:
    // SpQR decides on error-fed weights and U_jj).
    void previewBaseMatchesQuantizedLayer() {
        SpqrConfig spqr;
        spqr.actOrder = false;
        spqr.outlierThreshold = std::numeric_limits<double>::infinity();
        const double base = baseBitsPerParameter(spqr, 64, 64);
        const QuantizedLayer none =
            quantizeLayer(block_.wq, {&block_.attentionHessian}, spqr, JobContext{});
        QCOMPARE(none.outlierCount, std::int64_t(0));
        QCOMPARE(none.paperBitsPerParameter(), base);
        QCOMPARE(baseBitsPerParameter(RtnConfig{.wbits = 3, .groupsize = 32}, 64, 64), 4.0);

        const OutlierPreview preview(computeSensitivity(block_.wq, block_.attentionHessian,
                                                        spqr.wbits, spqr.groupsize, spqr.percdamp),
                                     base);
        for (const double tau : {0.1, 0.2, 0.5, 1.0, 2.0}) {
            spqr.outlierThreshold = tau;
            const QuantizedLayer layer =
                quantizeLayer(block_.wq, {&block_.attentionHessian}, spqr, JobContext{});
            qDebug("tau %.1f: preview %lld outliers (%.3f bits), SpQR %lld (%.3f bits)", tau,
                   static_cast<long long>(preview.outlierCount(tau)), preview.bitsPerParameter(tau),
                   static_cast<long long>(layer.outlierCount), layer.bitsPerParameter());
        }
    }

    // thresholdForCount marks exactly the `count` largest ν (a brute-force ranking), and fewer
    // where values tie across the cut.
    void thresholdForCountMarksTheLargest() {
        SensitivityMap map;
        map.rows = 24;
        map.cols = 40;
        map.values.resize(24, 40);
        std::mt19937 random(3);
        std::uniform_real_distribution<float> uniform(0.0f, 1.0f);
        for (Eigen::Index k = 0; k < map.values.size(); ++k)
            map.values.data()[k] = uniform(random);
        map.outlierScale = 0.5;
        std::vector<float> ranked(map.values.data(), map.values.data() + map.values.size());
        std::sort(ranked.begin(), ranked.end(), std::greater<>());
        const OutlierPreview preview(map, 3.0);
        const std::int64_t n = 24 * 40;
        for (const std::int64_t count : {std::int64_t(-2), std::int64_t(0), std::int64_t(1),
                                         std::int64_t(17), n / 2, n - 1, n, n + 5}) {
            const double tau = preview.thresholdForCount(count);
            const std::int64_t expected = std::clamp<std::int64_t>(count, 0, n);
            QCOMPARE(preview.outlierCount(tau), expected);
            for (int r = 0; r < map.rows; ++r)
                for (int c = 0; c < map.cols; ++c)
                    QCOMPARE(preview.isOutlier(r, c, tau),
                             expected > 0 && map.values(r, c) >= ranked[std::size_t(expected - 1)]);
        }
        QCOMPARE(preview.thresholdForCount(0), std::numeric_limits<double>::infinity());

        map.values.setConstant(0.25f); // every value tied: no cut but all or none
        map.values(0, 0) = 0.75f;
        const OutlierPreview tied(map, 3.0);
        QCOMPARE(tied.outlierCount(tied.thresholdForCount(1)), std::int64_t(1));
        QCOMPARE(tied.outlierCount(tied.thresholdForCount(10)), std::int64_t(1));
        QCOMPARE(tied.outlierCount(tied.thresholdForCount(n)), n);
    }

    // The studio's SqueezeLLM preview against what the quantizer stores: the sparse count, and
    // the paper's bits plus the stored row pointers.
    void squeezePreviewMatchesQuantizer() {
        const int rows = 48, cols = 80;
        std::mt19937 random(5);
        std::student_t_distribution<float> heavy(4.0f);
        std::uniform_real_distribution<float> uniform(0.0f, 1.0f);
        RowMatrix w(rows, cols), fisher(rows, cols);
        for (Eigen::Index k = 0; k < w.size(); ++k) {
            w.data()[k] = 0.02f * heavy(random);
            fisher.data()[k] = uniform(random) * uniform(random);
        }
        for (const auto& [sparse, sensitive] : std::vector<std::pair<double, double>>{
                 {0.0, 0.0}, {0.5, 0.25}, {0.0, 0.05}, {1.0, 0.0}, {0.001, 0.0}, {60.0, 40.0}}) {
            const SqueezeConfig config{.wbits = 3,
                                       .sparsePercent = sparse,
                                       .sensitivePercent = sensitive,
                                       .kmeansIterations = 5};
            const QuantizedLayer layer =
                quantizeLayer(w, {.fisher = &fisher}, config, JobContext{});
            const SqueezeSparseCounts counts = squeezeSparseCounts(config, rows * cols);
            QCOMPARE(counts.total(), layer.outlierCount);
            QCOMPARE(counts.total() > 0, layer.tensors.contains("outlier_row_ptr"));
            QCOMPARE(squeezeBitsPerParameter(config, rows, cols), layer.paperBitsPerParameter());
        }
        // By hand: 3 + 16·8/80 = 4.6 bits, and 0.5% + 0.25% of 3840 weights = 19 + 10.
        const SqueezeConfig config{.wbits = 3, .sparsePercent = 0.5, .sensitivePercent = 0.25};
        QCOMPARE(squeezeSparseCounts(config, 3840).byMagnitude, std::int64_t(19));
        QCOMPARE(squeezeSparseCounts(config, 3840).byFisher, std::int64_t(10));
        QCOMPARE(squeezeBitsPerParameter(SqueezeConfig{.wbits = 3}, rows, cols), 4.6);
        QCOMPARE(squeezeBitsPerParameter(config, rows, cols), 4.6 + 32.0 * 29.0 / 3840.0);
    }

    // A larger synthetic layer (seeded): counts still exact; construction and query times printed,
    // not asserted (timings belong to benchmarks).
    void largeSyntheticLayer() {
        const int n = 1024, samples = 2048;
        std::mt19937 random(7);
        std::student_t_distribution<float> heavy(4.0f);
        std::normal_distribution<float> normal(0.0f, 1.0f);
        RowMatrix w(n, n);
        for (Eigen::Index k = 0; k < w.size(); ++k)
            w.data()[k] = 0.02f * heavy(random);
        RowMatrix x(samples, n);
        for (Eigen::Index k = 0; k < x.size(); ++k)
            x.data()[k] = normal(random);
        x.col(3) *= 20.0f; // an outlier input feature, as real activations have
        const Eigen::MatrixXf hessian = 2.0f * x.transpose() * x / static_cast<float>(samples);

        using Clock = std::chrono::steady_clock;
        const auto start = Clock::now();
        SensitivityMap map = computeSensitivity(w, hessian, 3, 16, 1.0, {HeadAxis::Rows, 128});
        const auto computed = Clock::now();
        const OutlierPreview preview(std::move(map), baseBitsPerParameter(SpqrConfig{}, n, n));
        const auto sorted = Clock::now();
        std::int64_t checksum = 0;
        const int queries = 10000;
        for (int q = 0; q < queries; ++q)
            checksum += preview.outlierCount(0.01 * q);
        const auto queried = Clock::now();
        const auto ms = [](auto d) { return std::chrono::duration<double, std::milli>(d).count(); };
        qDebug("1024x1024: sensitivity %.1f ms, sort %.1f ms, query %.3f us (checksum %lld)",
               ms(computed - start), ms(sorted - computed), 1000.0 * ms(queried - sorted) / queries,
               static_cast<long long>(checksum));

        QCOMPARE(preview.map().headTotals.size(), Eigen::Index(8));
        verifyTotals(preview.map());
        for (const double tau : {0.0, 0.05, 0.2, 1.0, 5.0, 50.0})
            QCOMPARE(preview.outlierCount(tau), bruteForceCount(preview.map(), tau));
        // The loud input column is where the sensitivity concentrates.
        Eigen::Index loudest = 0;
        preview.map().columnTotals.maxCoeff(&loudest);
        QCOMPARE(loudest, Eigen::Index(3));
    }

private:
    CalibratedBlock block_;
};

QTEST_APPLESS_MAIN(TestSensitivity)
#include "test_sensitivity.moc"
