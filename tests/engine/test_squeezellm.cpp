// SqueezeLLM's pieces against independent references: the weighted k-means (objective trace,
// plain k-means, replicated samples), the dense-and-sparse split, the stored layout and its bit
// count, and the Fisher-weighted sensitivity map, on real stories260K weights.
#include "error_text.h"
#include "test_data.h"

#include "quantlens/core/dtype.h"
#include "quantlens/core/parallel.h"
#include "quantlens/encoding/bit_packing.h"
#include "quantlens/formats/model_loading.h"
#include "quantlens/model/model.h"
#include "quantlens/quantization/layer_quantizer.h"
#include "quantlens/quantization/sensitivity.h"
#include "quantlens/quantization/weighted_kmeans.h"

#include <algorithm>
#include <cmath>
#include <functional>
#include <limits>
#include <numeric>
#include <random>

using namespace quantlens;
using quantlens::test::errorOf;

namespace {

// Every linear weight of stories260K-hf, kLinearLayers order per block.
const std::vector<RowMatrix>& realWeights() {
    static const std::vector<RowMatrix> weights = [] {
        const auto model = loadModel(test::dataPath("stories260K-hf"));
        std::vector<RowMatrix> all;
        for (const BlockWeights& block : model->blocks)
            for (const TensorView* tensor : block.linearLayers())
                all.push_back(FloatTensor(*tensor).matrix());
        return all;
    }();
    return weights;
}

// Seeded positive importances with a heavy spread, standing in for a Fisher diagonal.
RowMatrix seededImportance(Eigen::Index rows, Eigen::Index cols, std::uint32_t seed) {
    std::mt19937 engine(seed);
    std::exponential_distribution<float> spread(1.0f);
    RowMatrix importance(rows, cols);
    for (Eigen::Index i = 0; i < importance.size(); ++i)
        importance.data()[i] = std::pow(spread(engine), 3.0f);
    return importance;
}

std::vector<float> rowOf(const RowMatrix& m, Eigen::Index r) {
    return {m.row(r).data(), m.row(r).data() + m.cols()};
}

// Lloyd's algorithm written the obvious way: every value against every centroid (ties to the lower
// index), plain means, an empty cluster keeps its centroid.
struct PlainKMeans {
    std::vector<double> centroids;
    int iterations = 0;
};
PlainKMeans plainKMeans(const std::vector<float>& x, std::vector<double> centroids,
                        int maxIterations) {
    const auto assign = [&] {
        std::vector<std::size_t> labels(x.size());
        for (std::size_t i = 0; i < x.size(); ++i)
            for (std::size_t k = 1; k < centroids.size(); ++k)
                if (std::abs(x[i] - centroids[k]) < std::abs(x[i] - centroids[labels[i]]))
                    labels[i] = k;
        return labels;
    };
    std::vector<std::size_t> labels = assign();
    PlainKMeans result;
    for (int step = 0; step < maxIterations; ++step) {
        for (std::size_t k = 0; k < centroids.size(); ++k) {
            double sum = 0.0;
            int count = 0;
            for (std::size_t i = 0; i < x.size(); ++i)
                if (labels[i] == k) sum += x[i], ++count;
            if (count > 0) centroids[k] = sum / count;
        }
        ++result.iterations;
        const std::vector<std::size_t> next = assign();
        if (next == labels) break;
        labels = next;
    }
    result.centroids = centroids;
    return result;
}

double weightedObjective(const std::vector<float>& x, const std::vector<float>& w,
                         const std::vector<double>& centroids) {
    double total = 0.0;
    for (std::size_t i = 0; i < x.size(); ++i) {
        double best = INFINITY;
        for (double c : centroids)
            best = std::min(best, (x[i] - c) * (x[i] - c));
        total += w[i] * best;
    }
    return total;
}

// The least Σ w·(x − mean)² over every split of the sorted values into `k` consecutive runs,
// by exhaustive search (an independent reference for optimalWeightedKMeans on small rows).
double bruteForceOptimum(std::vector<float> x, std::vector<float> w, int k) {
    std::vector<std::size_t> order(x.size());
    std::iota(order.begin(), order.end(), std::size_t{0});
    std::sort(order.begin(), order.end(),
              [&](std::size_t a, std::size_t b) { return x[a] < x[b]; });
    const auto runCost = [&](std::size_t begin, std::size_t end) {
        double weight = 0, moment = 0;
        for (std::size_t i = begin; i < end; ++i) {
            weight += w[order[i]];
            moment += w[order[i]] * x[order[i]];
        }
        double cost = 0;
        for (std::size_t i = begin; i < end; ++i) {
            const double d = x[order[i]] - (weight > 0 ? moment / weight : 0.0);
            cost += w[order[i]] * d * d;
        }
        return cost;
    };
    const std::function<double(std::size_t, int)> best = [&](std::size_t begin, int runs) {
        if (runs == 1) return runCost(begin, x.size());
        double least = std::numeric_limits<double>::infinity();
        for (std::size_t end = begin + 1; end + std::size_t(runs - 1) <= x.size(); ++end)
            least = std::min(least, runCost(begin, end) + best(end, runs - 1));
        return least;
    };
    return best(0, k);
}

// Plain weighted k-means++ (one D² draw per centre), the seeding before greedy trials.
std::vector<double> plainSeeds(const std::vector<float>& x, const std::vector<float>& w, int k,
                               std::mt19937_64& engine) {
    std::vector<double> seeds;
    std::vector<double> mass(w.begin(), w.end());
    while (seeds.size() < std::size_t(k)) {
        std::discrete_distribution<std::size_t> pick(mass.begin(), mass.end());
        seeds.push_back(x[pick(engine)]);
        for (std::size_t i = 0; i < x.size(); ++i) {
            const double d = x[i] - seeds.back();
            mass[i] = seeds.size() == 1 ? w[i] * d * d : std::min(mass[i], w[i] * d * d);
        }
    }
    std::sort(seeds.begin(), seeds.end());
    return seeds;
}

std::size_t ceilDiv(std::size_t a, std::size_t b) {
    return (a + b - 1) / b;
}

} // namespace

