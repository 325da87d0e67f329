// The whole-model map on stories260K: each metric's cells against the same figure computed one
// layer at a time through the single-layer paths (calibrateBlock, analyseLayer, quantizeModel's
// reports, a hand-built model with one layer quantized), the JSON form and the cache.
#include "calibration_text.h"
#include "test_data.h"

#include "quantlens/core/error.h"
#include "quantlens/formats/model_loading.h"
#include "quantlens/formats/model_map_file.h"
#include "quantlens/quantization/layer_calibration.h"
#include "quantlens/quantization/layer_quantizer.h"
#include "quantlens/quantization/model_map.h"
#include "quantlens/runtime/perplexity.h"

#include <QTemporaryDir>

#include <algorithm>
#include <cmath>
#include <filesystem>
#include <fstream>

using namespace quantlens;

namespace {

const CalibrationConfig kCalibration{8, 128};

void compareClose(double actual, double expected, double tolerance) {
    QVERIFY2(std::abs(actual - expected) <= tolerance * std::abs(expected),
             qPrintable(QString("%1 vs %2").arg(actual, 0, 'g', 10).arg(expected, 0, 'g', 10)));
}

ModelMapRequest request(MapMetric metric, QuantConfig config) {
    return {metric, config, kCalibration, {128, PerplexityProtocol::Documents}};
}

} // namespace

class TestModelMap : public QObject {
    Q_OBJECT

    std::unique_ptr<Model> model_;
    std::vector<std::int32_t> calibration_, evaluation_;

private slots:
    void initTestCase() {
        QUANTLENS_REQUIRE_DATA("stories260K-hf");
        QUANTLENS_REQUIRE_DATA("text/wikitext2-test.txt");
        QUANTLENS_REQUIRE_DATA("text/tinystories-valid-excerpt.txt");
        model_ = loadModel(test::dataPath("stories260K-hf"));
        calibration_ = test::wikitextStream(*model_);
        // The excerpt's first 1,024 tokens: the KL maps score it twice per layer, and the
        // sanitizer build runs these tests ~30× slower.
        evaluation_ = test::tinystoriesStream(*model_);
        evaluation_.resize(std::min<std::size_t>(evaluation_.size(), 1024));
    }

    // One walk for the whole model gives each layer the sum the studio's single-layer analysis
    // shows for it.
    void obsCellsAreTheLayerAnalysesTotals() {
        SpqrConfig spqr;
        const ModelMap map = computeModelMap(*model_, request(MapMetric::ObsSensitivity, spqr),
                                             calibration_, {}, JobContext{});
        QCOMPARE(map.blocks, model_->config.layerCount);
        QCOMPARE(map.values.size(), std::size_t(map.blocks * kLinearLayerCount));
        for (const int block : {0, map.blocks - 1}) {
            const BlockCalibration calibrated =
                calibrateBlock(*model_, calibration_, kCalibration, block, JobContext{});
            for (int l = 0; l < kLinearLayerCount; ++l) {
                const LayerAnalysis analysis =
                    analyseLayer(*model_, calibrated, kLinearLayers[std::size_t(l)].name, spqr, {});
                compareClose(map.at(block, l), analysis.preview.map().total(), 1e-6);
                QVERIFY(map.at(block, l) > 0.0);
            }
        }
    }

    void fisherCellsAreTheFisherAnalysesTotals() {
        SqueezeConfig squeeze;
        squeeze.wbits = 3;
        const ModelMap map =
            computeModelMap(*model_, request(MapMetric::FisherSensitivity, squeeze), calibration_,
                            {}, JobContext{});
        const FisherInformation fisher = accumulateFisher(
            *model_,
            calibrationSequences(calibration_, kCalibration, model_->config, "calibration"),
            JobContext{});
        for (int l = 0; l < kLinearLayerCount; ++l) {
            const LayerAnalysis analysis = analyseLayerFisher(
                *model_, fisher, 1, kLinearLayers[std::size_t(l)].name, squeeze, JobContext{});
            compareClose(map.at(1, l), analysis.preview.map().total(), 1e-9);
        }
    }

    // A run's map is its layer reports, whether measured here or read off a finished run.
    void runErrorCellsAreTheRunsReports() {
        GptqConfig gptq;
        gptq.wbits = 3;
        const ModelMap map = computeModelMap(*model_, request(MapMetric::RunError, gptq),
                                             calibration_, {}, JobContext{});
        const QuantizeResult run =
            quantizeModel(*model_, calibration_, gptq, kCalibration, {}, JobContext{});
        QCOMPARE(run.layers.size(), map.values.size());
        for (const LayerReport& layer : run.layers)
            QCOMPARE(map.at(layer.block, linearLayerIndex(layer.name)), layer.relativeOutputError);
        const ModelMap fromRun = modelMapOfRun(makeRunRecord(gptq, run, PerplexityResult{}, 0.0),
                                               map.blocks, kCalibration);
        QCOMPARE(fromRun.values, map.values);
    }

