#include "main_window.h"

#include "model_summary_view.h"

#include <QCloseEvent>
#include <QDir>
#include <QDockWidget>
#include <QDragEnterEvent>
#include <QDropEvent>
#include <QFileDialog>
#include <QFileInfo>
#include <QLabel>
#include <QLocale>
#include <QMenuBar>
#include <QMessageBox>
#include <QMimeData>
#include <QProgressBar>
#include <QSettings>
#include <QStatusBar>
#include <QTabWidget>

namespace {

const char* const geometryKey = "mainWindow/geometry";
const char* const stateKey = "mainWindow/state";
const char* const recentKey = "recentModels";
constexpr int maxRecent = 8;

QStringList recentModels() {
    return QSettings().value(recentKey).toStringList();
}

// Dialogs start where the most recent model lives.
QString startDirectory() {
    const QStringList recent = recentModels();
    return recent.isEmpty() ? QDir::homePath() : QFileInfo(recent.first()).absolutePath();
}

// The one local folder or .bin file being dragged, or empty when the drop is not a model.
QString droppedModelPath(const QMimeData* mime) {
    if (!mime->hasUrls() || mime->urls().size() != 1) return {};
    const QString path = mime->urls().first().toLocalFile();
    const QFileInfo info(path);
    return info.isDir() || (info.isFile() && info.suffix() == "bin") ? path : QString();
}

QString welcomeText() {
    return MainWindow::tr("<h2>Quantlens</h2>"
                          "<p>Open a Hugging Face model directory (<b>File ▸ Open Model "
                          "Directory…</b>, Ctrl+O) or a llama2.c checkpoint (Ctrl+Shift+O), "
                          "or drop a model folder or <tt>.bin</tt> file onto this window.</p>");
}

QString overviewText(const quantlens::Model& model) {
    const QLocale locale;
    const QFileInfo info(QString::fromStdString(model.path.string()));
    return MainWindow::tr("<h2>%1</h2><p>%2</p>"
                          "<p>%3 parameters in %4 blocks · %5 stored</p>"
                          "<p>The <b>Model</b> dock lists its architecture and tensors.</p>")
        .arg(info.fileName().toHtmlEscaped(),
             QDir::toNativeSeparators(info.absoluteFilePath()).toHtmlEscaped(),
             locale.toString(qlonglong(model.parameterCount())),
             locale.toString(qulonglong(model.blocks.size())),
             locale.formattedDataSize(qint64(model.storedBytes())));
}

} // namespace

MainWindow::MainWindow(QWidget* parent)
    : QMainWindow(parent), summary_(new ModelSummaryView), tabs_(new QTabWidget),
      overview_(new QLabel(welcomeText())), modelStatus_(new QLabel(tr("No model loaded"))),
      busyIndicator_(new QProgressBar) {
    setWindowTitle("Quantlens");
    // Sized before the docks are added: they take their first width from the window's.
    const QSettings settings;
    if (!restoreGeometry(settings.value(geometryKey).toByteArray())) resize(1100, 700);
    setAcceptDrops(true);

    overview_->setAlignment(Qt::AlignCenter);
    overview_->setWordWrap(true); // else its longest line sets the window's minimum width
    overview_->setTextInteractionFlags(Qt::TextSelectableByMouse);
    tabs_->setDocumentMode(true);
    tabs_->addTab(overview_, tr("Overview"));
    setCentralWidget(tabs_);

    auto* dock = new QDockWidget(tr("Model"), this);
    dock->setObjectName("modelDock"); // saveState() identifies docks by name
    dock->setWidget(summary_);
    addDockWidget(Qt::LeftDockWidgetArea, dock);

    modelStatus_->setObjectName("modelStatus");
    statusBar()->addWidget(modelStatus_, 1);
    busyIndicator_->setRange(0, 0); // indeterminate: loading reports no progress
    busyIndicator_->setMaximumWidth(120);
    busyIndicator_->hide();
    statusBar()->addPermanentWidget(busyIndicator_);

    createMenus();
    menuBar()->addMenu(tr("&View"))->addAction(dock->toggleViewAction());

    connect(&engine_, &EngineController::modelOpened, this, &MainWindow::showModel);
    connect(&engine_, &EngineController::jobFailed, this, &MainWindow::showError);
    connect(&engine_, &EngineController::busyChanged, busyIndicator_, &QWidget::setVisible);

    restoreState(settings.value(stateKey).toByteArray());
}

