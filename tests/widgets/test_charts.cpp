#include "layer_summary_view.h"
#include "model_map_view.h"
#include "outlier_counts.h"
#include "outlier_pattern_view.h"
#include "pareto_front.h"
#include "pareto_view.h"
#include "run_description.h"
#include "synthetic_layer.h"
#include "test_data.h"

#include <QComboBox>
#include <QSignalSpy>
#include <QtTest>
#include <qcustomplot.h>

#include <cmath>
#include <numeric>
#include <random>

namespace {

std::vector<std::size_t> bruteForceFront(const std::vector<ParetoPoint>& points) {
    std::vector<std::size_t> front;
    for (std::size_t i = 0; i < points.size(); ++i) {
        bool dominated = std::isnan(points[i].bits) || std::isnan(points[i].cost);
        for (std::size_t j = 0; j < points.size() && !dominated; ++j)
            dominated = points[j].bits <= points[i].bits && points[j].cost <= points[i].cost &&
                        (points[j].bits < points[i].bits || points[j].cost < points[i].cost);
        if (!dominated) front.push_back(i);
    }
    return front;
}

quantlens::RunRecord run(quantlens::QuantConfig config, double bits, double perplexity) {
    quantlens::RunRecord r;
    r.config = config;
    r.bitsPerParameter = bits;
    r.paperBitsPerParameter = bits;
    r.perplexity = perplexity;
    return r;
}

} // namespace

class TestCharts : public QObject {
    Q_OBJECT

private slots:
    void initTestCase() { QLocale::setDefault(QLocale(QLocale::English, QLocale::UnitedStates)); }
    void paretoFrontMatchesBruteForce();
    void paretoFrontKeepsTiesAndSkipsNaN();
    void paretoViewHoversAndClicks();
    void paretoViewPlotsKlOrAgreementAndMarksBudgets();
    void modelMapIsReadableAtEightyBlocks();
    void outlierCountsMatchMask();
    void outlierPatternViewShowsCounts();
    void layerSummaryShowsEveryLayer();
};

void TestCharts::paretoFrontMatchesBruteForce() {
    std::mt19937 generator(11);
    std::uniform_int_distribution<int> coarse(0, 12); // repeats coordinates, so ties are common
    for (int trial = 0; trial < 200; ++trial) {
        std::vector<ParetoPoint> points(std::size_t(1 + trial % 17));
        for (ParetoPoint& p : points)
            p = {2.0 + coarse(generator) * 0.25, 5.0 + coarse(generator) * 0.5};
        std::vector<std::size_t> front = paretoFront(points);
        std::vector<std::size_t> expected = bruteForceFront(points);
        for (std::size_t k = 1; k < front.size(); ++k) // by bits, perplexity falling
            QVERIFY(points[front[k - 1]].bits <= points[front[k]].bits);
        std::sort(front.begin(), front.end());
        QCOMPARE(front, expected);
    }
}

void TestCharts::paretoFrontKeepsTiesAndSkipsNaN() {
    const double nan = std::numeric_limits<double>::quiet_NaN();
    const std::vector<ParetoPoint> points{{4.0, 6.0}, {3.0, 7.0}, {4.0, 6.0}, {3.5, 8.0},
                                          {nan, 1.0}, {5.0, 5.5}, {5.0, 5.9}};
    QCOMPARE(paretoFront(points), (std::vector<std::size_t>{1, 0, 2, 5}));
}