class TestSqueezeLlm : public QObject {
    Q_OBJECT

private slots:
    void initTestCase() { QUANTLENS_REQUIRE_DATA("stories260K-hf"); }

    void kmeansObjectiveNeverIncreases() {
        const RowMatrix& w = realWeights()[6]; // block 0 down_proj, 64 × 172
        const RowMatrix importance = seededImportance(w.rows(), w.cols(), 7);
        for (int k : {4, 8, 16}) {
            for (Eigen::Index r = 0; r < w.rows(); r += 9) {
                const auto x = rowOf(w, r), weights = rowOf(importance, r);
                const KMeansResult result =
                    weightedKMeans(x, weights, kmeansPlusPlusSeeds(x, weights, k, r), 100, true);
                QCOMPARE(result.objectiveTrace.size(), std::size_t(result.iterations) + 1);
                for (std::size_t t = 1; t < result.objectiveTrace.size(); ++t)
                    QVERIFY2(result.objectiveTrace[t] <= result.objectiveTrace[t - 1] * (1 + 1e-12),
                             qPrintable(QString("k=%1 row %2 step %3: %4 > %5")
                                            .arg(k)
                                            .arg(r)
                                            .arg(t)
                                            .arg(result.objectiveTrace[t])
                                            .arg(result.objectiveTrace[t - 1])));
                // The trace's last value is the objective of the final centroids.
                QVERIFY(std::abs(result.objectiveTrace.back() -
                                 weightedObjective(x, weights, result.centroids)) <=
                        1e-9 * result.objectiveTrace.back());
                QVERIFY(result.objectiveTrace.back() < result.objectiveTrace.front());
            }
        }
    }

