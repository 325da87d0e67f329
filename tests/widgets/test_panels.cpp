#include "error_text.h"
#include "export_dialog.h"
#include "jobs_panel.h"
#include "project_file.h"
#include "quant_config_json.h"
#include "quant_settings_panel.h"
#include "threshold_tuner.h"

#include "quantlens/core/error.h"

#include <QComboBox>
#include <QDialogButtonBox>
#include <QLineEdit>
#include <QListWidget>
#include <QProgressBar>
#include <QPushButton>
#include <QSettings>
#include <QSignalSpy>
#include <QSpinBox>
#include <QTemporaryDir>
#include <QToolButton>
#include <QTreeWidget>
#include <QtTest>

#include <cmath>

Q_DECLARE_METATYPE(std::vector<quantlens::QuantConfig>)

namespace {

quantlens::SpqrConfig customSpqr() {
    quantlens::SpqrConfig c;
    c.wbits = 2;
    c.groupsize = 32;
    c.qqBits = 4;
    c.statsGroupsize = 8;
    c.outlierThreshold = 0.45;
    c.blocksize = 64; // not shown by the panel, kept anyway
    c.percdamp = 0.5;
    c.actOrder = false;
    return c;
}

bool sameConfig(const quantlens::QuantConfig& a, const quantlens::QuantConfig& b) {
    return quantlens::describe(a) == quantlens::describe(b) &&
           toJson(a) == toJson(b); // toJson names every field, hidden ones included
}

} // namespace

class TestPanels : public QObject {
    Q_OBJECT

private slots:
    void initTestCase();
    void configJsonRoundTrips();
    void settingsPanelRoundTripsEveryMethod();
    void settingsPanelKeepsEachMethodsValues();
    void sweepButtonsBuildAndRunTheList();
    void settingsRememberMethodDataAndSweep();
    void jobsPanelShowsProgressAndCancels();
    void etaFromElapsedAndFraction();
    void exportDialogNeedsADirectory();
    void projectRoundTrips();
    void projectErrorsNameTheFile();
};

void TestPanels::initTestCase() {
    qRegisterMetaType<std::vector<quantlens::QuantConfig>>();
}

void TestPanels::configJsonRoundTrips() {
    quantlens::SqueezeConfig squeeze;
    squeeze.wbits = 3;
    squeeze.sparsePercent = 0.4;
    squeeze.sensitivePercent = 0.05;
    for (const quantlens::QuantConfig& config :
         {quantlens::QuantConfig(quantlens::RtnConfig{3, 0}),
          quantlens::QuantConfig(quantlens::GptqConfig{2, 64, 32, 0.1, true}),
          quantlens::QuantConfig(customSpqr()), quantlens::QuantConfig(squeeze)}) {
        QVERIFY(sameConfig(quantConfigFromJson(toJson(config)), config));
    }
    QCOMPARE(toJson(customSpqr())["outlier_threshold"].toDouble(), 0.45);
    const auto errorFrom = [](const QJsonObject& json) {
        return quantlens::test::errorOf([&] { quantConfigFromJson(json); });
    };
    QCOMPARE(errorFrom({{"method", "awq"}}),
             QString("unknown method \"awq\" (rtn, gptq, spqr or squeezellm)"));
    QCOMPARE(errorFrom({{"wbits", 3}}), QString("the settings name no \"method\""));
    QCOMPARE(errorFrom({{"method", "gptq"}, {"act_order", 1}}),
             QString("setting \"act_order\" must be true or false"));
    QCOMPARE(errorFrom({{"method", "rtn"}, {"wbits", 2.5}}),
             QString("setting \"wbits\" must be a whole number"));
    QCOMPARE(errorFrom({{"method", "rtn"}, {"groupsize", "128"}}),
             QString("setting \"groupsize\" must be a number"));
    QVERIFY(errorFrom({{"method", "rtn"}, {"wbits", 12}}).contains("wbits")); // out of range
    QVERIFY(sameConfig(quantConfigFromJson({{"method", "spqr"}}), quantlens::SpqrConfig{}));
}

