#include "heatmap_view.h"
#include "max_pool.h"
#include "quant_settings_panel.h"
#include "sparse_tuner.h"
#include "synthetic_layer.h"
#include "test_data.h"
#include "threshold_tuner.h"

#include <QDoubleSpinBox>
#include <QSignalSpy>
#include <QSlider>
#include <QSpinBox>
#include <QStyleOptionSlider>
#include <QtTest>
#include <qcustomplot.h>

#include <algorithm>
#include <functional>
#include <random>

namespace {

// Where the heatmap draws matrix entry (row, col), in its plot's pixels.
QPoint pixelOf(const HeatmapView& view, int row, int col) {
    return QPoint(int(view.plot()->xAxis->coordToPixel(col)),
                  int(view.plot()->yAxis->coordToPixel(row)));
}

QPoint handleCentre(QSlider& slider) {
    QStyleOptionSlider option;
    option.initFrom(&slider);
    option.orientation = slider.orientation();
    option.minimum = slider.minimum();
    option.maximum = slider.maximum();
    option.sliderPosition = slider.sliderPosition();
    option.sliderValue = slider.value();
    return slider.style()
        ->subControlRect(QStyle::CC_Slider, &option, QStyle::SC_SliderHandle, &slider)
        .center();
}

} // namespace

class TestHeatmapView : public QObject {
    Q_OBJECT

private slots:
    void maxPoolMatchesBruteForce();
    void tileSizesKeepCellsOnScreen();
    void poolsLargeLayerAndStatesTileInReadout();
    void zoomingInShowsSingleWeights();
    void overlayFollowsDraggedSlider();
    void spinBoxAndSliderAgree();
    void fisherOverlayFollowsSensitiveShare();
};

void TestHeatmapView::maxPoolMatchesBruteForce() {
    std::mt19937 generator(7);
    std::uniform_real_distribution<float> uniform(-1.0f, 1.0f);
    quantlens::RowMatrix values(37, 53);
    for (Eigen::Index k = 0; k < values.size(); ++k)
        values.data()[k] = uniform(generator);
    values(5, 6) = values(5, 7) = 3.0f; // a tie: the first in row-major order wins

    struct Window {
        int firstRow, firstCol, rowCount, colCount, tileRows, tileCols;
    };
    for (const Window w :
         {Window{0, 0, 37, 53, 1, 1}, Window{0, 0, 37, 53, 4, 5}, Window{3, 2, 30, 41, 7, 3},
          Window{0, 0, 37, 53, 37, 53}, Window{36, 52, 1, 1, 2, 2}}) {
        const PooledTiles p =
            maxPool(values, w.firstRow, w.firstCol, w.rowCount, w.colCount, w.tileRows, w.tileCols);
        QCOMPARE(p.rows, (w.rowCount + w.tileRows - 1) / w.tileRows);
        QCOMPARE(p.cols, (w.colCount + w.tileCols - 1) / w.tileCols);
        for (int tr = 0; tr < p.rows; ++tr)
            for (int tc = 0; tc < p.cols; ++tc) {
                float best = -2.0f;
                std::int64_t at = -1;
                for (int r = w.firstRow + tr * w.tileRows;
                     r < std::min(w.firstRow + (tr + 1) * w.tileRows, w.firstRow + w.rowCount); ++r)
                    for (int c = w.firstCol + tc * w.tileCols;
                         c < std::min(w.firstCol + (tc + 1) * w.tileCols, w.firstCol + w.colCount);
                         ++c) {
                        // Tiles are scanned in row-major order, so the first strict maximum wins.
                        if (values(r, c) > best) {
                            best = values(r, c);
                            at = std::int64_t(r) * values.cols() + c;
                        }
                    }
                QCOMPARE(p.maxAt(tr, tc), best);
                QCOMPARE(p.argmaxAt(tr, tc), at);
            }
    }
    const PooledTiles whole = maxPool(values, 0, 0, 37, 53, 8, 8);
    QCOMPARE(whole.maxAt(0, 0), 3.0f);
    QCOMPARE(whole.argmaxAt(0, 0), std::int64_t(5 * 53 + 6));
}