    // The dynamic programme finds the global minimum: it equals an exhaustive search over interval
    // splits on small rows, and is never above Lloyd's local minimum on real rows (and below it on
    // some, or Lloyd would already be optimal and the comparison would show nothing).
    void optimalKMeansIsTheGlobalMinimum() {
        std::mt19937 engine(17);
        std::normal_distribution<float> normal;
        std::uniform_real_distribution<float> positive(0.0f, 1.0f);
        for (int trial = 0; trial < 40; ++trial) {
            const std::size_t n = 6 + std::size_t(trial % 7);
            const int k = 2 + trial % 3;
            std::vector<float> x(n), w(n);
            for (std::size_t i = 0; i < n; ++i) {
                x[i] = normal(engine);
                w[i] = trial % 4 == 0 && i % 3 == 0 ? 0.0f : positive(engine);
            }
            const KMeansResult optimal = optimalWeightedKMeans(x, w, k);
            QCOMPARE(optimal.centroids.size(), std::size_t(k));
            QVERIFY(std::is_sorted(optimal.centroids.begin(), optimal.centroids.end()));
            const double reference = bruteForceOptimum(x, w, k);
            QVERIFY2(std::abs(weightedObjective(x, w, optimal.centroids) - reference) <=
                         1e-9 * reference + 1e-12,
                     qPrintable(QString("trial %1: %2 vs exhaustive %3")
                                    .arg(trial)
                                    .arg(weightedObjective(x, w, optimal.centroids), 0, 'g', 12)
                                    .arg(reference, 0, 'g', 12)));
        }
        const RowMatrix& w = realWeights()[6]; // block 0 down_proj, 64 × 172
        const RowMatrix importance = seededImportance(w.rows(), w.cols(), 7);
        int better = 0;
        for (Eigen::Index r = 0; r < w.rows(); ++r) {
            const auto x = rowOf(w, r), weights = rowOf(importance, r);
            const double optimal =
                weightedObjective(x, weights, optimalWeightedKMeans(x, weights, 8).centroids);
            const double lloyd = weightedObjective(
                x, weights,
                weightedKMeans(x, weights, kmeansPlusPlusSeeds(x, weights, 8, r), 50).centroids);
            QVERIFY(optimal <= lloyd * (1 + 1e-12));
            better += optimal < lloyd * (1 - 1e-9);
        }
        QVERIFY(better > 0);
    }

    // Greedy trials (2 + ⌊ln k⌋ candidates per centre) seed with a lower potential Σ w·D² than
    // one D² draw per centre, on average over the rows of a real layer.
    void greedySeedingLowersThePotential() {
        const RowMatrix& w = realWeights()[13]; // block 1 down_proj
        const RowMatrix importance = seededImportance(w.rows(), w.cols(), 3);
        std::mt19937_64 engine(9);
        for (int k : {4, 8, 16}) {
            double greedy = 0, plain = 0;
            for (Eigen::Index r = 0; r < w.rows(); ++r) {
                const auto x = rowOf(w, r), weights = rowOf(importance, r);
                greedy += weightedObjective(x, weights, kmeansPlusPlusSeeds(x, weights, k, r));
                plain += weightedObjective(x, weights, plainSeeds(x, weights, k, engine));
            }
            QVERIFY2(
                greedy < plain,
                qPrintable(QString("k=%1: greedy %2, plain %3").arg(k).arg(greedy).arg(plain)));
        }
    }

    void uniformWeightsEqualPlainKMeans() {
        for (int layer : {0, 3, 6, 13}) {
            const RowMatrix& w = realWeights()[std::size_t(layer)];
            for (Eigen::Index r = 0; r < w.rows(); r += 17) {
                const auto x = rowOf(w, r);
                const std::vector<float> ones(x.size(), 1.0f);
                const auto seeds = kmeansPlusPlusSeeds(x, ones, 8, 42);
                const KMeansResult weighted = weightedKMeans(x, ones, seeds, 50);
                const PlainKMeans plain = plainKMeans(x, seeds, 50);
                QCOMPARE(weighted.iterations, plain.iterations);
                for (std::size_t k = 0; k < seeds.size(); ++k)
                    QVERIFY(std::abs(weighted.centroids[k] - plain.centroids[k]) <= 1e-9);
            }
        }
    }

    void integerWeightsEqualReplicatedSamples() {
        const RowMatrix& w = realWeights()[4]; // block 0 gate_proj, 172 × 64
        std::mt19937 engine(3);
        for (Eigen::Index r = 0; r < w.rows(); r += 21) {
            const auto x = rowOf(w, r);
            std::vector<float> weights(x.size()), replicated;
            for (std::size_t i = 0; i < x.size(); ++i) {
                weights[i] = static_cast<float>(engine() % 4); // 0..3 copies
                replicated.insert(replicated.end(), static_cast<std::size_t>(weights[i]), x[i]);
            }
            const auto seeds = kmeansPlusPlusSeeds(x, weights, 8, 5);
            const KMeansResult weighted = weightedKMeans(x, weights, seeds, 50);
            const PlainKMeans plain = plainKMeans(replicated, seeds, 50);
            for (std::size_t k = 0; k < seeds.size(); ++k)
                QVERIFY(std::abs(weighted.centroids[k] - plain.centroids[k]) <= 1e-9);
        }
    }