void TestPanels::settingsPanelRoundTripsEveryMethod() {
    QuantSettingsPanel panel;
    quantlens::SqueezeConfig squeeze;
    squeeze.sparsePercent = 0.4;
    squeeze.kmeansIterations = 7;
    for (const quantlens::QuantConfig& config :
         {quantlens::QuantConfig(quantlens::RtnConfig{3, 32}),
          quantlens::QuantConfig(quantlens::GptqConfig{3, 0, 64, 0.02, true}),
          quantlens::QuantConfig(customSpqr()), quantlens::QuantConfig(squeeze)}) {
        panel.setConfig(config);
        QVERIFY2(sameConfig(panel.config(), config), quantlens::describe(panel.config()).c_str());
    }
    panel.setConfig(customSpqr());
    QCOMPARE(panel.tuner()->threshold(), 0.45);
    panel.findChild<QSpinBox*>("wbits")->setValue(4);
    panel.tuner()->setThreshold(0.1);
    const quantlens::QuantConfig config = panel.config();
    const auto* spqr = std::get_if<quantlens::SpqrConfig>(&config);
    QVERIFY(spqr);
    QCOMPARE(spqr->wbits, 4);
    QCOMPARE(spqr->outlierThreshold, 0.1);
    QCOMPARE(spqr->blocksize, 64);
}

void TestPanels::settingsPanelKeepsEachMethodsValues() {
    QuantSettingsPanel panel;
    panel.setConfig(quantlens::RtnConfig{2, 64});
    auto* method = panel.findChild<QComboBox*>("method");
    method->setCurrentIndex(2); // SpQR shows its own defaults, not RTN's 2 bits
    QVERIFY(sameConfig(panel.config(), quantlens::SpqrConfig{}));
    method->setCurrentIndex(0);
    QVERIFY(sameConfig(panel.config(), quantlens::RtnConfig{2, 64}));
}

void TestPanels::sweepButtonsBuildAndRunTheList() {
    QuantSettingsPanel panel;
    panel.show();
    QVERIFY(QTest::qWaitForWindowExposed(&panel));
    QSignalSpy run(&panel, &QuantSettingsPanel::runRequested);
    auto* add = panel.findChild<QPushButton*>("addToSweep");
    auto* wbits = panel.findChild<QSpinBox*>("wbits");
    for (const int bits : {2, 3, 4}) {
        wbits->setValue(bits);
        QTest::mouseClick(add, Qt::LeftButton);
    }
    QCOMPARE(panel.findChild<QListWidget*>("sweepList")->count(), 3);
    QTest::mouseClick(panel.findChild<QPushButton*>("runSweep"), Qt::LeftButton);
    QCOMPARE(run.size(), 1);
    const auto configs = run.first().first().value<std::vector<quantlens::QuantConfig>>();
    QCOMPARE(configs.size(), std::size_t(3));
    QCOMPARE(quantlens::weightBits(configs[0]), 2);
    QCOMPARE(quantlens::weightBits(configs[2]), 4);
    QTest::mouseClick(panel.findChild<QPushButton*>("quantize"), Qt::LeftButton);
    QCOMPARE(run.size(), 2);
    QCOMPARE(run.last().first().value<std::vector<quantlens::QuantConfig>>().size(),
             std::size_t(1));
}