void TestCharts::paretoViewHoversAndClicks() {
    ParetoView view;
    view.resize(800, 560);
    view.show();
    QVERIFY(QTest::qWaitForWindowExposed(&view));
    quantlens::SpqrConfig spqr;
    spqr.outlierThreshold = 0.35;
    const std::vector<quantlens::RunRecord> runs{
        run(quantlens::RtnConfig{3, 16}, 5.0, 9.0), run(quantlens::GptqConfig{}, 4.25, 7.0),
        run(spqr, 3.6, 6.1), run(quantlens::RtnConfig{4, 128}, 4.5, 8.0)};
    view.setRuns(runs);
    view.setBaseline(5.46);
    QCOMPARE(view.front(), (std::vector<std::size_t>{2}));
    QCOMPARE(view.plot()->graphCount(), 4); // RTN, GPTQ, SpQR and the front
    view.plot()->replot();
    // The legend sits under the plot, where it cannot hide a point.
    QCOMPARE(view.plot()->legend->itemCount(), 4);
    QVERIFY(view.plot()->legend->outerRect().top() >=
            view.plot()->axisRect()->outerRect().bottom());

    QSignalSpy clicked(&view, &ParetoView::runClicked);
    QTest::mouseMove(view.plot(), view.pixelOf(2).toPoint());
    QVERIFY2(view.readout().startsWith("spqr w3 g16 qq3 b2=16 tau=0.35"),
             qPrintable(view.readout()));
    QVERIFY(view.readout().contains("perplexity 6.1000"));
    QTest::mouseClick(view.plot(), Qt::LeftButton, {}, view.pixelOf(1).toPoint());
    QCOMPARE(clicked.size(), 1);
    QCOMPARE(clicked.first().first().toInt(), 1);
    QTest::mouseClick(view.plot(), Qt::LeftButton, {}, QPoint(5, 5)); // nowhere near a point
    QCOMPARE(clicked.size(), 1);

    const QStringList csv = view.csv().split('\n', Qt::SkipEmptyParts);
    QCOMPARE(csv.size(), 6); // header, four runs, the baseline
    QVERIFY(csv[3].startsWith("spqr,") && csv[3].endsWith(",1"));
    QVERIFY(csv[1].endsWith(",0"));
    QVERIFY(view.plot()->grab().save(quantlens::test::artifactPath("pareto_synthetic.png")));
}

// The same runs on the KL and the agreement axes: each axis has its own front (higher agreement
// is better), budget runs get their own diamond series, and the CSV carries every figure.
void TestCharts::paretoViewPlotsKlOrAgreementAndMarksBudgets() {
    ParetoView view;
    view.resize(800, 560);
    view.show();
    QVERIFY(QTest::qWaitForWindowExposed(&view));
    std::vector<quantlens::RunRecord> runs{run(quantlens::GptqConfig{3, 128}, 3.3, 9.0),
                                           run(quantlens::GptqConfig{4, 128}, 4.3, 6.0),
                                           run(quantlens::GptqConfig{}, 4.0, 7.0)};
    runs[0].comparison.klMean = 0.30;
    runs[1].comparison.klMean = 0.05;
    runs[2].comparison.klMean = 0.02; // the budget: best KL at fewer bits
    runs[0].comparison.top1Agreement = 0.70;
    runs[1].comparison.top1Agreement = 0.90;
    runs[2].comparison.top1Agreement = 0.80;
    runs[2].targetBits = 4.0;
    view.setRuns(runs);
    QCOMPARE(view.front(), (std::vector<std::size_t>{0, 2, 1})); // perplexity: all on the front
    QCOMPARE(view.plot()->graphCount(), 3);                      // GPTQ, GPTQ bit budget, the front
    QCOMPARE(view.plot()->graph(1)->name(), QString("GPTQ bit budget"));
    QCOMPARE(view.plot()->graph(1)->scatterStyle().shape(), QCPScatterStyle::ssDiamond);

    auto* choice = view.findChild<QComboBox*>("qualityAxis");
    QVERIFY(choice);
    choice->setCurrentIndex(choice->findData(int(RunQuality::KlMean)));
    QCOMPARE(view.quality(), RunQuality::KlMean);
    QCOMPARE(view.front(), (std::vector<std::size_t>{0, 2})); // 4.3 bits buy no better KL
    QVERIFY(view.plot()->yAxis->label().startsWith("KL"));
    view.plot()->replot();
    QTest::mouseMove(view.plot(), view.pixelOf(2).toPoint());
    QVERIFY2(view.readout().startsWith("GPTQ budget 4.00 bits"), qPrintable(view.readout()));

    view.setQuality(RunQuality::Top1Agreement);
    QCOMPARE(choice->currentData().toInt(), int(RunQuality::Top1Agreement));
    QCOMPARE(view.front(), (std::vector<std::size_t>{0, 2, 1}));
    view.plot()->replot();
    QVERIFY(view.pixelOf(1).y() < view.pixelOf(0).y()); // higher agreement drawn higher

    const QStringList csv = view.csv().split('\n', Qt::SkipEmptyParts);
    QVERIFY(csv[0].contains(",kl_mean,") && csv[0].contains(",top1_agreement,") &&
            csv[0].contains(",target_bits,"));
    QVERIFY2(csv[3].contains(",0.02,") && csv[3].contains(",4,"), qPrintable(csv[3]));
    QVERIFY(view.plot()->grab().save(quantlens::test::artifactPath("pareto_agreement.png")));
}