    void seedsAreWeightedSampleValues() {
        const auto x = rowOf(realWeights()[0], 5);
        std::vector<float> weights(x.size(), 1.0f);
        const auto seeds = kmeansPlusPlusSeeds(x, weights, 16, 11);
        QCOMPARE(seeds, kmeansPlusPlusSeeds(x, weights, 16, 11));
        QVERIFY(std::is_sorted(seeds.begin(), seeds.end()));
        QVERIFY(std::adjacent_find(seeds.begin(), seeds.end()) == seeds.end()); // distinct
        // Zero-weight values are never chosen.
        std::fill(weights.begin() + 8, weights.end(), 0.0f);
        for (double seed : kmeansPlusPlusSeeds(x, weights, 4, 1))
            QVERIFY(std::find(x.begin(), x.begin() + 8, static_cast<float>(seed)) != x.begin() + 8);
        // Fewer weighted values than centroids: the seeds repeat them.
        const auto few = kmeansPlusPlusSeeds(x, weights, 16, 1);
        QCOMPARE(few.size(), std::size_t(16));
        for (double seed : few)
            QVERIFY(std::find(x.begin(), x.begin() + 8, static_cast<float>(seed)) != x.begin() + 8);
    }

    void storedBytesEqualReportedBits_data() {
        QTest::addColumn<int>("layer");
        QTest::addColumn<int>("wbits");
        QTest::addColumn<double>("sparse");
        QTest::addColumn<double>("sensitive");
        QTest::newRow("q_proj w3 dense") << 0 << 3 << 0.0 << 0.0;
        QTest::newRow("q_proj w4 0.45%") << 0 << 4 << 0.40 << 0.05;
        QTest::newRow("down_proj w3 1%+0.5%") << 6 << 3 << 1.0 << 0.5;
        QTest::newRow("gate_proj w4 sensitive only") << 4 << 4 << 0.0 << 2.0;
    }
    void storedBytesEqualReportedBits() {
        QFETCH(int, layer);
        QFETCH(int, wbits);
        QFETCH(double, sparse);
        QFETCH(double, sensitive);
        const RowMatrix& w = realWeights()[std::size_t(layer)];
        const RowMatrix fisher = seededImportance(w.rows(), w.cols(), 1);
        const SqueezeConfig config{
            .wbits = wbits, .sparsePercent = sparse, .sensitivePercent = sensitive};
        const QuantizedLayer q = quantizeLayer(w, {.fisher = &fisher}, config, JobContext{});
        const std::size_t rows = std::size_t(w.rows()), cols = std::size_t(w.cols()),
                          n = rows * cols;
        const auto nnz = static_cast<std::size_t>(std::llround(sparse / 100 * double(n)) +
                                                  std::llround(sensitive / 100 * double(n)));
        QCOMPARE(std::size_t(q.outlierCount), nnz);
        std::size_t expected = rows * ceilDiv(cols * std::size_t(wbits), 32) * 4 // codes
                               + rows * (std::size_t{1} << wbits) * 2;           // fp16 LUTs
        // CSR: row pointers and columns in the narrowest of 1, 2 or 4 bytes that holds them.
        const auto width = [](std::size_t largest) -> std::size_t {
            return largest <= 255 ? 1 : largest <= 65535 ? 2 : 4;
        };
        if (nnz > 0) expected += (rows + 1) * width(nnz) + nnz * (2 + width(cols - 1));
        QCOMPARE(q.storedBytes(), expected);
        QCOMPARE(q.bitsPerParameter(), double(expected) * 8 / double(n));
        QCOMPARE(q.paperBitsPerParameter(),
                 wbits + 16.0 * (1 << wbits) / double(cols) + 32.0 * double(nnz) / double(n));
    }