// What save() writes, restore() reads into a fresh panel: the method, the data and the sweep.
void TestPanels::settingsRememberMethodDataAndSweep() {
    QTemporaryDir scratch;
    QSettings settings(scratch.filePath("settings.ini"), QSettings::IniFormat);
    quantlens::SqueezeConfig squeeze;
    squeeze.wbits = 3;
    squeeze.sparsePercent = 0.4;
    squeeze.sensitivePercent = 0.05;
    const std::vector<quantlens::QuantConfig> sweep{quantlens::RtnConfig{3, 16}, customSpqr(),
                                                    squeeze};
    const DataSettings data{"/data/calib.txt", 8, 128, "/data/eval.txt", 256};
    {
        QuantSettingsPanel panel;
        panel.setConfig(squeeze);
        panel.setData(data);
        panel.setSweep(sweep);
        panel.save(settings);
    }
    settings.sync();
    QuantSettingsPanel restored;
    QSignalSpy changed(&restored, &QuantSettingsPanel::sweepChanged);
    restored.restore(settings);
    QVERIFY(sameConfig(restored.config(), squeeze));
    QVERIFY(restored.data() == data);
    QCOMPARE(restored.sweep().size(), sweep.size());
    for (std::size_t i = 0; i < sweep.size(); ++i)
        QVERIFY(sameConfig(restored.sweep()[i], sweep[i]));
    QCOMPARE(restored.findChild<QListWidget*>("sweepList")->count(), 3);
    QCOMPARE(changed.size(), 1);
}

void TestPanels::jobsPanelShowsProgressAndCancels() {
    JobsPanel panel;
    panel.show();
    QVERIFY(QTest::qWaitForWindowExposed(&panel));
    QSignalSpy cancel(&panel, &JobsPanel::cancelRequested);
    panel.addJob(7, "Sweep of 3 runs");
    panel.addJob(8, "Export");
    panel.updateJob(7, 0.0, "starting");
    panel.updateJob(7, 0.25, "run 1/3, block 2 q_proj");
    QTreeWidgetItem* item = panel.jobs()->topLevelItem(0);
    QCOMPARE(item->text(2), QString("run 1/3, block 2 q_proj"));
    auto* bar = qobject_cast<QProgressBar*>(panel.jobs()->itemWidget(item, 1));
    QVERIFY(bar);
    QCOMPARE(bar->value(), 250);
    QVERIFY(item->text(3).endsWith(" left"));

    auto* button = panel.findChild<QToolButton*>("cancelJob7");
    QVERIFY(button);
    QTest::mouseClick(button, Qt::LeftButton);
    QCOMPARE(cancel.size(), 1);
    QCOMPARE(cancel.first().first().toInt(), 7);
    QVERIFY(!button->isEnabled());
    panel.finishJob(7, JobOutcome::Cancelled, "cancelled");
    QVERIFY(item->text(2).startsWith("cancelled after"));
    panel.finishJob(8, JobOutcome::Failed, "/x: no such file or directory");
    QCOMPARE(panel.jobs()->topLevelItem(1)->text(2),
             QString("failed: /x: no such file or directory"));
    QVERIFY(panel.logText().contains("Export: failed: /x: no such file or directory"));
}

void TestPanels::etaFromElapsedAndFraction() {
    quantlens::TimeLeft fresh;
    QCOMPARE(etaText(fresh.update(0.0, 1.0)), QString("estimating…"));
    QCOMPARE(etaText(fresh.update(0.25, 31.0)), QString("1:30 left"));
    QCOMPARE(etaText(fresh.update(1.0, 41.0)), QString("0:00 left"));
    // A quantization resumed at 60% of the model: 20% done in 10 s leaves 10 s for the last 20%,
    // not the 2.5 s that crediting this run with the earlier run's 60% would give.
    quantlens::TimeLeft resumed;
    QCOMPARE(etaText(resumed.update(0.6, 0.0)), QString("estimating…"));
    QCOMPARE(etaText(resumed.update(0.605, 1.0)), QString("estimating…"));
    QCOMPARE(etaText(resumed.update(0.8, 10.0)), QString("0:10 left"));
}

void TestPanels::exportDialogNeedsADirectory() {
    ExportDialog dialog({"rtn w4 g128", "spqr w3"},
                        {{"dense-f16", "Dense F16"}, {"quantlens", "Q"}});
    auto* ok = dialog.findChild<QDialogButtonBox*>()->button(QDialogButtonBox::Ok);
    QVERIFY(!ok->isEnabled());
    dialog.findChild<QLineEdit*>("exportDirectory")->setText("/tmp/out");
    QVERIFY(ok->isEnabled());
    dialog.setRun(1);
    dialog.findChild<QComboBox*>("exportFormat")->setCurrentIndex(1);
    const ExportRequest request = dialog.request();
    QCOMPARE(request.run, 1);
    QCOMPARE(request.format, QString("quantlens"));
    QCOMPARE(request.directory, QString("/tmp/out"));
}