// A 70B-deep map (80 blocks) in an ordinary window: every cell a few pixels tall, block labels
// thinned so they do not overlap, hover and click still exact at the last block, blank cells for
// what was not measured.
void TestCharts::modelMapIsReadableAtEightyBlocks() {
    ModelMapView view;
    view.resize(900, 800);
    view.show();
    QVERIFY(QTest::qWaitForWindowExposed(&view));
    quantlens::ModelMap map;
    map.request.metric = quantlens::MapMetric::FisherSensitivity;
    map.request.config = quantlens::SqueezeConfig{};
    map.blocks = 80;
    for (int b = 0; b < 80; ++b)
        for (int l = 0; l < quantlens::kLinearLayerCount; ++l)
            map.values.push_back(std::exp(0.1 * b - 0.5 * l)); // five decades
    map.values[5] = std::numeric_limits<double>::quiet_NaN();
    view.setMap(map);
    view.plot()->replot();
    const double cellHeight = std::abs(view.pixelOf(1, 0).y() - view.pixelOf(0, 0).y());
    QVERIFY2(cellHeight >= 6.0, qPrintable(QString::number(cellHeight)));
    const QVector<double> ticks = view.plot()->yAxis->tickVector();
    qInfo("cell %.1f px, %lld block labels", cellHeight, qlonglong(ticks.size()));
    QVERIFY(ticks.size() >= 8 && ticks.size() <= 20);
    QVERIFY((ticks.size() - 1) * cellHeight * (ticks[1] - ticks[0]) >=
            (ticks.size() - 1) * view.fontMetrics().height()); // labels apart
    QSignalSpy clicked(&view, &ModelMapView::layerClicked);
    QTest::mouseMove(view.plot(), view.pixelOf(79, 0).toPoint());
    QVERIFY2(view.readout().startsWith("block 79 · q_proj: ") &&
                 view.readout().contains("rank 1 of 559"),
             qPrintable(view.readout()));
    QTest::mouseMove(view.plot(), view.pixelOf(0, 5).toPoint());
    QVERIFY2(view.readout().contains("not measured"), qPrintable(view.readout()));
    QTest::mouseClick(view.plot(), Qt::LeftButton, {}, view.pixelOf(40, 2).toPoint());
    QCOMPARE(clicked.size(), 1);
    QCOMPARE(clicked.first()[0].toInt(), 40);
    QCOMPARE(clicked.first()[1].toString(), QString("v_proj"));
    QCOMPARE(view.csv().split('\n', Qt::SkipEmptyParts).size(), 1 + 80 * 7);
    QVERIFY(view.grab().save(quantlens::test::artifactPath("model_map_80_blocks.png")));
}

