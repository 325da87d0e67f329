#include "application_setup.h"
#include "main_window.h"
#include "model_summary_view.h"
#include "project_file.h"
#include "quant_settings_panel.h"
#include "test_data.h"

#include "quantlens/formats/model_export.h"

#include <QDir>
#include <QDropEvent>
#include <QFileInfo>
#include <QLabel>
#include <QLocale>
#include <QMenu>
#include <QMessageBox>
#include <QMimeData>
#include <QSignalSpy>
#include <QStandardPaths>
#include <QTemporaryDir>
#include <QUrl>
#include <QtTest>

namespace {

// Counted by hand from ../shared/data/README.md, not by the engine: dim 64, 5 layers, 8 heads of
// 64 / 8 = 8 dims, 4 kv heads (kv dim 32), FFN 172, vocab 512, head tied to the embedding.
constexpr qint64 dim = 64, layers = 5, kvDim = 4 * (64 / 8), ffn = 172, vocab = 512;
constexpr qint64 perBlock = 2 * dim           // two RMSNorm weights
                            + 2 * dim * dim   // q_proj, o_proj
                            + 2 * kvDim * dim // k_proj, v_proj
                            + 3 * ffn * dim;  // gate_proj, up_proj, down_proj
constexpr qint64 parameters = vocab * dim + layers * perBlock + dim; // + final norm, no lm_head
static_assert(parameters == 260'032);

QString dataDir(const std::string& relative) {
    return QDir::cleanPath(
        QFileInfo(QString::fromStdString(quantlens::test::dataPath(relative).string()))
            .absoluteFilePath());
}

QList<QTreeWidgetItem*> blockItems(const QTreeWidget& tree) {
    QList<QTreeWidgetItem*> blocks;
    for (int i = 0; i < tree.topLevelItemCount(); ++i)
        if (tree.topLevelItem(i)->text(0).startsWith("block ")) blocks << tree.topLevelItem(i);
    return blocks;
}

QTreeWidgetItem* child(QTreeWidgetItem* parent, const QString& name) {
    for (int i = 0; i < parent->childCount(); ++i)
        if (parent->child(i)->text(0) == name) return parent->child(i);
    return nullptr;
}

// Waits for the window to show a model or an error; fails with the error's text.
bool waitForModel(QSignalSpy& shown, QSignalSpy& failed) {
    if (!QTest::qWaitFor([&] { return !shown.isEmpty() || !failed.isEmpty(); }, 20'000)) {
        qWarning("neither modelShown nor errorShown within 20 s");
        return false;
    }
    if (!failed.isEmpty())
        qWarning("errorShown: %s", qPrintable(failed.first().first().toString()));
    return failed.isEmpty();
}

} // namespace

class TestMainWindow : public QObject {
    Q_OBJECT

private slots:
    void initTestCase();
    void hasApplicationIcon();
    void showsHfModel();
    void showsDroppedCheckpoint();
    void showsDroppedGguf();
    void reportsMissingModel();
    void controllerRunsJobsInOrder();
    void asksToSaveUnsavedWorkOnClose();
};

void TestMainWindow::initTestCase() {
    // Settings (window layout, recent models) go to a test location, not the user's.
    QStandardPaths::setTestModeEnabled(true);
    QCoreApplication::setOrganizationName("Quantlens");
    QCoreApplication::setApplicationName("test_main_window");
    QSettings().clear();
    QLocale::setDefault(QLocale(QLocale::English, QLocale::UnitedStates)); // "260,032"
}

// The icon is compiled into the static studio library; it loads only if its resource is
// initialised, as main() does through installApplicationIcon().
void TestMainWindow::hasApplicationIcon() {
    installApplicationIcon();
    const MainWindow window;
    QVERIFY(window.windowIcon().availableSizes().contains(QSize(256, 256)));
}

void TestMainWindow::showsHfModel() {
    QUANTLENS_REQUIRE_DATA("stories260K-hf");
    const QString path = dataDir("stories260K-hf");

    MainWindow window;
    window.show();
    QVERIFY(QTest::qWaitForWindowExposed(&window));
    QSignalSpy shown(&window, &MainWindow::modelShown);
    QSignalSpy failed(&window, &MainWindow::errorShown);
    window.openModel(path);
    QVERIFY(waitForModel(shown, failed));

    auto* tree = window.findChild<ModelSummaryView*>();
    QVERIFY(tree);
    QStringList topLevel;
    for (int i = 0; i < tree->topLevelItemCount(); ++i)
        topLevel << tree->topLevelItem(i)->text(0);
    QCOMPARE(topLevel, QStringList({"architecture", "embed_tokens", "block 0", "block 1", "block 2",
                                    "block 3", "block 4", "norm", "lm_head"}));

    const QList<QTreeWidgetItem*> blocks = blockItems(*tree);
    QCOMPARE(blocks.size(), 5);
    QTreeWidgetItem* block0 = blocks.first();
    QCOMPARE(block0->childCount(), 9);
    QCOMPARE(block0->text(ModelSummaryView::BytesColumn), QLocale().toString(perBlock * 4));

    QTreeWidgetItem* q = child(block0, "q_proj");
    QVERIFY(q);
    QCOMPARE(q->text(ModelSummaryView::ShapeColumn), QString("64 × 64"));
    QCOMPARE(q->text(ModelSummaryView::DTypeColumn), QString("F32"));
    QCOMPARE(q->text(ModelSummaryView::BytesColumn), QString("16,384"));
    QCOMPARE(q->data(ModelSummaryView::NameColumn, Qt::UserRole).toString(),
             QString("model.layers.0.self_attn.q_proj.weight"));
    QVERIFY(child(block0, "k_proj"));
    QCOMPARE(child(block0, "k_proj")->text(ModelSummaryView::ShapeColumn), QString("32 × 64"));
    QVERIFY(child(block0, "down_proj"));
    QCOMPARE(child(block0, "down_proj")->text(ModelSummaryView::ShapeColumn), QString("64 × 172"));

    QTreeWidgetItem* architecture = tree->topLevelItem(0);
    QVERIFY(child(architecture, "parameters"));
    QCOMPARE(child(architecture, "parameters")->text(1), QLocale().toString(parameters));
    QCOMPARE(child(architecture, "kv heads")->text(1), QString("4"));
    QCOMPARE(tree->topLevelItem(8)->text(ModelSummaryView::BytesColumn), QString("tied"));

    auto* status = window.findChild<QLabel*>("modelStatus");
    QVERIFY(status);
    QCOMPARE(status->text(),
             QString("%1 — 260,032 parameters").arg(QDir::toNativeSeparators(path)));

    QMenu* recent = nullptr;
    for (QMenu* menu : window.findChildren<QMenu*>())
        if (menu->title() == "&Recent Models") recent = menu;
    QVERIFY(recent);
    QVERIFY(!recent->actions().isEmpty());
    QCOMPARE(recent->actions().first()->text(), "&1 " + QDir::toNativeSeparators(path));

    block0->setExpanded(true); // so that the screenshot shows a block's tensors
    QVERIFY(window.grab().save(quantlens::test::artifactPath("main_window.png")));
}

void TestMainWindow::showsDroppedCheckpoint() {
    QUANTLENS_REQUIRE_DATA("stories260K/stories260K.bin");
    const QString path = dataDir("stories260K/stories260K.bin");

    MainWindow window;
    QSignalSpy shown(&window, &MainWindow::modelShown);
    QSignalSpy failed(&window, &MainWindow::errorShown);

    QMimeData text;
    text.setUrls({QUrl::fromLocalFile(dataDir("stories260K/tok512.model"))});
    QDragEnterEvent refused(QPoint(10, 10), Qt::CopyAction, &text, Qt::LeftButton, Qt::NoModifier);
    QApplication::sendEvent(&window, &refused);
    QVERIFY(!refused.isAccepted());

    QMimeData checkpoint;
    checkpoint.setUrls({QUrl::fromLocalFile(path)});
    QDragEnterEvent enter(QPoint(10, 10), Qt::CopyAction, &checkpoint, Qt::LeftButton,
                          Qt::NoModifier);
    QApplication::sendEvent(&window, &enter);
    QVERIFY(enter.isAccepted());
    QDropEvent drop(QPointF(10, 10), Qt::CopyAction, &checkpoint, Qt::LeftButton, Qt::NoModifier);
    QApplication::sendEvent(&window, &drop);
    QVERIFY(waitForModel(shown, failed));

    const auto* tree = window.findChild<ModelSummaryView*>();
    QCOMPARE(blockItems(*tree).size(), 5);
    QCOMPARE(blockItems(*tree).first()->childCount(), 9);
    QCOMPARE(window.findChild<QLabel*>("modelStatus")->text(),
             QString("%1 — 260,032 parameters").arg(QDir::toNativeSeparators(path)));
}

// A GGUF export dropped onto the window opens dequantized, to be compared with its run.
void TestMainWindow::showsDroppedGguf() {
    QUANTLENS_REQUIRE_DATA("stories260K-hf");
    QTemporaryDir scratch;
    const QString path = scratch.filePath("stories.gguf");
    quantlens::exportGguf(quantlens::test::dataPath("stories260K-hf"), path.toStdString(), {},
                          quantlens::JobContext{});
    MainWindow window;
    QSignalSpy shown(&window, &MainWindow::modelShown);
    QSignalSpy failed(&window, &MainWindow::errorShown);
    QMimeData gguf;
    gguf.setUrls({QUrl::fromLocalFile(path)});
    QDragEnterEvent enter(QPoint(10, 10), Qt::CopyAction, &gguf, Qt::LeftButton, Qt::NoModifier);
    QApplication::sendEvent(&window, &enter);
    QVERIFY(enter.isAccepted());
    QDropEvent drop(QPointF(10, 10), Qt::CopyAction, &gguf, Qt::LeftButton, Qt::NoModifier);
    QApplication::sendEvent(&window, &drop);
    QVERIFY(waitForModel(shown, failed));
    QCOMPARE(blockItems(*window.findChild<ModelSummaryView*>()).size(), 5);
    QCOMPARE(window.findChild<QLabel*>("modelStatus")->text(),
             QString("%1 — 260,032 parameters").arg(QDir::toNativeSeparators(path)));
}

void TestMainWindow::reportsMissingModel() {
    QTemporaryDir scratch;
    QVERIFY(scratch.isValid());
    const QString missing = QDir::cleanPath(scratch.filePath("no-such-model"));

    MainWindow window;
    window.show();
    QSignalSpy shown(&window, &MainWindow::modelShown);
    QSignalSpy failed(&window, &MainWindow::errorShown);
    window.openModel(missing);
    QTRY_COMPARE_WITH_TIMEOUT(failed.size(), 1, 20'000);

    const QString message = failed.first().first().toString();
    QCOMPARE(message, missing + ": no such file or directory");
    QVERIFY(shown.isEmpty());
    auto* box = window.findChild<QMessageBox*>();
    QVERIFY(box);
    QVERIFY(box->isVisible()); // shown with open(): the event loop kept running
    QCOMPARE(box->text(), message);
    QCOMPARE(window.findChild<QLabel*>("modelStatus")->text(), QString("No model loaded"));
}

void TestMainWindow::controllerRunsJobsInOrder() {
    QUANTLENS_REQUIRE_DATA("stories260K-hf");
    EngineController engine{quantlens::BackendRegistry{}};
    QSignalSpy busy(&engine, &EngineController::busyChanged);
    QSignalSpy opened(&engine, &EngineController::modelOpened);
    QSignalSpy failed(&engine, &EngineController::jobFailed);
    QStringList order;
    connect(&engine, &EngineController::modelOpened, this, [&] { order << "opened"; });
    connect(&engine, &EngineController::jobFailed, this, [&] { order << "failed"; });

    engine.openModel(dataDir("stories260K-hf"));
    engine.openModel("/no/such/model");
    QVERIFY(engine.isBusy());
    QTRY_VERIFY_WITH_TIMEOUT(!engine.isBusy(), 20'000);

    QCOMPARE(order, QStringList({"opened", "failed"}));
    QCOMPARE(opened.first().first().value<std::shared_ptr<const quantlens::Model>>()->blocks.size(),
             std::size_t(5));
    QCOMPARE(failed.first().first().toString(),
             QString("/no/such/model: no such file or directory"));
    // One busy period for both jobs, not one per job.
    QCOMPARE(busy.size(), 2);
    QCOMPARE(busy[0].first().toBool(), true);
    QCOMPARE(busy[1].first().toBool(), false);
}

// A run or a sweep list not in a project file makes closing ask Save / Discard / Cancel; the
// answer comes from a replaced confirmation, which also sees the box the user would see.
void TestMainWindow::asksToSaveUnsavedWorkOnClose() {
    QTemporaryDir scratch;
    const QString project = scratch.filePath("session.quantlens");
    auto answer = QMessageBox::Cancel;
    QStringList asked;
    const auto confirm = [&](QMessageBox& box) {
        asked << box.text();
        if (box.standardButtons() !=
            (QMessageBox::Save | QMessageBox::Discard | QMessageBox::Cancel))
            asked << "unexpected buttons";
        return answer;
    };

    MainWindow window;
    window.setConfirmation(confirm);
    window.show();
    QVERIFY(QTest::qWaitForWindowExposed(&window));
    QVERIFY(!window.isWindowModified());
    auto* settings = window.findChild<QuantSettingsPanel*>();
    settings->setSweep({quantlens::RtnConfig{3, 16}});
    QVERIFY(window.isWindowModified());
    QVERIFY(!window.close()); // Cancel keeps the window and its work
    QVERIFY(window.isVisible());
    QCOMPARE(asked, QStringList({"This session has runs or a sweep list that are not saved in a "
                                 "project file."}));

    QVERIFY(window.saveProject(project));
    QVERIFY(!window.isWindowModified());
    quantlens::RunRecord run;
    run.config = quantlens::GptqConfig{};
    run.perplexity = 6.0;
    emit window.engine().runFinished(run); // written to the project file at once
    QCOMPARE(window.runs().size(), std::size_t(1));
    QVERIFY(!window.isWindowModified());
    QCOMPARE(loadProject(project).runs.size(), std::size_t(1));
    settings->setSweep({quantlens::RtnConfig{3, 16}, quantlens::SqueezeConfig{}});
    QVERIFY(window.isWindowModified());
    answer = QMessageBox::Save;
    QVERIFY(window.close()); // saved into the project, then closed
    QCOMPARE(asked.size(), 2);
    QCOMPARE(loadProject(project).sweep.size(), std::size_t(2));

    MainWindow discarded; // starts with the sweep list the settings remembered, as saved work
    discarded.setConfirmation(confirm);
    QCOMPARE(discarded.findChild<QuantSettingsPanel*>()->sweep().size(), std::size_t(2));
    QVERIFY(!discarded.isWindowModified());
    emit discarded.engine().runFinished(run); // only in the autosave: unsaved
    QVERIFY(discarded.isWindowModified());
    discarded.show();
    answer = QMessageBox::Discard;
    QVERIFY(discarded.close());
    QCOMPARE(asked.size(), 3);
    QCOMPARE(loadProject(project).runs.size(), std::size_t(1)); // the project was left alone
}

QTEST_MAIN(TestMainWindow)
#include "test_main_window.moc"