    // Each cell is the KL of the model with that layer alone quantized, which a model built by
    // hand from one block's calibration shows too; coarser quantization costs more KL everywhere.
    void soloKlCellsAreTheKlOfOneQuantizedLayer() {
        GptqConfig gptq2;
        gptq2.wbits = 2;
        GptqConfig gptq4;
        gptq4.wbits = 4;
        const ModelMap map2 = computeModelMap(*model_, request(MapMetric::SoloKl, gptq2),
                                              calibration_, evaluation_, JobContext{});
        const ModelMap map4 = computeModelMap(*model_, request(MapMetric::SoloKl, gptq4),
                                              calibration_, evaluation_, JobContext{});
        for (std::size_t i = 0; i < map2.values.size(); ++i) {
            QVERIFY(map4.values[i] > 0.0);
            QVERIFY2(map2.values[i] > map4.values[i], qPrintable(QString("cell %1: w2 %2, w4 %3")
                                                                     .arg(i)
                                                                     .arg(map2.values[i])
                                                                     .arg(map4.values[i])));
        }

        const int block = 2, layer = linearLayerIndex("down_proj");
        const BlockCalibration calibrated =
            calibrateBlock(*model_, calibration_, kCalibration, block, JobContext{});
        const TensorView& tensor = *model_->blocks[block].linearLayers()[std::size_t(layer)];
        const QuantizedLayer quantized =
            quantizeLayer(FloatTensor(tensor).matrix(),
                          {.hessian = &calibrated.hessianOf("down_proj")}, gptq2, JobContext{});
        const auto alone = withLinearLayer(*model_, block, layer, quantized.dequantize());
        const Transformer base(*model_);
        const PerplexityResult scored =
            evaluatePerplexity(Transformer(*alone), evaluation_,
                               {128, PerplexityProtocol::Documents}, JobContext{}, &base);
        compareClose(map2.at(block, layer), scored.comparison->klMean, 1e-9);

        // Quantizing every layer costs more than the worst layer alone.
        const QuantizedModel whole =
            quantizeInMemory(*model_, calibration_, gptq2, kCalibration, JobContext{});
        const double wholeKl =
            evaluatePerplexity(Transformer(*whole.model), evaluation_,
                               {128, PerplexityProtocol::Documents}, JobContext{}, &base)
                .comparison->klMean;
        double worst = 0.0, sum = 0.0;
        for (const double kl : map2.values) {
            worst = std::max(worst, kl);
            sum += kl;
        }
        qInfo("w2 KL: whole model %.4f, sum of layers alone %.4f, worst layer %.4f", wholeKl, sum,
              worst);
        QVERIFY(wholeKl > worst);
        QVERIFY(!(wholeKl == sum)); // measured, not summed
    }

    void soloKlNeedsEvaluationText() {
        QVERIFY_THROWS_EXCEPTION(Error,
                                 computeModelMap(*model_, request(MapMetric::SoloKl, GptqConfig{}),
                                                 calibration_, {}, JobContext{}));
    }

    void cancelStopsTheMap() {
        JobContext job;
        job.requestCancel();
        QVERIFY_THROWS_EXCEPTION(
            Cancelled, computeModelMap(*model_, request(MapMetric::ObsSensitivity, SpqrConfig{}),
                                       calibration_, {}, job));
    }

    // Unmeasured cells survive as null; every field comes back; damaged text is refused.
    void jsonRoundTrip() {
        ModelMap map{request(MapMetric::SoloKl, SqueezeConfig{}), 2,
                     std::vector<double>(2 * kLinearLayerCount, 0.25)};
        map.values[3] = std::numeric_limits<double>::quiet_NaN();
        map.values[9] = 1e-30;
        const ModelMap back = parseModelMapJson(modelMapJson(map), "map.json");
        QCOMPARE(back.request.metric, MapMetric::SoloKl);
        QCOMPARE(describe(back.request.config), describe(map.request.config));
        QCOMPARE(back.request.calibration.sequences, 8);
        QCOMPARE(back.request.scoring.context, 128);
        QCOMPARE(back.blocks, 2);
        QVERIFY(std::isnan(back.values[3]));
        QCOMPARE(back.values[9], 1e-30);
        QCOMPARE(back.values[0], 0.25);
        QVERIFY_THROWS_EXCEPTION(Error, parseModelMapJson("{\"metric\": \"obs\"}", "map.json"));
        QVERIFY_THROWS_EXCEPTION(Error, parseModelMapJson("[1, 2]", "map.json"));
        std::string text = modelMapJson(map);
        text.replace(text.find("\"solo-kl\""), 9, "\"speed\"");
        QVERIFY_THROWS_EXCEPTION(Error, parseModelMapJson(text, "map.json"));
    }

    // A map is found again only for the same model, settings and text; a damaged cache file is a
    // miss, and storing replaces it.
    void cacheKeysOnModelSettingsAndText() {
        QTemporaryDir dir;
        const ModelMapCache cache(dir.filePath("maps").toStdString());
        const ModelMapRequest obs = request(MapMetric::ObsSensitivity, SpqrConfig{});
        const std::string identity = modelMapIdentity(*model_, obs, calibration_, evaluation_);
        QVERIFY(!cache.find(identity));
        const ModelMap map{
            obs, model_->config.layerCount,
            std::vector<double>(std::size_t(model_->config.layerCount) * kLinearLayerCount, 0.5)};
        cache.store(identity, map);
        QCOMPARE(cache.find(identity)->values, map.values);

        SpqrConfig other;
        other.wbits = 4;
        QVERIFY(!cache.find(modelMapIdentity(*model_, request(MapMetric::ObsSensitivity, other),
                                             calibration_, evaluation_)));
        std::vector<std::int32_t> shorter(calibration_.begin(), calibration_.end() - 1);
        QVERIFY(!cache.find(modelMapIdentity(*model_, obs, shorter, evaluation_)));
        // The OBS form never reads the evaluation text, so it is not part of what the map is.
        QCOMPARE(modelMapIdentity(*model_, obs, calibration_, {}), identity);

        const auto files = test::entries(dir.filePath("maps").toStdString());
        QCOMPARE(files.size(), std::size_t(1));
        const std::filesystem::path file = dir.filePath("maps").toStdString() + "/" + files[0];
        test::writeBytes(file, test::readBytes(file).substr(0, 40));
        QVERIFY(!cache.find(identity));
        cache.store(identity, map);
        QVERIFY(cache.find(identity));
    }
};

QTEST_GUILESS_MAIN(TestModelMap)
#include "test_model_map.moc"