void MainWindow::openModel(const QString& path) {
    // Clean, absolute paths keep the status line readable and the recent list free of duplicates.
    const QString absolute = QDir::cleanPath(QFileInfo(path).absoluteFilePath());
    statusBar()->showMessage(tr("Opening %1…").arg(QDir::toNativeSeparators(absolute)));
    engine_.openModel(absolute);
}

void MainWindow::createMenus() {
    QMenu* file = menuBar()->addMenu(tr("&File"));

    QAction* openDirectory = file->addAction(tr("Open Model &Directory…"));
    openDirectory->setShortcut(QKeySequence::Open);
    connect(openDirectory, &QAction::triggered, this, &MainWindow::chooseModelDirectory);

    QAction* openCheckpoint = file->addAction(tr("Open llama2.c &Checkpoint…"));
    openCheckpoint->setShortcut(QKeySequence(Qt::CTRL | Qt::SHIFT | Qt::Key_O));
    connect(openCheckpoint, &QAction::triggered, this, &MainWindow::chooseCheckpoint);

    recentMenu_ = file->addMenu(tr("&Recent Models"));
    rebuildRecentMenu();

    file->addSeparator();
    QAction* quit = file->addAction(tr("&Quit"));
    quit->setShortcut(QKeySequence::Quit);
    connect(quit, &QAction::triggered, this, &QWidget::close);
}

void MainWindow::chooseModelDirectory() {
    const QString directory = QFileDialog::getExistingDirectory(
        this, tr("Open Model Directory (with config.json)"), startDirectory());
    if (!directory.isEmpty()) openModel(directory);
}

void MainWindow::chooseCheckpoint() {
    const QString file =
        QFileDialog::getOpenFileName(this, tr("Open llama2.c Checkpoint"), startDirectory(),
                                     tr("llama2.c checkpoints (*.bin);;All files (*)"));
    if (!file.isEmpty()) openModel(file);
}

void MainWindow::showModel(const std::shared_ptr<const quantlens::Model>& model) {
    const QString path = QString::fromStdString(model->path.string());
    statusBar()->clearMessage();
    summary_->showModel(*model);
    overview_->setText(overviewText(*model));
    modelStatus_->setText(tr("%1 — %2 parameters")
                              .arg(QDir::toNativeSeparators(path),
                                   QLocale().toString(qlonglong(model->parameterCount()))));
    setWindowFilePath(path);
    rememberRecent(path);
    emit modelShown();
}

// Non-blocking (open(), not exec()), so a failed job never stalls the event loop.
void MainWindow::showError(const QString& message) {
    statusBar()->clearMessage();
    auto* box =
        new QMessageBox(QMessageBox::Warning, tr("Quantlens"), message, QMessageBox::Ok, this);
    box->setAttribute(Qt::WA_DeleteOnClose);
    box->open();
    emit errorShown(message);
}

void MainWindow::rememberRecent(const QString& path) {
    QStringList recent = recentModels();
    recent.removeAll(path);
    recent.prepend(path);
    QSettings().setValue(recentKey, recent.mid(0, maxRecent));
    rebuildRecentMenu();
}

void MainWindow::rebuildRecentMenu() {
    recentMenu_->clear();
    const QStringList recent = recentModels();
    for (int i = 0; i < recent.size(); ++i) {
        const QString path = recent[i];
        QString label = QDir::toNativeSeparators(path);
        label.replace('&', "&&"); // a literal '&', not a mnemonic
        QAction* action =
            recentMenu_->addAction(QString("&%1 %2").arg(QString::number(i + 1), label));
        connect(action, &QAction::triggered, this, [this, path] { openModel(path); });
    }
    if (!recent.isEmpty()) {
        recentMenu_->addSeparator();
        QAction* clear = recentMenu_->addAction(tr("&Clear Menu"));
        connect(clear, &QAction::triggered, this, [this] {
            QSettings().remove(recentKey);
            rebuildRecentMenu();
        });
    }
    recentMenu_->setEnabled(!recent.isEmpty());
}

void MainWindow::closeEvent(QCloseEvent* event) {
    QSettings settings;
    settings.setValue(geometryKey, saveGeometry());
    settings.setValue(stateKey, saveState());
    QMainWindow::closeEvent(event);
}

void MainWindow::dragEnterEvent(QDragEnterEvent* event) {
    if (!droppedModelPath(event->mimeData()).isEmpty()) event->acceptProposedAction();
}

void MainWindow::dropEvent(QDropEvent* event) {
    const QString path = droppedModelPath(event->mimeData());
    if (path.isEmpty()) return;
    event->acceptProposedAction();
    openModel(path);
}
