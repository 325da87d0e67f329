#include "device_picker.h"
#include "export_dialog.h"
#include "heatmap_view.h"
#include "jobs_panel.h"
#include "layer_summary_view.h"
#include "main_window.h"
#include "model_map_view.h"
#include "model_summary_view.h"
#include "outlier_pattern_view.h"
#include "pareto_view.h"
#include "quant_settings_panel.h"
#include "recording_backend.h"
#include "run_description.h"
#include "sparse_tuner.h"
#include "test_data.h"
#include "threshold_tuner.h"

#include "quantlens/core/float_tensor.h"
#include "quantlens/core/parallel.h"
#include "quantlens/formats/model_loading.h"

#include <QCheckBox>
#include <QComboBox>
#include <QDialogButtonBox>
#include <QDoubleSpinBox>
#include <QElapsedTimer>
#include <QMap>
#include <QMessageBox>
#include <QPushButton>
#include <QSet>
#include <QSignalSpy>
#include <QSlider>
#include <QStandardItemModel>
#include <QStandardPaths>
#include <QTabWidget>
#include <QTemporaryDir>
#include <QTimer>
#include <QtTest>
#include <qcustomplot.h>

#include <map>
#include <set>

namespace {

QString dataDir(const std::string& relative) {
    return QDir::cleanPath(
        QFileInfo(QString::fromStdString(quantlens::test::dataPath(relative).string()))
            .absoluteFilePath());
}

// Saves what the window shows once its queued plot updates have been painted.
void screenshot(QWidget& window, const QString& name) {
    QTest::qWait(100);
    QVERIFY(window.grab().save(quantlens::test::artifactPath(name)));
}

// Fails with the error the window showed, if any.
bool waitFor(QSignalSpy& done, QSignalSpy& failed, int count, int timeoutMs) {
    const bool ended =
        QTest::qWaitFor([&] { return done.size() >= count || !failed.isEmpty(); }, timeoutMs);
    if (!ended) qWarning("nothing happened within %d ms", timeoutMs);
    if (!failed.isEmpty())
        qWarning("errorShown: %s", qPrintable(failed.first().first().toString()));
    return ended && failed.isEmpty();
}

// Shows `window` and opens stories260K in it; false (the error shown) when it did not open.
bool showWithStories(MainWindow& window, QSignalSpy& shown, QSignalSpy& failed) {
    window.resize(1400, 900);
    window.show();
    if (!QTest::qWaitForWindowExposed(&window)) return false;
    window.openModel(dataDir("stories260K-hf"));
    return waitFor(shown, failed, 1, 20'000);
}

QTreeWidgetItem* linearLayer(ModelSummaryView& tree, int block, const QString& name) {
    for (int i = 0; i < tree.topLevelItemCount(); ++i) {
        QTreeWidgetItem* item = tree.topLevelItem(i);
        if (item->text(0) != QString("block %1").arg(block)) continue;
        for (int j = 0; j < item->childCount(); ++j)
            if (item->child(j)->text(0) == name) return item->child(j);
    }
    return nullptr;
}

// Calibration and scoring on the excerpt, as the reference table's ctx-128 row measures it.
DataSettings excerptSettings() {
    const QString text = dataDir("text/tinystories-valid-excerpt.txt");
    return {text, 8, 128, text, 128};
}

// stories260K opened by `engine`, or null when it did not open within 20 s.
EngineController::ModelPtr openedModel(EngineController& engine) {
    QSignalSpy opened(&engine, &EngineController::modelOpened);
    engine.openModel(dataDir("stories260K-hf"));
    if (!opened.wait(20'000)) return nullptr;
    return opened.first().first().value<EngineController::ModelPtr>();
}

} // namespace

class TestStudioFlow : public QObject {
    Q_OBJECT

private slots:
    void initTestCase();
    void wholeFlow();
    void mapAndBudgetFlow();
    void devicesAreChosenAndAFailingOneOffersTheCpu();
    void cancelStopsWithinASecond();
    void analysesAreCoalesced();
    void engineErrorsAreMessages();
};

void TestStudioFlow::initTestCase() {
    QStandardPaths::setTestModeEnabled(true);
    QCoreApplication::setOrganizationName("Quantlens");
    QCoreApplication::setApplicationName("test_studio_flow");
    QSettings().clear();
    QLocale::setDefault(QLocale(QLocale::English, QLocale::UnitedStates));
}

// The Jobs dock lists the devices (free memory, kinds missing greyed with the reason), restores
// the one chosen last time, and jobs run there, their notices in the log; a device that fails ends
// its job with the reason, the CPU is offered, and the job then runs there while the studio goes
// on.
void TestStudioFlow::devicesAreChosenAndAFailingOneOffersTheCpu() {
    QUANTLENS_REQUIRE_DATA("stories260K-hf");
    QUANTLENS_REQUIRE_DATA("text/tinystories-valid-excerpt.txt");
    QSettings().setValue("engine/device", "test:0");
    quantlens::BackendRegistry backends;
    const auto provider = std::make_shared<quantlens::test::TestDeviceProvider>(true);
    backends.add(provider);
    backends.addMissing("cuda", "this build has no CUDA backend");
    MainWindow window(std::move(backends));
    QSignalSpy shown(&window, &MainWindow::modelShown);
    QSignalSpy failed(&window, &MainWindow::errorShown);
    QVERIFY(showWithStories(window, shown, failed));
    auto* settings = window.findChild<QuantSettingsPanel*>();
    auto* jobs = window.findChild<JobsPanel*>();
    QVERIFY(settings && jobs);
    QComboBox* combo = jobs->devices()->combo();
    QTRY_COMPARE(combo->count(), 4);
    QCOMPARE(jobs->devices()->currentDevice(), QString("test:0"));
    QCOMPARE(window.engine().device(), QString("test:0"));
    QCOMPARE(combo->itemText(0), QString("CPU — %1 threads").arg(quantlens::threadCount()));
    QCOMPARE(combo->itemText(1), QString("test:0 — Test device, 6.0 GiB free of 8.0 GiB"));
    const auto* items = qobject_cast<QStandardItemModel*>(combo->model());
    QVERIFY(items->item(2)->isEnabled());
    QVERIFY(!items->item(3)->isEnabled());
    QCOMPARE(combo->itemText(3), QString("CUDA — unavailable"));
    QCOMPARE(combo->itemData(3, Qt::ToolTipRole).toString(),
             QString("this build has no CUDA backend"));

    settings->setData(excerptSettings());
    settings->setConfig(quantlens::GptqConfig{.wbits = 4});
    QSignalSpy runShown(&window, &MainWindow::runShown);
    auto* quantize = settings->findChild<QPushButton*>("quantize");
    QTest::mouseClick(quantize, Qt::LeftButton);
    QVERIFY(waitFor(runShown, failed, 1, 120'000));
    QCOMPARE(window.runs().back().device, std::string("test:0 test device"));
    QVERIFY(provider->device(0)->calls() > 0);
    QVERIFY2(jobs->logText().contains(": running on test:0 test device"),
             qPrintable(jobs->logText()));
    // What the device did not run itself, the log says (the test device's forward pass).
    QVERIFY2(jobs->logText().contains(QString(": test:0: ") +
                                      quantlens::test::RecordingBackend::kForwardNotice),
             qPrintable(jobs->logText()));

    // The user picks test:1, which fails at its first step.
    QTest::keyClick(combo, Qt::Key_Down);
    QCOMPARE(jobs->devices()->currentDevice(), QString("test:1"));
    QCOMPARE(window.engine().device(), QString("test:1"));
    QCOMPARE(QSettings().value("engine/device").toString(), QString("test:1"));
    QString asked;
    window.setConfirmation([&](QMessageBox& box) {
        asked = box.text();
        return QMessageBox::YesToAll;
    });
    QTest::mouseClick(quantize, Qt::LeftButton);
    QVERIFY(waitFor(runShown, failed, 2, 120'000));
    QCOMPARE(asked, QString("A job failed on test:1: test:1: out of device memory (a test device "
                            "that always fails)"));
    QVERIFY(provider->device(1)->calls() > 0);
    QCOMPARE(window.runs().back().device, std::string("cpu"));
    QVERIFY(std::abs(window.runs().back().perplexity - window.runs().front().perplexity) <=
            1e-9 * window.runs().front().perplexity);
    QCOMPARE(jobs->devices()->currentDevice(), QString("cpu"));
    QCOMPARE(window.engine().device(), QString("cpu"));
    QCOMPARE(QSettings().value("engine/device").toString(), QString("cpu"));
    QVERIFY2(jobs->logText().contains("failed: test:1: out of device memory"),
             qPrintable(jobs->logText()));
    QVERIFY2(jobs->logText().contains("(on the CPU): running on cpu"), qPrintable(jobs->logText()));
    QVERIFY(!window.engine().isBusy());
    QSettings().remove("engine/device");
}

// Map the whole model, hover and click a cell to open its layer, map it again from the cache; run
// a bit budget and see it in the tree, on the chart and as a run-error map.
void TestStudioFlow::mapAndBudgetFlow() {
    QUANTLENS_REQUIRE_DATA("stories260K-hf");
    QUANTLENS_REQUIRE_DATA("text/tinystories-valid-excerpt.txt");
    MainWindow window;
    QDir(window.engine().mapCacheDirectory()).removeRecursively();
    QSignalSpy shown(&window, &MainWindow::modelShown);
    QSignalSpy failed(&window, &MainWindow::errorShown);
    QVERIFY(showWithStories(window, shown, failed));
    auto* settings = window.findChild<QuantSettingsPanel*>();
    auto* tree = window.findChild<ModelSummaryView*>();
    auto* tabs = window.findChild<QTabWidget*>("views");
    auto* map = window.findChild<ModelMapView*>();
    auto* heatmap = window.findChild<HeatmapView*>();
    auto* pareto = window.findChild<ParetoView*>();
    QVERIFY(settings && tree && tabs && map && heatmap && pareto);
    settings->setData(excerptSettings());
    settings->setConfig(quantlens::SpqrConfig{});

    tabs->setCurrentWidget(map);
    QSignalSpy mapped(&window, &MainWindow::modelMapShown);
    QTest::mouseClick(map->findChild<QPushButton*>("mapButton"), Qt::LeftButton);
    QVERIFY(waitFor(mapped, failed, 1, 60'000));
    QVERIFY(map->map().has_value());
    QCOMPARE(map->map()->request.metric, quantlens::MapMetric::ObsSensitivity);
    QCOMPARE(map->map()->blocks, 5);
    for (const double value : map->map()->values)
        QVERIFY(value > 0.0);
    QVERIFY2(map->title().startsWith("OBS sensitivity"), qPrintable(map->title()));
    QCOMPARE(QDir(window.engine().mapCacheDirectory()).entryList(QDir::Files).size(), 1);
    map->plot()->replot();
    QTest::mouseMove(map->plot(), map->pixelOf(3, 6).toPoint());
    QVERIFY2(map->readout().startsWith("block 3 · down_proj: ") && map->readout().contains("rank"),
             qPrintable(map->readout()));
    screenshot(window, "studio_model_map.png");

    // A click opens that layer's heatmap.
    QSignalSpy layerShown(&window, &MainWindow::layerShown);
    QTest::mouseClick(map->plot(), Qt::LeftButton, {}, map->pixelOf(2, 4).toPoint());
    QVERIFY(waitFor(layerShown, failed, 1, 30'000));
    QCOMPARE(heatmap->layer()->block, 2);
    QCOMPARE(heatmap->layer()->layer, std::string("gate_proj"));
    QCOMPARE(tabs->currentWidget(), heatmap);
    // The map's cell is the sum of the heatmap's sensitivities.
    QVERIFY(std::abs(map->map()->at(2, 4) - heatmap->layer()->preview.map().total()) <=
            1e-6 * map->map()->at(2, 4));

    // The same map again comes from the cache, and is the same.
    const std::vector<double> first = map->map()->values;
    QTest::mouseClick(map->findChild<QPushButton*>("mapButton"), Qt::LeftButton);
    QVERIFY(waitFor(mapped, failed, 2, 60'000));
    QCOMPARE(map->map()->values, first);

    // A GPTQ bit budget of 3.5 bits: within it, each layer its own settings in the tree.
    settings->setConfig(quantlens::GptqConfig{});
    settings->findChild<QCheckBox*>("budgetOn")->setChecked(true);
    settings->findChild<QDoubleSpinBox*>("targetBits")->setValue(3.5);
    QCOMPARE(settings->targetBits(), std::optional<double>(3.5));
    QSignalSpy runShown(&window, &MainWindow::runShown);
    QTest::mouseClick(settings->findChild<QPushButton*>("quantize"), Qt::LeftButton);
    QVERIFY(waitFor(runShown, failed, 1, 180'000));
    const quantlens::RunRecord& budget = window.runs().back();
    QCOMPARE(budget.targetBits, std::optional<double>(3.5));
    QVERIFY(budget.paperBitsPerParameter <= 3.5);
    QVERIFY(std::isfinite(budget.comparison.klP99) && budget.comparison.top1Agreement > 0.5);
    std::set<QString> layerSettings;
    for (int b = 0; b < 5; ++b)
        for (const char* name : {"q_proj", "down_proj"}) {
            QTreeWidgetItem* item = linearLayer(*tree, b, name);
            QVERIFY(item);
            QVERIFY2(item->text(ModelSummaryView::MethodColumn).startsWith("gptq w"),
                     qPrintable(item->text(ModelSummaryView::MethodColumn)));
            layerSettings.insert(item->text(ModelSummaryView::MethodColumn));
        }
    QVERIFY(layerSettings.size() > 1);
    bool marked = false;
    for (int g = 0; g < pareto->plot()->graphCount(); ++g)
        marked |= pareto->plot()->graph(g)->name() == "GPTQ bit budget";
    QVERIFY(marked);

    // The run's errors as a map, without a job.
    auto* metric = map->findChild<QComboBox*>("mapMetric");
    metric->setCurrentIndex(metric->findData(int(quantlens::MapMetric::RunError)));
    QTest::mouseClick(map->findChild<QPushButton*>("mapButton"), Qt::LeftButton);
    QCOMPARE(mapped.size(), 3);
    for (const quantlens::LayerReport& layer : budget.layers)
        QCOMPARE(map->map()->at(layer.block, quantlens::linearLayerIndex(layer.name)),
                 layer.relativeOutputError);
    QVERIFY(failed.isEmpty());
}

// Open, analyse a layer and drag τ, analyse it for SqueezeLLM and set its sparse shares, sweep
// three methods, see three points in three colours, export plots, save and reopen the session,
// export runs and reopen the exports.
void TestStudioFlow::wholeFlow() {
    QUANTLENS_REQUIRE_DATA("stories260K-hf");
    QUANTLENS_REQUIRE_DATA("text/tinystories-valid-excerpt.txt");
    QTemporaryDir scratch;
    MainWindow window;
    QSignalSpy shown(&window, &MainWindow::modelShown);
    QSignalSpy failed(&window, &MainWindow::errorShown);
    QVERIFY(showWithStories(window, shown, failed));

    auto* settings = window.findChild<QuantSettingsPanel*>();
    auto* tree = window.findChild<ModelSummaryView*>();
    auto* tabs = window.findChild<QTabWidget*>("views");
    auto* heatmap = window.findChild<HeatmapView*>();
    auto* pareto = window.findChild<ParetoView*>();
    QVERIFY(settings && tree && tabs && heatmap && pareto);
    settings->setData(excerptSettings());

    // Analyse block 1's o_proj and drag the threshold.
    QSignalSpy layerShown(&window, &MainWindow::layerShown);
    QTreeWidgetItem* item = linearLayer(*tree, 1, "o_proj");
    QVERIFY(item);
    tree->setCurrentItem(item);
    QTest::mouseClick(settings->findChild<QPushButton*>("analyse"), Qt::LeftButton);
    QVERIFY(waitFor(layerShown, failed, 1, 30'000));
    QCOMPARE(heatmap->layer()->block, 1);
    QCOMPARE(heatmap->layer()->layer, std::string("o_proj"));
    QCOMPARE(heatmap->tiles().tileRows, 1);
    QCOMPARE(heatmap->tiles().rows, 64);
    const quantlens::OutlierPreview& preview = heatmap->layer()->preview;
    ThresholdTuner* tuner = settings->tuner();
    for (const int position : {700, 500, 300}) {
        tuner->slider()->setSliderDown(true); // as while dragging
        tuner->slider()->setSliderPosition(position);
        QCOMPARE(heatmap->markedTiles(), preview.outlierCount(tuner->threshold()));
        QCOMPARE(tuner->outlierCount(), preview.outlierCount(tuner->threshold()));
    }
    tuner->slider()->setSliderDown(false);
    tuner->setThreshold(0.2);
    // Pointed at again until the readout names the cell: where the flow runs fast, the window is
    // still laying out, and the plot can widen between placing the pointer and its move event.
    const auto pointAtCell = [&](double col, double row) {
        QTest::mouseMove(heatmap->plot(), QPoint(int(heatmap->plot()->xAxis->coordToPixel(col)),
                                                 int(heatmap->plot()->yAxis->coordToPixel(row))));
        return heatmap->readout();
    };
    QTRY_VERIFY2(pointAtCell(17, 40).startsWith("row 40, column 17: weight "),
                 qPrintable(heatmap->readout()));
    screenshot(window, "studio_heatmap.png");
    tabs->setCurrentWidget(window.findChild<OutlierPatternView*>());
    QVERIFY(!window.findChild<OutlierPatternView*>()->counts().heads.empty()); // o_proj: 8 heads
    screenshot(window, "studio_outlier_patterns.png");

    // With SqueezeLLM chosen, the same layer in the Fisher form; its sparse shares preview live.
    settings->setConfig(quantlens::SqueezeConfig{.wbits = 3});
    QTest::mouseClick(settings->findChild<QPushButton*>("analyse"), Qt::LeftButton);
    QVERIFY(waitFor(layerShown, failed, 2, 60'000));
    QVERIFY(std::holds_alternative<quantlens::SqueezeConfig>(heatmap->layer()->config));
    QVERIFY2(heatmap->title().contains("SqueezeLLM Fisher sensitivity F·(w − q(w))², 3-bit LUT"),
             qPrintable(heatmap->title()));
    QCOMPARE(tabs->currentWidget(), heatmap);
    settings->findChild<QDoubleSpinBox*>("sensitivePercent")->setValue(0.5); // 20 of 4,096
    QCOMPARE(heatmap->markedTiles(), std::int64_t(20));
    settings->findChild<QDoubleSpinBox*>("sparsePercent")->setValue(0.4); // + 16
    QCOMPARE(settings->sparseTuner()->sparseCount(), std::int64_t(36));
    // 3 bits + 16·2³/64 (the LUT) + 32 per sparse value: the paper's accounting.
    QCOMPARE(settings->sparseTuner()->bitsPerParameter(), 3.0 + 2.0 + 32.0 * 36 / 4096.0);
    QCOMPARE(heatmap->markedTiles(), std::int64_t(20));
    screenshot(window, "studio_heatmap_squeezellm.png");

    // Sweep three settings, one per colour; the window keeps repainting while the engine works.
    quantlens::SpqrConfig spqr;
    spqr.wbits = 3;
    spqr.groupsize = 16;
    settings->setSweep({quantlens::RtnConfig{4, 32}, spqr, settings->config()});
    QSignalSpy runShown(&window, &MainWindow::runShown);
    QElapsedTimer clock;
    qint64 last = 0, longestGap = 0;
    QTimer ticker;
    connect(&ticker, &QTimer::timeout, this, [&] {
        longestGap = std::max(longestGap, clock.elapsed() - last);
        last = clock.elapsed();
    });
    clock.start();
    ticker.start(10);
    QTest::mouseClick(settings->findChild<QPushButton*>("runSweep"), Qt::LeftButton);
    QVERIFY(waitFor(runShown, failed, 3, 120'000));
    ticker.stop();
    qInfo("sweep took %lld ms; longest event-loop gap %lld ms", clock.elapsed(), longestGap);
    QVERIFY(longestGap < 250);

    QCOMPARE(window.runs().size(), std::size_t(3));
    QVERIFY(std::holds_alternative<quantlens::SqueezeConfig>(window.runs()[2].config));
    int points = 0;
    std::map<QString, QColor> colours;
    for (int g = 0; g < pareto->plot()->graphCount(); ++g)
        if (QCPGraph* graph = pareto->plot()->graph(g); graph->name() != "Pareto front") {
            points += graph->dataCount();
            colours[graph->name()] = graph->scatterStyle().pen().color();
        }
    QCOMPARE(points, 3);
    QCOMPARE(colours.size(), std::size_t(3));
    for (const quantlens::RunRecord& run : window.runs())
        QCOMPARE(colours[methodLabel(run.config)], methodColour(run.config));
    QVERIFY(colours["SqueezeLLM"] != colours["SpQR"] && colours["SqueezeLLM"] != colours["RTN"]);
    // SqueezeLLM kept 0.4% + 0.5% of every layer's weights sparse.
    QVERIFY(window.runs()[2].outlierFraction > 0.008 && window.runs()[2].outlierFraction < 0.01);
    QVERIFY(!pareto->front().empty());
    // The baseline is the reference table's ctx-128 perplexity of the unquantized model.
    const QStringList csv = pareto->csv().split('\n', Qt::SkipEmptyParts);
    QCOMPARE(csv.size(), 5);
    QVERIFY2(csv.last().startsWith("none,\"unquantized\",,,,5.68598"), qPrintable(csv.last()));
    for (const quantlens::RunRecord& run : window.runs()) {
        QCOMPARE(run.layers.size(), std::size_t(35));
        QVERIFY(run.perplexity > 5.68 && run.perplexity < 100.0);
    }
    tabs->setCurrentWidget(pareto);
    pareto->plot()->replot();
    QVERIFY(window.exportCurrentPlot(scratch.filePath("pareto.png")));
    QVERIFY(window.exportCurrentPlot(scratch.filePath("pareto.pdf")));
    QVERIFY(window.exportCurrentPlot(scratch.filePath("pareto.csv")));
    QVERIFY(QImage(scratch.filePath("pareto.png")).width() > 1000);
    QVERIFY(QFileInfo(scratch.filePath("pareto.pdf")).size() > 1000);
    QFile csvFile(scratch.filePath("pareto.csv"));
    QVERIFY(csvFile.open(QIODevice::ReadOnly));
    QCOMPARE(QString(csvFile.readAll()).count('\n'), 5);
    screenshot(window, "studio_pareto.png");

    // Clicking a point loads its settings.
    QTest::mouseClick(pareto->plot(), Qt::LeftButton, {}, pareto->pixelOf(0).toPoint());
    QCOMPARE(quantlens::describe(settings->config()), quantlens::describe(window.runs()[0].config));
    tabs->setCurrentWidget(window.findChild<LayerSummaryView*>());
    QCOMPARE(window.findChild<LayerSummaryView*>()->barCount(), 35);
    screenshot(window, "studio_layers.png");
    QTreeWidgetItem* qProj = linearLayer(*tree, 0, "q_proj");
    QVERIFY(qProj && qProj->text(ModelSummaryView::MethodColumn) == "RTN");
    QCOMPARE(qProj->data(ModelSummaryView::MethodColumn, Qt::DecorationRole).value<QColor>(),
             methodColour(quantlens::RtnConfig{}));
    for (const QString method : {"RTN", "GPTQ", "SpQR", "SqueezeLLM"}) // the colours' key
        QVERIFY(tree->headerItem()->toolTip(ModelSummaryView::MethodColumn).contains(method));

    // The session survives the window.
    const QString project = scratch.filePath("session.quantlens");
    QVERIFY(window.saveProject(project));
    {
        MainWindow reopened;
        QSignalSpy reshown(&reopened, &MainWindow::modelShown);
        QSignalSpy refailed(&reopened, &MainWindow::errorShown);
        QVERIFY(reopened.openProject(project));
        QCOMPARE(reopened.runs().size(), std::size_t(3));
        QCOMPARE(reopened.runs()[2].perplexity, window.runs()[2].perplexity);
        QVERIFY(waitFor(reshown, refailed, 1, 20'000));
    }

    // File ▸ Export Model… lists every engine format; GPTQ's layout refuses the SpQR run.
    for (QAction* action : window.findChildren<QAction*>())
        if (action->text() == "&Export Model…") action->trigger();
    auto* dialog = window.findChild<ExportDialog*>();
    QVERIFY(dialog && dialog->isVisible());
    dialog->setRun(1);
    dialog->setFormat("gptq");
    dialog->setDirectory(scratch.filePath("spqr-gptq"));
    QVERIFY2(dialog->problem().contains("this run is SpQR"), qPrintable(dialog->problem()));
    QVERIFY(!dialog->findChild<QDialogButtonBox*>()->button(QDialogButtonBox::Ok)->isEnabled());
    screenshot(*dialog, "studio_export_dialog.png");
    dialog->reject();

    // Export the RTN run and reopen it: every group of 32 weights holds at most 2⁴ values.
    QSignalSpy exported(&window, &MainWindow::exportFinished);
    const QString directory = scratch.filePath("rtn-w4");
    window.exportRun({0, "dense-f32", directory});
    QVERIFY(waitFor(exported, failed, 1, 60'000));
    QCOMPARE(exported.first().first().toString(), directory);
    shown.clear();
    window.openModel(directory);
    QVERIFY(waitFor(shown, failed, 1, 20'000));
    const auto model = quantlens::loadModel(directory.toStdString());
    const quantlens::RowMatrix q = quantlens::FloatTensor(model->blocks[0].wq).matrix();
    for (Eigen::Index r = 0; r < q.rows(); ++r)
        for (Eigen::Index g = 0; g < q.cols(); g += 32) {
            std::set<float> values(q.row(r).data() + g, q.row(r).data() + g + 32);
            QVERIFY(values.size() <= 16);
        }
    screenshot(window, "studio_reopened_export.png");

    // An export to a directory with an interrupted export's journal asks first: Cancel starts
    // nothing, Start Over discards the journal and exports afresh.
    const QString interrupted = scratch.filePath("interrupted");
    QDir().mkpath(interrupted + ".resume");
    for (const auto& [file, text] :
         {std::pair<QString, QByteArray>{"run.json", R"({"model": {"blocks": 5}})"},
          {"block-00000.safetensors", ""},
          {"block-00001.safetensors", ""}}) {
        QFile journal(interrupted + ".resume/" + file);
        QVERIFY(journal.open(QIODevice::WriteOnly));
        journal.write(text);
    }
    QStringList asked;
    auto answer = QMessageBox::Cancel;
    window.setConfirmation([&](QMessageBox& box) {
        asked << box.text() << box.button(QMessageBox::Yes)->text()
              << box.button(QMessageBox::Discard)->text();
        return answer;
    });
    window.exportRun({0, "dense-f32", interrupted});
    QCOMPARE(asked, QStringList({"An export to " + QDir::toNativeSeparators(interrupted) +
                                     " was interrupted after 2 of 5 blocks.",
                                 "Resume", "Start Over"}));
    QTest::qWait(200);
    QCOMPARE(exported.size(), 1);
    QVERIFY(QFileInfo::exists(interrupted + ".resume"));
    answer = QMessageBox::Discard;
    window.exportRun({0, "dense-f32", interrupted});
    QVERIFY(waitFor(exported, failed, 2, 60'000));
    QVERIFY(!QFileInfo::exists(interrupted + ".resume"));
    QVERIFY(QFileInfo::exists(interrupted + "/model.safetensors"));

    // The SpQR run as a compressed quantlens checkpoint opens too.
    const QString compressed = scratch.filePath("spqr-w3");
    window.exportRun({1, "quantlens", compressed});
    QVERIFY(waitFor(exported, failed, 3, 60'000));
    shown.clear();
    window.openModel(compressed);
    QVERIFY(waitFor(shown, failed, 1, 20'000));
    QCOMPARE(window.findChild<QLabel*>("modelStatus")->text(),
             QString("%1 — 260,032 parameters").arg(QDir::toNativeSeparators(compressed)));
    QVERIFY(quantlens::loadModel(compressed.toStdString(), quantlens::CompressedLayers::Keep)
                ->compressedLayers.size() == 5);

    // The GPTQ layout cannot hold stories260K's 172-wide FFN: the engine says so, nothing is left.
    const QString gptq = scratch.filePath("rtn-gptq");
    window.exportRun({0, "gptq", gptq});
    QTRY_COMPARE_WITH_TIMEOUT(failed.size(), 1, 60'000);
    QVERIFY2(failed.first().first().toString().contains(
                 "the GPTQ layout packs 32 codes into 4 words along both dimensions"),
             qPrintable(failed.first().first().toString()));
    QVERIFY(!QFileInfo::exists(gptq));
}

void TestStudioFlow::cancelStopsWithinASecond() {
    QUANTLENS_REQUIRE_DATA("stories260K-hf");
    EngineController engine{quantlens::BackendRegistry{}};
    const auto model = openedModel(engine);
    QVERIFY(model);

    DataSettings data = excerptSettings();
    data.sequences = 40; // long enough to be cancelled mid-way
    std::vector<quantlens::QuantConfig> configs(6, quantlens::SpqrConfig{});
    QSignalSpy progress(&engine, &EngineController::jobProgress);
    QSignalSpy ended(&engine, &EngineController::jobEnded);
    QSignalSpy runs(&engine, &EngineController::runFinished);
    const int job = engine.runQuantizations(model, data, configs);
    QTRY_VERIFY_WITH_TIMEOUT(progress.size() >= 3, 20'000);
    QElapsedTimer clock;
    clock.start();
    engine.cancel(job);
    QTRY_COMPARE_WITH_TIMEOUT(ended.size(), 1, 5'000);
    qInfo("cancel took effect after %lld ms", clock.elapsed());
    QVERIFY(clock.elapsed() < 1000);
    QCOMPARE(ended.first()[0].toInt(), job);
    QCOMPARE(ended.first()[1].value<JobOutcome>(), JobOutcome::Cancelled);
    QVERIFY(runs.size() < 6);
    QVERIFY(!engine.isBusy());
}

// Clicking through five layers while the first is analysed: those not yet started when a newer one
// comes are replaced unstarted — normally the three in between; one that the worker took up before
// the next click (the clicking thread preempted on a busy machine) runs to its end — and the newest
// is the one shown last.
void TestStudioFlow::analysesAreCoalesced() {
    QUANTLENS_REQUIRE_DATA("stories260K-hf");
    EngineController engine{quantlens::BackendRegistry{}};
    const auto model = openedModel(engine);
    QVERIFY(model);

    QSignalSpy analysed(&engine, &EngineController::layerAnalysed);
    QSignalSpy started(&engine, &EngineController::jobStarted);
    QSignalSpy ended(&engine, &EngineController::jobEnded);
    std::vector<int> jobs;
    for (const char* layer : {"q_proj", "k_proj", "v_proj", "o_proj", "gate_proj"})
        jobs.push_back(
            engine.analyseLayer(model, excerptSettings(), quantlens::SpqrConfig{}, 1, layer));
    QTRY_COMPARE_WITH_TIMEOUT(ended.size(), 5, 60'000);
    QSet<int> begun;
    for (const QList<QVariant>& start : started)
        begun.insert(start[0].toInt());
    QMap<int, JobOutcome> outcomes;
    for (const QList<QVariant>& end : ended) {
        const int job = end[0].toInt();
        outcomes[job] = end[1].value<JobOutcome>();
        // Replaced exactly when it never started; finished otherwise.
        if (begun.contains(job)) {
            QCOMPARE(outcomes[job], JobOutcome::Finished);
        } else {
            QCOMPARE(outcomes[job], JobOutcome::Cancelled);
            QCOMPARE(end[2].toString(), QString("replaced by a newer analysis"));
        }
    }
    int replaced = 0;
    for (int i = 1; i < 4; ++i)
        replaced += outcomes[jobs[std::size_t(i)]] == JobOutcome::Cancelled;
    QVERIFY(replaced > 0); // coalescing happened
    QCOMPARE(outcomes[jobs[4]], JobOutcome::Finished);
    QCOMPARE(analysed.size(), begun.size());
    const auto last = analysed.last().first().value<EngineController::AnalysisPtr>();
    QCOMPARE(last->layer, std::string("gate_proj"));
    QVERIFY(!engine.isBusy());
}

void TestStudioFlow::engineErrorsAreMessages() {
    QUANTLENS_REQUIRE_DATA("stories260K-hf");
    MainWindow window;
    QSignalSpy shown(&window, &MainWindow::modelShown);
    QSignalSpy failed(&window, &MainWindow::errorShown);
    window.openModel(dataDir("stories260K-hf"));
    QVERIFY(waitFor(shown, failed, 1, 20'000));
    auto* settings = window.findChild<QuantSettingsPanel*>();
    DataSettings data = excerptSettings();
    data.calibrationFile = "/no/such/calibration.txt";
    settings->setData(data);
    settings->setSweep({quantlens::GptqConfig{}});
    QTest::mouseClick(settings->findChild<QPushButton*>("runSweep"), Qt::LeftButton);
    QTRY_COMPARE_WITH_TIMEOUT(failed.size(), 1, 20'000);
    QCOMPARE(failed.first().first().toString(),
             QString("/no/such/calibration.txt: cannot open: No such file or directory"));

    data.calibrationFile.clear();
    settings->setData(data);
    QTest::mouseClick(settings->findChild<QPushButton*>("runSweep"), Qt::LeftButton);
    QTRY_COMPARE_WITH_TIMEOUT(failed.size(), 2, 20'000);
    QCOMPARE(failed.last().first().toString(),
             QString("choose the calibration text in the Settings panel"));
}

QTEST_MAIN(TestStudioFlow)
#include "test_studio_flow.moc"