void TestCharts::outlierCountsMatchMask() {
    const auto layer =
        quantlens::test::syntheticLayer(48, 64, 5, {quantlens::HeadAxis::Columns, 16});
    for (const double tau : {0.05, 0.3, 2.0}) {
        const OutlierCounts counts = countOutliers(layer->preview, tau);
        QCOMPARE(counts.rows.size(), std::size_t(48));
        QCOMPARE(counts.columns.size(), std::size_t(64));
        QCOMPARE(counts.heads.size(), std::size_t(4));
        const std::int64_t total = layer->preview.outlierCount(tau);
        QCOMPARE(std::accumulate(counts.rows.begin(), counts.rows.end(), std::int64_t{0}), total);
        QCOMPARE(std::accumulate(counts.heads.begin(), counts.heads.end(), std::int64_t{0}), total);
        for (int c = 0; c < 64; ++c) {
            std::int64_t column = 0;
            for (int r = 0; r < 48; ++r)
                column += layer->preview.isOutlier(r, c, tau);
            QCOMPARE(counts.columns[std::size_t(c)], column);
        }
    }
    // The input with 10× larger activations (64 / 5 = 12) has the largest H_jj, so the smallest
    // [H⁻¹]_jj: its column holds the most outliers.
    const OutlierCounts counts = countOutliers(layer->preview, 0.3);
    QCOMPARE(std::max_element(counts.columns.begin(), counts.columns.end()) -
                 counts.columns.begin(),
             std::ptrdiff_t(12));
}

void TestCharts::outlierPatternViewShowsCounts() {
    const auto layer = quantlens::test::syntheticLayer(64, 96, 6, {quantlens::HeadAxis::Rows, 8});
    OutlierPatternView view;
    view.setLayer(layer);
    view.setThreshold(0.2);
    QVERIFY(view.counts().rows.empty()); // hidden: nothing counted yet
    view.resize(800, 700);
    view.show();
    QVERIFY(QTest::qWaitForWindowExposed(&view));
    QCOMPARE(view.counts().rows.size(), std::size_t(64));
    QCOMPARE(view.counts().heads.size(), std::size_t(8));
    QCOMPARE(view.plot()->plottableCount(), 3);
    double drawn = 0.0;
    auto* rows = qobject_cast<QCPBars*>(view.plot()->plottable(0));
    QVERIFY(rows);
    for (auto it = rows->data()->constBegin(); it != rows->data()->constEnd(); ++it)
        drawn += it->value;
    QCOMPARE(std::int64_t(drawn), layer->preview.outlierCount(0.2));
    view.setThreshold(1.0); // visible: counted at once
    QCOMPARE(std::accumulate(view.counts().columns.begin(), view.counts().columns.end(),
                             std::int64_t{0}),
             layer->preview.outlierCount(1.0));
    QVERIFY(
        view.plot()->grab().save(quantlens::test::artifactPath("outlier_patterns_synthetic.png")));
}

void TestCharts::layerSummaryShowsEveryLayer() {
    quantlens::RunRecord r = run(quantlens::GptqConfig{}, 4.25, 7.0);
    for (int b = 0; b < 2; ++b)
        for (const char* name :
             {"q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"})
            r.layers.push_back({b, name, 64, 64, 0, 4.25, 4.25, 0,
                                1e-3 * (1 + b) * (1 + std::strlen(name)), quantlens::GptqConfig{}});
    r.layers[3].relativeOutputError = std::numeric_limits<double>::quiet_NaN(); // not drawable
    LayerSummaryView view;
    view.resize(800, 500);
    view.setRun(r);
    view.plot()->replot();
    QVERIFY(view.plot()->legend->outerRect().top() >=
            view.plot()->axisRect()->outerRect().bottom());
    QCOMPARE(view.barCount(), 13);
    QCOMPARE(view.csv().count('\n'), 15);

    // The legend names the method whose colour the bars have, and follows the run shown.
    const auto legendText = [&] {
        QStringList names;
        for (int i = 0; i < view.plot()->legend->itemCount(); ++i)
            if (auto* item = qobject_cast<QCPPlottableLegendItem*>(view.plot()->legend->item(i)))
                names << item->plottable()->name();
        return names;
    };
    QVERIFY(view.plot()->legend->visible());
    QCOMPARE(legendText(), QStringList({"GPTQ"}));
    QCOMPARE(view.barColour(), methodColour(quantlens::GptqConfig{}));
    r.config = quantlens::SqueezeConfig{};
    view.setRun(r);
    QCOMPARE(legendText(), QStringList({"SqueezeLLM"}));
    QCOMPARE(view.barColour(), methodColour(quantlens::SqueezeConfig{}));
    QVERIFY(view.barColour() != methodColour(quantlens::GptqConfig{}));
}

QTEST_MAIN(TestCharts)
#include "test_charts.moc"
