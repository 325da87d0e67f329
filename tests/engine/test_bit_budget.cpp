// The bit budget: the allocation against an exhaustive search, the measured error curves and their
// predicted loss against the loss actually measured on stories260K, and a budget run end to end.
#include "calibration_text.h"
#include "test_data.h"

#include "quantlens/core/error.h"
#include "quantlens/formats/model_loading.h"
#include "quantlens/formats/quantlens_checkpoint.h"
#include "quantlens/io/text_file.h"
#include "quantlens/quantization/bit_budget.h"
#include "quantlens/quantization/model_quantizer.h"
#include "quantlens/quantization/run_record.h"
#include "quantlens/runtime/compressed_linear.h"
#include "quantlens/runtime/gradients.h"
#include "quantlens/runtime/transformer.h"
#include "quantlens/tokenizer/tokenizer.h"

#include <QTemporaryDir>

#include <cmath>
#include <limits>
#include <optional>
#include <random>
#include <set>

using namespace quantlens;

namespace {

const CalibrationConfig kCalibration{8, 128};

std::vector<QuantConfig> gptqCandidates() {
    std::vector<QuantConfig> candidates;
    for (const int wbits : {2, 3, 4})
        for (const int groupsize : {32, 64}) {
            GptqConfig c;
            c.wbits = wbits;
            c.groupsize = groupsize;
            candidates.push_back(c);
        }
    return candidates;
}

// Mean NLL of the calibration sequences, the quantity the predicted loss is a change of.
double calibrationLoss(const Model& model, std::span<const std::int32_t> stream) {
    const Transformer transformer(model);
    double total = 0.0;
    const auto sequences =
        calibrationSequences(stream, kCalibration, model.config, model.path.string());
    for (const auto& sequence : sequences)
        total += lossAndLinearGradients(transformer, sequence, [](auto&&...) {});
    return total / static_cast<double>(sequences.size());
}

// The lowest summed loss of any choice within `budget`, by trying them all.
double exhaustiveBest(const BudgetMeasurement& m, double budget) {
    const std::size_t layers = m.layers.size(), k = m.settings.size();
    double best = std::numeric_limits<double>::infinity();
    std::vector<std::size_t> choice(layers, 0);
    for (;;) {
        double cost = 0.0, loss = 0.0;
        for (std::size_t l = 0; l < layers; ++l) {
            const LayerCandidate& c = m.layers[l].candidates[choice[l]];
            cost += c.paperBits * double(m.layers[l].parameters);
            loss += c.predictedLoss;
        }
        if (cost <= budget * (1 + 1e-12)) best = std::min(best, loss);
        std::size_t l = 0;
        while (l < layers && ++choice[l] == k)
            choice[l++] = 0;
        if (l == layers) return best;
    }
}

} // namespace

class TestBitBudget : public QObject {
    Q_OBJECT
private slots:
    void initTestCase() {
        QUANTLENS_REQUIRE_DATA("stories260K-hf");
        QUANTLENS_REQUIRE_DATA("text/wikitext2-test.txt");
    }