    // Every dense weight decodes to its row's nearest stored centroid; sparse weights keep their
    // fp16 value; the sparse set is the largest magnitudes, then the largest Fisher values.
    void decodesNearestCentroidAndKeepsSparseValues() {
        const RowMatrix& w = realWeights()[10]; // block 1 o_proj
        const RowMatrix fisher = seededImportance(w.rows(), w.cols(), 2);
        const SqueezeConfig config{.wbits = 3, .sparsePercent = 2.0, .sensitivePercent = 1.0};
        const QuantizedLayer q = quantizeLayer(w, {.fisher = &fisher}, config, JobContext{});
        const RowMatrix decoded = q.dequantize();
        const StoredTensor& lut = q.tensors.at("lut");
        const StoredTensor& rowPtr = q.tensors.at("outlier_row_ptr");
        const StoredTensor& cols = q.tensors.at("outlier_cols");

        Eigen::Array<bool, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor> sparse =
            Eigen::Array<bool, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor>::Constant(
                w.rows(), w.cols(), false);
        for (Eigen::Index r = 0; r < w.rows(); ++r)
            for (auto k = rowPtr.indexAt(std::size_t(r)); k < rowPtr.indexAt(std::size_t(r) + 1);
                 ++k)
                sparse(r, cols.indexAt(std::size_t(k))) = true;
        for (Eigen::Index r = 0; r < w.rows(); ++r) {
            std::vector<float> table(8);
            for (std::size_t k = 0; k < 8; ++k)
                table[k] = lut.f16At(std::size_t(r) * 8 + k);
            QVERIFY(std::is_sorted(table.begin(), table.end()));
            for (Eigen::Index j = 0; j < w.cols(); ++j) {
                if (sparse(r, j)) {
                    QCOMPARE(decoded(r, j), f16ToFloat(floatToF16(w(r, j))));
                    continue;
                }
                float best = INFINITY;
                for (float c : table)
                    best = std::min(best, std::abs(w(r, j) - c));
                QCOMPARE(std::abs(w(r, j) - decoded(r, j)), best);
                QVERIFY(std::find(table.begin(), table.end(), decoded(r, j)) != table.end());
            }
        }

        const std::int64_t n = w.size();
        const std::int64_t byMagnitude = std::llround(0.02 * double(n));
        std::vector<float> magnitudes(w.data(), w.data() + n);
        for (float& m : magnitudes)
            m = std::abs(m);
        std::vector<float> sortedMagnitudes = magnitudes;
        std::sort(sortedMagnitudes.rbegin(), sortedMagnitudes.rend());
        const float magnitudeCut = sortedMagnitudes[std::size_t(byMagnitude)];
        float smallestSensitive = INFINITY, largestDenseFisher = 0.0f;
        for (std::int64_t i = 0; i < n; ++i) {
            const bool isSparse = sparse.data()[i];
            if (magnitudes[std::size_t(i)] > magnitudeCut) QVERIFY(isSparse);
            if (magnitudes[std::size_t(i)] > magnitudeCut) continue;
            if (isSparse)
                smallestSensitive = std::min(smallestSensitive, fisher.data()[i]);
            else
                largestDenseFisher = std::max(largestDenseFisher, fisher.data()[i]);
        }
        QVERIFY(smallestSensitive >= largestDenseFisher);
        QCOMPARE(sparse.count(), Eigen::Index(q.outlierCount));
    }

    // With uniform weights the per-row k-means is the best non-uniform grid, so it must beat the
    // uniform per-channel min-max grid of RTN at the same bit width on real layers.
    void beatsPerChannelRtnOnWeightError() {
        for (std::size_t layer = 0; layer < realWeights().size(); layer += 3) {
            const RowMatrix& w = realWeights()[layer];
            const RowMatrix ones = RowMatrix::Ones(w.rows(), w.cols());
            for (int wbits : {3, 4}) {
                const double squeeze =
                    (w - quantizeLayer(w, {.fisher = &ones}, SqueezeConfig{.wbits = wbits},
                                       JobContext{})
                             .dequantize())
                        .squaredNorm();
                const double rtn =
                    (w - quantizeLayer(w, {}, RtnConfig{wbits, 0}, JobContext{}).dequantize())
                        .squaredNorm();
                QVERIFY2(squeeze < 0.8 * rtn, qPrintable(QString("layer %1 w%2: %3 vs %4")
                                                             .arg(layer)
                                                             .arg(wbits)
                                                             .arg(squeeze)
                                                             .arg(rtn)));
            }
        }
    }