void TestHeatmapView::tileSizesKeepCellsOnScreen() {
    QCOMPARE(tileSizeFor(64, 512), 1);
    QCOMPARE(tileSizeFor(512, 512), 1);
    QCOMPARE(tileSizeFor(513, 512), 2);
    QCOMPARE(tileSizeFor(4096, 512), 8);
    QCOMPARE(tileSizeFor(11008, 512), 22); // 11008 / 22 = 500.4 → 501 tiles
}

void TestHeatmapView::poolsLargeLayerAndStatesTileInReadout() {
    const auto layer = quantlens::test::syntheticLayer(1500, 1100, 1);
    HeatmapView view;
    view.resize(900, 700);
    view.show();
    QVERIFY(QTest::qWaitForWindowExposed(&view));
    view.setLayer(layer);
    QCOMPARE(view.tiles().tileRows, 3); // ⌈1500 / 512⌉
    QCOMPARE(view.tiles().tileCols, 3);
    QCOMPARE(view.tiles().rows, 500);
    QCOMPARE(view.tiles().cols, 367);

    // The heavy column's weights are the most sensitive: its tiles show the layer's maximum.
    const float peak = layer->preview.map().values.maxCoeff();
    view.plot()->replot(); // lays the axes out, so pixels map to cells
    QSignalSpy readouts(&view, &HeatmapView::readoutChanged);
    QTest::mouseMove(view.plot(), pixelOf(view, 700, 10));
    QCOMPARE(readouts.size(), 1);
    const QString text = view.readout();
    QVERIFY2(text.contains("(a 3 × 3 tile, max-pooled)"), qPrintable(text));
    QVERIFY2(text.startsWith("rows 699–701, columns 9–11"), qPrintable(text));
    QVERIFY(peak > 0.0f);

    view.plot()->replot();
    QVERIFY(view.plot()->grab().save(quantlens::test::artifactPath("heatmap_1500x1100.png")));
}

void TestHeatmapView::zoomingInShowsSingleWeights() {
    const auto layer = quantlens::test::syntheticLayer(1500, 1100, 2);
    HeatmapView view;
    view.resize(900, 700);
    view.show();
    QVERIFY(QTest::qWaitForWindowExposed(&view));
    view.setLayer(layer);
    view.plot()->xAxis->setRange(99.5, 199.5);  // columns 100…199
    view.plot()->yAxis->setRange(299.5, 379.5); // rows 300…379
    QTRY_COMPARE(view.tiles().tileRows, 1);
    QCOMPARE(view.tiles().tileCols, 1);
    QVERIFY(view.tiles().firstRow <= 300 && view.tiles().firstCol <= 100);

    QTest::mouseMove(view.plot(), pixelOf(view, 321, 150));
    const QString expected =
        QString("row 321, column 150: weight %1, sensitivity %2")
            .arg(QLocale().toString(double(layer->weights(321, 150)), 'g', 4),
                 QLocale().toString(double(layer->preview.map().values(321, 150)), 'g', 4));
    QVERIFY2(view.readout().startsWith(expected), qPrintable(view.readout() + " vs " + expected));

    QTest::mouseDClick(view.plot(), Qt::LeftButton, {}, QPoint(300, 300));
    QTRY_COMPARE(view.tiles().tileRows, 3);
}