    // Random curves (loss falling as bits rise, with noise so they are not convex): the
    // allocation always fits, is never beaten by a uniform setting, and matches the exhaustive
    // optimum but where rounding the costs to the knapsack's units loses a choice at the edge of
    // the budget.
    void allocationAgainstExhaustiveSearch() {
        std::mt19937 random(7);
        std::uniform_real_distribution<double> unit(0.0, 1.0);
        int exact = 0;
        constexpr int kInstances = 300;
        for (int instance = 0; instance < kInstances; ++instance) {
            BudgetMeasurement m{GptqConfig{}, std::vector<QuantConfig>(4, GptqConfig{}), {}};
            double parameters = 0.0, widestRange = 0.0;
            for (int l = 0; l < 6; ++l) {
                LayerCurve curve{0, l, 1000 + std::int64_t(unit(random) * 9000), {}};
                const double sensitivity = std::exp(4.0 * unit(random));
                for (int k = 0; k < 4; ++k) {
                    const double bits = 2.0 + k + 0.5 * unit(random);
                    curve.candidates.push_back(
                        {bits, sensitivity * std::exp2(-bits) * (0.7 + 0.6 * unit(random))});
                }
                double low = 1e300, high = 0.0;
                for (const LayerCandidate& c : curve.candidates) {
                    low = std::min(low, c.predictedLoss);
                    high = std::max(high, c.predictedLoss);
                }
                widestRange = std::max(widestRange, high - low);
                parameters += double(curve.parameters);
                m.layers.push_back(std::move(curve));
            }
            const double target = 2.5 + 2.5 * unit(random);
            std::optional<BitAllocation> allocated;
            try {
                allocated = allocateBits(m, target);
            } catch (const Error&) {
                QVERIFY(std::isinf(exhaustiveBest(m, target * parameters)));
                continue;
            }
            const BitAllocation& a = *allocated;
            QVERIFY(a.paperBits <= target * (1 + 1e-12));
            const double best = exhaustiveBest(m, target * parameters);
            QVERIFY(a.predictedLoss >= best * (1 - 1e-12));
            QVERIFY(a.predictedLoss <= best + widestRange);
            exact += a.predictedLoss <= best * (1 + 1e-12) ? 1 : 0;
            for (std::size_t k = 0; k < 4; ++k) {
                double cost = 0.0, loss = 0.0;
                for (const LayerCurve& c : m.layers) {
                    cost += c.candidates[k].paperBits * double(c.parameters);
                    loss += c.candidates[k].predictedLoss;
                }
                if (cost <= target * parameters) QVERIFY(a.predictedLoss <= loss);
            }
        }
        qInfo("allocation exact on %d of %d instances", exact, kInstances);
        QVERIFY(exact >= kInstances * 98 / 100);
    }

    void targetBelowTheCheapestIsRefused() {
        BudgetMeasurement m{GptqConfig{}, {GptqConfig{}}, {{0, 0, 100, {{2.5, 1.0}}}}};
        QVERIFY_THROWS_EXCEPTION(Error, allocateBits(m, 2.0));
        QCOMPARE(allocateBits(m, 2.5).choices, std::vector<std::size_t>{0});
    }

    // The curves on the real model: more bits never predict more loss at one group size, and the
    // prediction for quantizing the whole model at one setting (the sum over its layers) tracks
    // the calibration loss it actually adds, measured by running the quantized model.
    void predictedLossTracksTheMeasuredLoss() {
        const auto model = loadModel(test::dataPath("stories260K-hf"));
        const auto stream = test::wikitextStream(*model);
        const std::vector<QuantConfig> candidates = gptqCandidates();
        const BudgetMeasurement m =
            measureLayerCurves(*model, stream, kCalibration, GptqConfig{}, candidates, {});
        QCOMPARE(m.layers.size(), model->blocks.size() * kLinearLayerCount);
        for (const LayerCurve& curve : m.layers) {
            QCOMPARE(curve.candidates.size(), candidates.size());
            for (std::size_t g = 0; g < 2; ++g) // w2 > w3 > w4 at groupsize 32 and 64
                QVERIFY(curve.candidates[g].predictedLoss > curve.candidates[2 + g].predictedLoss &&
                        curve.candidates[2 + g].predictedLoss >
                            curve.candidates[4 + g].predictedLoss);
        }
        const double unquantized = calibrationLoss(*model, stream);
        std::vector<std::pair<double, double>> results;
        for (std::size_t k = 0; k < candidates.size(); ++k) {
            double predicted = 0.0;
            for (const LayerCurve& curve : m.layers)
                predicted += curve.candidates[k].predictedLoss;
            const QuantizedModel quantized =
                quantizeInMemory(*model, stream, candidates[k], kCalibration, {});
            const double measured = calibrationLoss(*quantized.model, stream) - unquantized;
            qInfo("%s: predicted %.4g, measured %.4g nats per token",
                  describe(candidates[k]).c_str(), predicted, measured);
            results.push_back({predicted, measured});
        }
        // The settings rank alike by predicted and by measured loss, and the two stay in
        // proportion within a factor of 3 (the prediction runs 2.5–5.5 times high here: WikiText
        // is outside a TinyStories model's domain, where the empirical Fisher exceeds the true
        // curvature; only the relative sizes steer the allocation).
        double lowRatio = 1e300, highRatio = 0.0;
        for (std::size_t i = 0; i < results.size(); ++i) {
            QVERIFY(results[i].second > 0.0);
            const double ratio = results[i].first / results[i].second;
            lowRatio = std::min(lowRatio, ratio);
            highRatio = std::max(highRatio, ratio);
            for (std::size_t j = 0; j < results.size(); ++j)
                QCOMPARE(results[i].first < results[j].first,
                         results[i].second < results[j].second);
        }
        QVERIFY2(
            highRatio < 3.0 * lowRatio,
            qPrintable(QString("predicted/measured from %1 to %2").arg(lowRatio).arg(highRatio)));
    }