    void sameBytesForAnyThreadCount() {
        const RowMatrix& w = realWeights()[5];
        const RowMatrix fisher = seededImportance(w.rows(), w.cols(), 4);
        const SqueezeConfig config{.wbits = 3, .sparsePercent = 0.4, .sensitivePercent = 0.05};
        const int threads = threadCount();
        setThreadCount(1);
        const QuantizedLayer one = quantizeLayer(w, {.fisher = &fisher}, config, JobContext{});
        setThreadCount(2);
        const QuantizedLayer two = quantizeLayer(w, {.fisher = &fisher}, config, JobContext{});
        setThreadCount(threads);
        for (const auto& [name, tensor] : one.tensors)
            QVERIFY2(tensor.bytes == two.tensors.at(name).bytes, name.c_str());
    }

    void fisherSensitivityMap() {
        const auto model = loadModel(test::dataPath("stories260K-hf"));
        const RowMatrix& w = realWeights()[7]; // block 1 q_proj
        const RowMatrix fisher = seededImportance(w.rows(), w.cols(), 9);
        const HeadSplit heads = headSplitOf(model->config, "q_proj");
        const SensitivityMap map = computeFisherSensitivity(w, fisher, 3, heads, "q");
        const RowMatrix decoded =
            quantizeLayer(w, {.fisher = &fisher}, SqueezeConfig{.wbits = 3}, JobContext{})
                .dequantize();
        for (Eigen::Index r = 0; r < w.rows(); ++r) {
            double rowTotal = 0.0;
            for (Eigen::Index j = 0; j < w.cols(); ++j) {
                const double error = double(w(r, j)) - decoded(r, j);
                QVERIFY(std::abs(map.values(r, j) - fisher(r, j) * error * error) <=
                        1e-6 * fisher(r, j) * error * error + 1e-30);
                rowTotal += map.values(r, j);
            }
            QVERIFY(std::abs(map.rowTotals[r] - rowTotal) <= 1e-9 * rowTotal);
        }
        QCOMPARE(map.headTotals.size(), Eigen::Index(model->config.headCount));
        QVERIFY(std::abs(map.headTotals.sum() - map.total()) <= 1e-9 * map.total());
        QVERIFY(std::abs(map.columnTotals.sum() - map.total()) <= 1e-9 * map.total());
        QVERIFY(std::abs(map.headTotals[1] - map.rowTotals.segment(8, 8).sum()) <=
                1e-12 * map.total());
    }

    void rejectsBadInputs() {
        const RowMatrix& w = realWeights()[0];
        const JobContext job;
        QCOMPARE(errorOf([&] { quantizeLayer(w, {}, SqueezeConfig{}, job, "wq"); }),
                 QString("wq: squeezellm needs the Fisher information of the layer"));
        const RowMatrix small = RowMatrix::Ones(4, 4);
        QCOMPARE(errorOf([&] { quantizeLayer(w, {.fisher = &small}, SqueezeConfig{}, job, "wq"); }),
                 QString("wq: Fisher information is 4×4 but the layer is 64×64"));
        RowMatrix bad = RowMatrix::Ones(w.rows(), w.cols());
        bad(3, 4) = NAN;
        QCOMPARE(errorOf([&] { quantizeLayer(w, {.fisher = &bad}, SqueezeConfig{}, job, "wq"); }),
                 QString("wq: Fisher information must be finite and non-negative"));
        bad(3, 4) = -1.0f;
        QCOMPARE(errorOf([&] { quantizeLayer(w, {.fisher = &bad}, SqueezeConfig{}, job, "wq"); }),
                 QString("wq: Fisher information must be finite and non-negative"));
        const RowMatrix ones = RowMatrix::Ones(w.rows(), w.cols());
        QCOMPARE(errorOf([&] {
                     quantizeLayer(w, {.fisher = &ones},
                                   SqueezeConfig{.sparsePercent = 60, .sensitivePercent = 50}, job);
                 }),
                 QString("sparse-percent + sensitive-percent = 110 is outside [0, 100]"));
        // A layer whose Fisher is zero everywhere still quantizes (plain k-means per row).
        const RowMatrix zero = RowMatrix::Zero(w.rows(), w.cols());
        const QuantizedLayer plain =
            quantizeLayer(w, {.fisher = &zero}, SqueezeConfig{.wbits = 3}, job);
        QCOMPARE(plain.dequantize().rows(), w.rows());
        QVERIFY((w - plain.dequantize()).squaredNorm() < 0.05 * w.squaredNorm());
    }
};

QTEST_GUILESS_MAIN(TestSqueezeLlm)
#include "test_squeezellm.moc"