void TestPanels::projectRoundTrips() {
    QTemporaryDir scratch;
    Project project{"/models/stories260K-hf",
                    {"/data/calib.txt", 8, 128, "/data/eval.txt", 256},
                    customSpqr(),
                    {quantlens::RtnConfig{3, 16}, quantlens::GptqConfig{}},
                    5.461168,
                    {}};
    quantlens::RunRecord run;
    run.config = quantlens::GptqConfig{};
    run.bitsPerParameter = 4.5;
    run.paperBitsPerParameter = 4.25;
    run.perplexity = 5.9;
    run.comparison.klMean = 0.01;
    run.comparison.klP99 = 0.2;
    run.comparison.top1Agreement = 0.93;
    run.targetBits = 4.0;
    run.seconds = 1.5;
    run.layers.push_back(
        {0, "q_proj", 64, 64, 2304, 4.5, 4.25, 3, 0.0012, quantlens::GptqConfig{3, 32}});
    run.layers.push_back({0, "k_proj", 32, 64, 1152, 4.5, 4.25, 0,
                          std::numeric_limits<double>::quiet_NaN(), quantlens::GptqConfig{}});
    project.runs = {run};
    const QString path = scratch.filePath("session.quantlens");
    saveProject(project, path);
    const Project back = loadProject(path);
    QCOMPARE(back.modelPath, project.modelPath);
    QVERIFY(back.data == project.data);
    QVERIFY(sameConfig(back.settings, project.settings));
    QCOMPARE(back.sweep.size(), std::size_t(2));
    QCOMPARE(back.baselinePerplexity, 5.461168);
    QCOMPARE(back.runs.size(), std::size_t(1));
    const quantlens::RunRecord& r = back.runs.front();
    QVERIFY(sameConfig(r.config, run.config));
    QCOMPARE(r.perplexity, 5.9);
    QCOMPARE(r.layers.size(), std::size_t(2));
    QCOMPARE(r.layers[0].storedBytes, std::size_t(2304));
    QCOMPARE(r.layers[0].outliers, std::int64_t(3));
    QCOMPARE(r.layers[0].relativeOutputError, 0.0012);
    QVERIFY(std::isnan(r.layers[1].relativeOutputError)); // written as null
    // A bit-budget run keeps its target, each layer's settings and every comparison figure.
    QCOMPARE(r.targetBits, std::optional<double>(4.0));
    QVERIFY(sameConfig(r.layers[0].config, quantlens::GptqConfig{3, 32}));
    QVERIFY(sameConfig(r.layers[1].config, quantlens::GptqConfig{}));
    QCOMPARE(r.comparison.klMean, 0.01);
    QCOMPARE(r.comparison.klP99, 0.2);
    QCOMPARE(r.comparison.top1Agreement, 0.93);
    QVERIFY(std::isnan(r.comparison.klMax));
}

void TestPanels::projectErrorsNameTheFile() {
    QTemporaryDir scratch;
    const QString path = scratch.filePath("other.json");
    QFile file(path);
    QVERIFY(file.open(QIODevice::WriteOnly));
    file.write(R"({"format": "something-else"})");
    file.close();
    try {
        loadProject(path);
        QFAIL("a foreign file loaded");
    } catch (const quantlens::Error& error) {
        QCOMPARE(QString(error.what()), path + ": is not a Quantlens project");
    }
    const QString missing = scratch.filePath("missing.quantlens");
    try {
        loadProject(missing);
        QFAIL("a missing file loaded");
    } catch (const quantlens::Error& error) {
        QVERIFY2(QString(error.what()).startsWith(missing + ": could not be read"), error.what());
    }
}

QTEST_MAIN(TestPanels)
#include "test_panels.moc"