    // A budget run: within its target, each layer with its chosen settings, and those settings
    // kept by the quantlens checkpoint.
    void budgetRunKeepsItsPlan() {
        const auto model = loadModel(test::dataPath("stories260K-hf"));
        const auto stream = test::wikitextStream(*model);
        const BudgetMeasurement m =
            measureLayerCurves(*model, stream, kCalibration, GptqConfig{}, gptqCandidates(), {});
        const BitAllocation a = allocateBits(m, 3.25);
        QVERIFY(a.paperBits <= 3.25);
        QTemporaryDir dir;
        QuantlensWriter writer(*model, dir.filePath("q").toStdString());
        const QuantizeResult result =
            quantizeModel(*model, stream, a.plan, kCalibration,
                          [&](int block, const std::string& name, const QuantizedLayer& layer,
                              const RowMatrix&) { writer.writeLayer(block, name, layer); },
                          {});
        writer.commit();
        // GPTQ's bits follow from the settings alone: the run spends exactly what was planned.
        QVERIFY(std::abs(result.paperBitsPerParameter - a.paperBits) < 1e-9);
        std::set<std::string> distinct;
        for (std::size_t i = 0; i < result.layers.size(); ++i) {
            const LayerReport& layer = result.layers[i];
            QCOMPARE(describe(layer.config),
                     describe(a.plan.layer(layer.block, int(i % kLinearLayerCount))));
            distinct.insert(describe(layer.config));
        }
        QVERIFY2(distinct.size() > 1, "a budget between the candidates mixes settings");
        const auto reloaded =
            loadQuantlensModel(dir.filePath("q").toStdString(), CompressedLayers::Keep);
        for (std::size_t b = 0; b < reloaded->compressedLayers.size(); ++b)
            for (int l = 0; l < kLinearLayerCount; ++l)
                QCOMPARE(describe(reloaded->compressedLayers[b][std::size_t(l)]->config()),
                         describe(a.plan.layer(int(b), l)));
    }

    void candidatesOfAnotherMethodAreRefused() {
        const auto model = loadModel(test::dataPath("stories260K-hf"));
        const auto stream = test::wikitextStream(*model);
        QVERIFY_THROWS_EXCEPTION(Error, measureLayerCurves(*model, stream, kCalibration,
                                                           GptqConfig{}, {SpqrConfig{}}, {}));
        QVERIFY_THROWS_EXCEPTION(
            Error, measureLayerCurves(*model, stream, kCalibration, GptqConfig{}, {}, {}));
    }
};

QTEST_GUILESS_MAIN(TestBitBudget)
#include "test_bit_budget.moc"