// Dragging τ updates the overlay with every step; at one weight per cell the marked cells are
// exactly the preview's outliers.
void TestHeatmapView::overlayFollowsDraggedSlider() {
    const auto layer = quantlens::test::syntheticLayer(96, 128, 3, {quantlens::HeadAxis::Rows, 16});
    ThresholdTuner tuner;
    HeatmapView view;
    QObject::connect(&tuner, &ThresholdTuner::thresholdChanged, &view, &HeatmapView::setThreshold);
    tuner.resize(400, 60);
    view.resize(700, 600);
    tuner.show();
    view.show();
    QVERIFY(QTest::qWaitForWindowExposed(&tuner));
    tuner.setLayer(layer);
    view.setLayer(layer);
    tuner.setThreshold(0.5);
    QCOMPARE(view.threshold(), 0.5);
    QCOMPARE(view.markedTiles(), layer->preview.outlierCount(0.5));

    QSlider* slider = tuner.slider();
    QSignalSpy changes(&tuner, &ThresholdTuner::thresholdChanged);
    const QPoint start = handleCentre(*slider);
    QTest::mousePress(slider, Qt::LeftButton, {}, start);
    QVERIFY(slider->isSliderDown());
    std::int64_t previous = -1;
    int distinct = 0;
    for (int step = 1; step <= 8; ++step) {
        QMouseEvent move(QEvent::MouseMove, QPointF(start + QPoint(-step * 15, 0)),
                         slider->mapToGlobal(QPointF(start + QPoint(-step * 15, 0))), Qt::NoButton,
                         Qt::LeftButton, Qt::NoModifier);
        QApplication::sendEvent(slider, &move);
        QCOMPARE(changes.size(), step); // one update per drag step, before release
        const double tau = changes.last().first().toDouble();
        QCOMPARE(tau, tuner.threshold());
        QCOMPARE(view.markedTiles(), layer->preview.outlierCount(tau));
        QCOMPARE(tuner.outlierCount(), layer->preview.outlierCount(tau));
        QCOMPARE(tuner.bitsPerParameter(), layer->preview.bitsPerParameter(tau));
        distinct += tuner.outlierCount() != previous;
        previous = tuner.outlierCount();
    }
    QTest::mouseRelease(slider, Qt::LeftButton, {}, start + QPoint(-120, 0));
    QVERIFY(tuner.threshold() < 0.5);
    QVERIFY(distinct >= 4); // the count really moved with the slider

    // Independent count of the overlay mask, weight by weight.
    std::int64_t outliers = 0;
    for (int r = 0; r < 96; ++r)
        for (int c = 0; c < 128; ++c)
            outliers += layer->preview.isOutlier(r, c, tuner.threshold());
    QCOMPARE(view.markedTiles(), outliers);
    view.plot()->replot();
    QVERIFY(view.plot()->grab().save(quantlens::test::artifactPath("heatmap_overlay.png")));
}

void TestHeatmapView::spinBoxAndSliderAgree() {
    ThresholdTuner tuner;
    QSignalSpy changes(&tuner, &ThresholdTuner::thresholdChanged);
    tuner.setThreshold(1.0);
    QCOMPARE(changes.size(), 1);
    QCOMPARE(tuner.slider()->value(), ThresholdTuner::kSteps / 2); // 1 is mid-way in 0.01…100
    tuner.slider()->setValue(ThresholdTuner::kSteps / 4);
    QCOMPARE(changes.size(), 2);
    QCOMPARE(tuner.threshold(), 0.1);
    QCOMPARE(tuner.outlierCount(), std::int64_t(-1)); // no layer yet
}

// A Fisher-form layer: the title and colour bar name F·(w − q(w))², the sensitive share marks
// exactly its largest sensitivities, and the read-out counts what SqueezeLLM stores; τ, which
// belongs to the OBS form, leaves the overlay alone.
void TestHeatmapView::fisherOverlayFollowsSensitiveShare() {
    const auto layer =
        quantlens::test::syntheticFisherLayer(96, 128, 4, {quantlens::HeadAxis::Rows, 16});
    QuantSettingsPanel panel;
    HeatmapView view;
    QObject::connect(&panel, &QuantSettingsPanel::overlayThresholdChanged, &view,
                     &HeatmapView::setThreshold);
    view.resize(900, 600);
    view.show();
    QVERIFY(QTest::qWaitForWindowExposed(&view));
    panel.setConfig(quantlens::SqueezeConfig{.wbits = 3});
    panel.setLayer(layer);
    view.setLayer(layer);
    view.setThreshold(panel.overlayThreshold());
    const QString cells = QLocale().toString(12288);
    QVERIFY2(view.title().startsWith(
                 "block 0 · q_proj (96 × 128): SqueezeLLM Fisher sensitivity F·(w − q(w))², "
                 "3-bit LUT\ngreen: 0 of " +
                 cells + " cells"),
             qPrintable(view.title()));
    QCPColorScale* scale = nullptr;
    for (QCPLayoutElement* element : view.plot()->plotLayout()->elements(true))
        if (auto* s = qobject_cast<QCPColorScale*>(element)) scale = s;
    QVERIFY(scale);
    QCOMPARE(scale->axis()->label(), QString("F·(w − q(w))² (log)"));
    QCOMPARE(panel.tuner()->outlierCount(), std::int64_t(-1)); // τ has no Fisher read-out

    // 1% of 12,288 weights = 123: the 123 largest sensitivities, ranked here independently.
    std::vector<float> ranked(layer->preview.map().values.data(),
                              layer->preview.map().values.data() + 96 * 128);
    std::sort(ranked.begin(), ranked.end(), std::greater<>());
    QSignalSpy overlay(&panel, &QuantSettingsPanel::overlayThresholdChanged);
    panel.findChild<QDoubleSpinBox*>("sensitivePercent")->setValue(1.0);
    QCOMPARE(overlay.size(), 1);
    QCOMPARE(view.markedTiles(), std::int64_t(123));
    for (int r = 0; r < 96; ++r)
        for (int c = 0; c < 128; ++c)
            QCOMPARE(layer->preview.isOutlier(r, c, view.threshold()),
                     layer->preview.map().values(r, c) >= ranked[122]);
    QVERIFY2(view.title().endsWith("green: 123 of " + cells +
                                   " cells hold one of the 123 most sensitive weights"),
             qPrintable(view.title()));

    // + 0.5% by magnitude (61): 3 + 16·2³/128 bits and 32 per sparse value (the paper's count).
    panel.findChild<QDoubleSpinBox*>("sparsePercent")->setValue(0.5);
    SparseTuner* sparse = panel.sparseTuner();
    QCOMPARE(sparse->sparseCount(), std::int64_t(184));
    QCOMPARE(sparse->bitsPerParameter(), 4.0 + 32.0 * 184 / 12288.0);
    QCOMPARE(view.markedTiles(), std::int64_t(123)); // the magnitude share is not a sensitivity
    panel.findChild<QSpinBox*>("wbits")->setValue(4);
    QCOMPARE(sparse->bitsPerParameter(), 4.0 + 16.0 * 16 / 128 + 32.0 * 184 / 12288.0);

    const int marked = int(view.markedTiles());
    panel.tuner()->setThreshold(0.01);
    QCOMPARE(view.markedTiles(), std::int64_t(marked));
    QCOMPARE(overlay.size(), 2); // the two shares, not τ

    Eigen::Index row = 0, col = 0;
    layer->preview.map().values.maxCoeff(&row, &col);
    view.plot()->replot(); // lays the plot out for the two-line title before mapping pixels
    QTest::mouseMove(view.plot(), pixelOf(view, int(row), int(col)));
    QVERIFY2(view.readout().endsWith(", among the most sensitive"), qPrintable(view.readout()));
    QVERIFY(view.grab().save(quantlens::test::artifactPath("heatmap_fisher.png")));
    const auto obs = quantlens::test::syntheticLayer(96, 128, 3);
    view.setLayer(obs);
    QVERIFY(view.readout().isEmpty()); // it described the previous layer

    // Back on an OBS-form layer, τ drives the overlay and the shares do not.
    panel.setLayer(obs);
    overlay.clear();
    panel.findChild<QDoubleSpinBox*>("sensitivePercent")->setValue(2.0);
    QCOMPARE(overlay.size(), 0);
    panel.tuner()->setThreshold(0.5);
    QCOMPARE(overlay.size(), 1);
    QCOMPARE(overlay.first().first().toDouble(), 0.5);
    QCOMPARE(panel.overlayThreshold(), 0.5);
}

QTEST_MAIN(TestHeatmapView)
#include "test_heatmap_view.moc"
