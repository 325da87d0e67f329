#include "main_window.h"

#include "device_picker.h"
#include "heatmap_view.h"
#include "jobs_panel.h"
#include "layer_summary_view.h"
#include "model_export.h"
#include "model_map_view.h"
#include "model_summary_view.h"
#include "outlier_pattern_view.h"
#include "pareto_view.h"
#include "plot_export.h"
#include "project_file.h"
#include "quant_settings_panel.h"
#include "run_description.h"

#include "quantlens/core/error.h"
#include "quantlens/formats/run_journal.h"

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
#include <QPushButton>
#include <QScrollArea>
#include <QScrollBar>
#include <QSettings>
#include <QStandardPaths>
#include <QStatusBar>
#include <QTabWidget>

namespace {

const char* const geometryKey = "mainWindow/geometry";
const char* const stateKey = "mainWindow/state";
const char* const recentKey = "recentModels";
const char* const deviceKey = "engine/device";
const char* const projectFilter = "Quantlens projects (*.quantlens);;All files (*)";
constexpr int maxRecent = 8;

QStringList recentModels() {
    return QSettings().value(recentKey).toStringList();
}

// Dialogs start where the most recent model lives.
QString startDirectory() {
    const QStringList recent = recentModels();
    return recent.isEmpty() ? QDir::homePath() : QFileInfo(recent.first()).absolutePath();
}

// The one local folder, .bin or .gguf file being dragged, or empty when the drop is not a model.
QString droppedModelPath(const QMimeData* mime) {
    if (!mime->hasUrls() || mime->urls().size() != 1) return {};
    const QString path = mime->urls().first().toLocalFile();
    const QFileInfo info(path);
    return info.isDir() || (info.isFile() && (info.suffix() == "bin" || info.suffix() == "gguf"))
               ? path
               : QString();
}

QString welcomeText() {
    return MainWindow::tr("<h2>Quantlens</h2>"
                          "<p>Open a Hugging Face model directory (<b>File ▸ Open Model "
                          "Directory…</b>, Ctrl+O) or a llama2.c checkpoint or GGUF file "
                          "(Ctrl+Shift+O), or drop a model folder, <tt>.bin</tt> or "
                          "<tt>.gguf</tt> file onto this window.</p>");
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

// Where a session without a project file is kept, so its runs survive the window.
QString autosavePath() {
    const QString directory = QStandardPaths::writableLocation(QStandardPaths::AppDataLocation);
    QDir().mkpath(directory);
    return QDir(directory).filePath("autosave.quantlens");
}

} // namespace

MainWindow::MainWindow(quantlens::BackendRegistry backends, QWidget* parent)
    : QMainWindow(parent), engine_(std::move(backends)), summary_(new ModelSummaryView),
      settings_(new QuantSettingsPanel), jobs_(new JobsPanel), tabs_(new QTabWidget),
      overview_(new QLabel(welcomeText())), heatmap_(new HeatmapView),
      patterns_(new OutlierPatternView), pareto_(new ParetoView), modelMap_(new ModelMapView),
      layerSummary_(new LayerSummaryView), modelStatus_(new QLabel(tr("No model loaded"))),
      busyIndicator_(new QProgressBar) {
    setWindowTitle("Quantlens[*]"); // [*]: marked while the session has unsaved work
    // Sized before the docks are added: they take their first width from the window's.
    QSettings settings;
    if (!restoreGeometry(settings.value(geometryKey).toByteArray())) resize(1280, 800);
    setAcceptDrops(true);

    overview_->setAlignment(Qt::AlignCenter);
    overview_->setWordWrap(true); // else its longest line sets the window's minimum width
    overview_->setTextInteractionFlags(Qt::TextSelectableByMouse);
    tabs_->setObjectName("views");
    tabs_->setDocumentMode(true);
    tabs_->addTab(overview_, tr("Overview"));
    tabs_->addTab(modelMap_, tr("Model Map"));
    tabs_->addTab(heatmap_, tr("Sensitivity"));
    tabs_->addTab(patterns_, tr("Outlier Patterns"));
    tabs_->addTab(pareto_, tr("Bits vs Quality"));
    tabs_->addTab(layerSummary_, tr("Layers"));
    setCentralWidget(tabs_);

    modelStatus_->setObjectName("modelStatus");
    statusBar()->addWidget(modelStatus_, 1);
    busyIndicator_->setRange(0, 0); // the Jobs dock shows each job's progress
    busyIndicator_->setMaximumWidth(120);
    busyIndicator_->hide();
    statusBar()->addPermanentWidget(busyIndicator_);

    createDocks();
    createMenus();
    connectEngine();
    settings_->restore(settings);
    restoreState(settings.value(stateKey).toByteArray());
    setWindowModified(false); // a sweep list restored from the settings is not new work
}

void MainWindow::createDocks() {
    const auto addDock = [this](const QString& title, const char* name, QWidget* widget,
                                Qt::DockWidgetArea area) {
        auto* dock = new QDockWidget(title, this);
        dock->setObjectName(name); // saveState() identifies docks by name
        dock->setWidget(widget);
        addDockWidget(area, dock);
        return dock;
    };
    addDock(tr("Model"), "modelDock", summary_, Qt::LeftDockWidgetArea);
    auto* scroll = new QScrollArea;
    scroll->setWidget(settings_);
    scroll->setWidgetResizable(true);
    // The panel scrolls only vertically: its dock keeps room for it beside the scroll bar.
    scroll->setHorizontalScrollBarPolicy(Qt::ScrollBarAlwaysOff);
    scroll->setMinimumWidth(settings_->minimumSizeHint().width() +
                            scroll->verticalScrollBar()->sizeHint().width() +
                            2 * scroll->frameWidth());
    addDock(tr("Settings"), "settingsDock", scroll, Qt::RightDockWidgetArea);
    QDockWidget* jobs = addDock(tr("Jobs"), "jobsDock", jobs_, Qt::BottomDockWidgetArea);
    resizeDocks({jobs}, {180}, Qt::Vertical); // the views get the room; restoreState may differ

    connect(summary_, &ModelSummaryView::linearLayerSelected, this,
            [this](int block, const QString& layer) {
                selectedBlock_ = block;
                selectedLayer_ = layer;
                settings_->setAnalysisEnabled(true);
            });
    connect(settings_, &QuantSettingsPanel::analyseRequested, this,
            &MainWindow::analyseSelectedLayer);
    connect(settings_, &QuantSettingsPanel::runRequested, this, &MainWindow::runConfigs);
    connect(settings_, &QuantSettingsPanel::budgetRequested, this,
            [this](const quantlens::QuantConfig& method, double targetBits) {
                if (!model_) return showError(tr("Open a model first."));
                engine_.runQuantizations(model_, settings_->data(), {method}, targetBits);
            });
    connect(modelMap_, &ModelMapView::mapRequested, this, &MainWindow::mapModel);
    connect(modelMap_, &ModelMapView::layerClicked, this, [this](int block, const QString& layer) {
        selectedBlock_ = block;
        selectedLayer_ = layer;
        settings_->setAnalysisEnabled(true);
        analyseSelectedLayer();
    });
    connect(settings_, &QuantSettingsPanel::sweepChanged, this,
            [this] { setWindowModified(true); });
    connect(settings_, &QuantSettingsPanel::overlayThresholdChanged, heatmap_,
            &HeatmapView::setThreshold);
    connect(settings_, &QuantSettingsPanel::overlayThresholdChanged, patterns_,
            &OutlierPatternView::setThreshold);
    connect(pareto_, &ParetoView::runClicked, this, &MainWindow::selectRun);
    connect(jobs_, &JobsPanel::cancelRequested, &engine_, &EngineController::cancel);
}

void MainWindow::connectEngine() {
    connect(&engine_, &EngineController::modelOpened, this, &MainWindow::showModel);
    connect(&engine_, &EngineController::layerAnalysed, this, &MainWindow::showAnalysis);
    connect(&engine_, &EngineController::modelMapped, this, [this](const quantlens::ModelMap& map) {
        modelMap_->setMap(map);
        tabs_->setCurrentWidget(modelMap_);
        emit modelMapShown();
    });
    connect(&engine_, &EngineController::baselineEvaluated, this, [this](double perplexity) {
        baseline_ = perplexity;
        pareto_->setBaseline(perplexity);
    });
    connect(&engine_, &EngineController::runFinished, this, &MainWindow::addRun);
    connect(&engine_, &EngineController::exportFinished, this, [this](const QString& directory) {
        jobs_->log(tr("Exported to %1; open it with File ▸ Open Model Directory to check it.")
                       .arg(QDir::toNativeSeparators(directory)));
        emit exportFinished(directory);
    });
    connect(&engine_, &EngineController::jobFailed, this, &MainWindow::showError);
    connect(&engine_, &EngineController::busyChanged, busyIndicator_, &QWidget::setVisible);
    connect(&engine_, &EngineController::jobQueued, jobs_, &JobsPanel::addJob);
    connect(&engine_, &EngineController::jobProgress, jobs_, &JobsPanel::updateJob);
    connect(&engine_, &EngineController::jobEnded, jobs_, &JobsPanel::finishJob);
    connect(&engine_, &EngineController::jobStarted, jobs_, &JobsPanel::startJob);
    connect(&engine_, &EngineController::jobNoted, jobs_, &JobsPanel::noteJob);
    connect(&engine_, &EngineController::devicesListed, this, &MainWindow::showDevices);
    connect(&engine_, &EngineController::deviceFailed, this, &MainWindow::offerCpu);
    connect(jobs_->devices(), &DevicePicker::deviceChosen, this, &MainWindow::useDevice);
    engine_.listDevices();
}

void MainWindow::showDevices(
    const std::vector<quantlens::ComputeDevice>& devices,
    const std::vector<quantlens::BackendRegistry::Unavailable>& unavailable) {
    const auto gib = [](std::uint64_t bytes) {
        return QString::number(static_cast<double>(bytes) / (1ull << 30), 'f', 1);
    };
    QList<DeviceChoice> choices;
    for (const quantlens::ComputeDevice& device : devices) {
        const QString id = QString::fromStdString(device.id);
        QString label = id == "cpu" ? tr("CPU") : id;
        label += " — " + QString::fromStdString(device.name);
        if (device.totalMemoryBytes > 0)
            label += tr(", %1 GiB free of %2 GiB")
                         .arg(gib(device.freeMemoryBytes), gib(device.totalMemoryBytes));
        choices.push_back({id, label, label, true});
    }
    for (const auto& [kind, reason] : unavailable) {
        const QString why = QString::fromStdString(reason);
        choices.push_back({QString::fromStdString(kind),
                           tr("%1 — unavailable").arg(QString::fromStdString(kind).toUpper()), why,
                           false});
    }
    DevicePicker* picker = jobs_->devices();
    picker->setChoices(choices);
    const QString saved = QSettings().value(deviceKey, "cpu").toString();
    if (picker->setCurrentDevice(saved))
        engine_.setDevice(saved);
    else
        jobs_->log(tr("%1, chosen before, is not available here; jobs run on the CPU.").arg(saved));
}

void MainWindow::useDevice(const QString& id) {
    engine_.setDevice(id);
    QSettings().setValue(deviceKey, id);
    jobs_->log(tr("Jobs now run on %1.").arg(id));
}

void MainWindow::offerCpu(int job, const QString& device, const QString& message) {
    QMessageBox box(QMessageBox::Warning, tr("Quantlens"),
                    tr("A job failed on %1: %2").arg(device, message),
                    QMessageBox::Yes | QMessageBox::YesToAll | QMessageBox::Cancel, this);
    box.setInformativeText(tr("It can run again on the CPU, which is slower but has the host's "
                              "memory."));
    box.button(QMessageBox::Yes)->setText(tr("Run It on the CPU"));
    box.button(QMessageBox::YesToAll)->setText(tr("Use the CPU from Now On"));
    box.setDefaultButton(QMessageBox::Yes);
    switch (confirm_(box)) {
    case QMessageBox::YesToAll:
        jobs_->devices()->setCurrentDevice("cpu");
        useDevice("cpu");
        [[fallthrough]];
    case QMessageBox::Yes:
        engine_.retryOnCpu(job);
        break;
    default:
        jobs_->log(tr("Not run again: %1").arg(message));
        break;
    }
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

    QAction* openCheckpoint = file->addAction(tr("Open Model &File (llama2.c, GGUF)…"));
    openCheckpoint->setShortcut(QKeySequence(Qt::CTRL | Qt::SHIFT | Qt::Key_O));
    connect(openCheckpoint, &QAction::triggered, this, &MainWindow::chooseCheckpoint);

    recentMenu_ = file->addMenu(tr("&Recent Models"));
    rebuildRecentMenu();

    file->addSeparator();
    connect(file->addAction(tr("Open &Project…")), &QAction::triggered, this,
            &MainWindow::chooseProjectToOpen);
    QAction* save = file->addAction(tr("&Save Project"));
    save->setShortcut(QKeySequence::Save);
    connect(save, &QAction::triggered, this, [this] {
        if (projectPath_.isEmpty())
            chooseProjectToSave();
        else
            saveProject(projectPath_);
    });
    QAction* saveAs = file->addAction(tr("Save Project &As…"));
    saveAs->setShortcut(QKeySequence::SaveAs);
    connect(saveAs, &QAction::triggered, this, &MainWindow::chooseProjectToSave);
    connect(file->addAction(tr("Reopen &Last Session")), &QAction::triggered, this,
            [this] { openProject(autosavePath()); });

    file->addSeparator();
    QAction* exportModel = file->addAction(tr("&Export Model…"));
    exportModel->setShortcut(QKeySequence(Qt::CTRL | Qt::Key_E));
    connect(exportModel, &QAction::triggered, this, &MainWindow::chooseExport);
    QAction* exportPlot = file->addAction(tr("Export &Plot or Data…"));
    exportPlot->setShortcut(QKeySequence(Qt::CTRL | Qt::SHIFT | Qt::Key_E));
    connect(exportPlot, &QAction::triggered, this, &MainWindow::choosePlotFile);

    file->addSeparator();
    QAction* quit = file->addAction(tr("&Quit"));
    quit->setShortcut(QKeySequence::Quit);
    connect(quit, &QAction::triggered, this, &QWidget::close);

    QMenu* jobs = menuBar()->addMenu(tr("&Jobs"));
    QAction* cancel = jobs->addAction(tr("&Cancel All Jobs"));
    cancel->setShortcut(QKeySequence(Qt::CTRL | Qt::Key_Period));
    connect(cancel, &QAction::triggered, &engine_, &EngineController::cancelAll);

    QMenu* view = menuBar()->addMenu(tr("&View"));
    for (QDockWidget* dock : findChildren<QDockWidget*>())
        view->addAction(dock->toggleViewAction());
}

void MainWindow::chooseModelDirectory() {
    const QString directory = QFileDialog::getExistingDirectory(
        this, tr("Open Model Directory (with config.json)"), startDirectory());
    if (!directory.isEmpty()) openModel(directory);
}

void MainWindow::chooseCheckpoint() {
    const QString file =
        QFileDialog::getOpenFileName(this, tr("Open Model File"), startDirectory(),
                                     tr("Model files (*.bin *.gguf);;llama2.c checkpoints "
                                        "(*.bin);;GGUF files (*.gguf);;All files (*)"));
    if (!file.isEmpty()) openModel(file);
}

void MainWindow::chooseProjectToOpen() {
    const QString path =
        QFileDialog::getOpenFileName(this, tr("Open Project"), startDirectory(), tr(projectFilter));
    if (!path.isEmpty()) openProject(path);
}

bool MainWindow::chooseProjectToSave() {
    QString path =
        QFileDialog::getSaveFileName(this, tr("Save Project"), startDirectory(), tr(projectFilter));
    if (path.isEmpty()) return false;
    if (QFileInfo(path).suffix().isEmpty()) path += ".quantlens";
    return saveProject(path);
}

void MainWindow::choosePlotFile() {
    const QString path = QFileDialog::getSaveFileName(
        this, tr("Export Plot or Data"), startDirectory(),
        tr("PNG image (*.png);;PDF document (*.pdf);;CSV data (*.csv)"));
    if (!path.isEmpty()) exportCurrentPlot(path);
}

void MainWindow::chooseExport() {
    if (runs_.empty()) {
        showError(tr("Quantize first: the export writes one of this session's runs."));
        return;
    }
    QStringList runs;
    for (const quantlens::RunRecord& run : runs_)
        runs << runSummary(run);
    auto* dialog = new ExportDialog(
        runs, exportFormats(),
        [this](int run, const QString& format) {
            return exportUnavailable(runs_.at(std::size_t(run)).config, format);
        },
        this);
    dialog->setAttribute(Qt::WA_DeleteOnClose);
    dialog->setRun(int(runs_.size()) - 1);
    connect(dialog, &QDialog::accepted, this, [this, dialog] { exportRun(dialog->request()); });
    dialog->open(); // not exec(): the event loop, and the jobs' progress, keep running
}

void MainWindow::exportRun(const ExportRequest& request) {
    if (!model_ || request.run < 0 || std::size_t(request.run) >= runs_.size()) {
        showError(tr("Open the model and choose one of this session's runs to export."));
        return;
    }
    // An export to this directory that was cancelled, failed or killed left its journal: offer to
    // continue it after its last complete block, or to start over.
    const std::filesystem::path directory = request.directory.toStdString();
    if (const auto interrupted = quantlens::RunJournal::interruptedRun(directory)) {
        QMessageBox box(QMessageBox::Question, tr("Quantlens"),
                        tr("An export to %1 was interrupted after %2 of %3 blocks.")
                            .arg(QDir::toNativeSeparators(request.directory))
                            .arg(interrupted->completedBlocks)
                            .arg(interrupted->blocks),
                        QMessageBox::Yes | QMessageBox::Discard | QMessageBox::Cancel, this);
        box.setInformativeText(tr("Resume continues it after the last complete block (the same "
                                  "run with the same settings and data); Start Over discards "
                                  "what it did."));
        box.button(QMessageBox::Yes)->setText(tr("Resume"));
        box.button(QMessageBox::Discard)->setText(tr("Start Over"));
        box.setDefaultButton(QMessageBox::Yes);
        switch (confirm_(box)) {
        case QMessageBox::Yes:
            jobs_->log(tr("Resuming the export to %1 after block %2.")
                           .arg(request.directory)
                           .arg(interrupted->completedBlocks - 1));
            break;
        case QMessageBox::Discard:
            quantlens::RunJournal::discard(directory);
            break;
        default:
            return;
        }
    }
    engine_.exportModel(model_, settings_->data(),
                        quantlens::planOf(runs_[std::size_t(request.run)]), request);
}

bool MainWindow::exportCurrentPlot(const QString& path) {
    QString error;
    if (tabs_->currentWidget() == heatmap_)
        error = exportPlot(*heatmap_->plot(), heatmap_->csv(), path);
    else if (tabs_->currentWidget() == patterns_)
        error = exportPlot(*patterns_->plot(), patterns_->csv(), path);
    else if (tabs_->currentWidget() == pareto_)
        error = exportPlot(*pareto_->plot(), pareto_->csv(), path);
    else if (tabs_->currentWidget() == modelMap_)
        error = exportPlot(*modelMap_->plot(), modelMap_->csv(), path);
    else if (tabs_->currentWidget() == layerSummary_)
        error = exportPlot(*layerSummary_->plot(), layerSummary_->csv(), path);
    else
        error = tr("Choose a chart's tab first: the overview has no plot.");
    if (!error.isEmpty())
        showError(error);
    else
        statusBar()->showMessage(tr("Wrote %1").arg(QDir::toNativeSeparators(path)), 5000);
    return error.isEmpty();
}

void MainWindow::showModel(const std::shared_ptr<const quantlens::Model>& model) {
    model_ = model;
    const QString path = QString::fromStdString(model->path.string());
    statusBar()->clearMessage();
    summary_->showModel(*model);
    if (!runs_.empty()) summary_->showRun(runs_.back());
    modelMap_->setMappingEnabled(true);
    overview_->setText(overviewText(*model));
    modelStatus_->setText(tr("%1 — %2 parameters")
                              .arg(QDir::toNativeSeparators(path),
                                   QLocale().toString(qlonglong(model->parameterCount()))));
    setWindowFilePath(path);
    rememberRecent(path);
    emit modelShown();
}

void MainWindow::analyseSelectedLayer() {
    if (!model_ || selectedBlock_ < 0) {
        showError(tr("Open a model and select one of its linear layers in the Model dock."));
        return;
    }
    engine_.analyseLayer(model_, settings_->data(), settings_->config(), selectedBlock_,
                         selectedLayer_);
}

void MainWindow::mapModel(quantlens::MapMetric metric) {
    if (!model_) return showError(tr("Open a model first."));
    if (metric != quantlens::MapMetric::RunError) {
        engine_.mapModel(model_, settings_->data(), settings_->config(), metric);
        return;
    }
    // A run's errors are in its record: nothing to compute.
    if (selectedRun_ < 0)
        return showError(tr("Quantize the model first: this map shows a run's output errors."));
    const DataSettings data = settings_->data();
    modelMap_->setMap(quantlens::modelMapOfRun(runs_[std::size_t(selectedRun_)],
                                               model_->config.layerCount,
                                               {data.sequences, data.sequenceLength}));
    emit modelMapShown();
}

void MainWindow::showAnalysis(const std::shared_ptr<const quantlens::LayerAnalysis>& analysis) {
    settings_->setLayer(analysis);
    heatmap_->setLayer(analysis);
    heatmap_->setThreshold(settings_->overlayThreshold());
    patterns_->setLayer(analysis);
    patterns_->setThreshold(settings_->overlayThreshold());
    tabs_->setCurrentWidget(heatmap_);
    emit layerShown();
}

void MainWindow::runConfigs(const std::vector<quantlens::QuantConfig>& configs) {
    if (!model_) {
        showError(tr("Open a model first."));
        return;
    }
    engine_.runQuantizations(model_, settings_->data(), configs);
}

void MainWindow::addRun(const quantlens::RunRecord& run) {
    runs_.push_back(run);
    selectedRun_ = int(runs_.size()) - 1;
    setWindowModified(true);
    pareto_->setRuns(runs_);
    pareto_->setBaseline(baseline_);
    layerSummary_->setRun(run);
    summary_->showRun(run);
    jobs_->log(runSummary(run));
    autosave();
    emit runShown();
}

void MainWindow::selectRun(int index) {
    const quantlens::RunRecord& run = runs_.at(std::size_t(index));
    selectedRun_ = index;
    settings_->setConfig(run.config);
    settings_->setTargetBits(run.targetBits);
    layerSummary_->setRun(run);
    summary_->showRun(run);
    statusBar()->showMessage(
        tr("Settings of run %1 loaded: %2").arg(index + 1).arg(runSummary(run)), 8000);
}

Project MainWindow::currentProject() const {
    return {model_ ? QString::fromStdString(model_->path.string()) : QString(),
            settings_->data(),
            settings_->config(),
            settings_->sweep(),
            baseline_,
            runs_};
}

bool MainWindow::saveProject(const QString& path) {
    try {
        ::saveProject(currentProject(), path);
    } catch (const quantlens::Error& error) {
        showError(QString::fromStdString(error.what()));
        return false;
    }
    projectPath_ = path;
    setWindowModified(false);
    statusBar()->showMessage(tr("Saved %1").arg(QDir::toNativeSeparators(path)), 5000);
    return true;
}

bool MainWindow::openProject(const QString& path) {
    Project project;
    try {
        project = loadProject(path);
    } catch (const quantlens::Error& error) {
        showError(QString::fromStdString(error.what()));
        return false;
    }
    projectPath_ = path == autosavePath() ? QString() : path;
    settings_->setData(project.data);
    settings_->setConfig(project.settings);
    settings_->setSweep(project.sweep);
    runs_ = project.runs;
    selectedRun_ = int(runs_.size()) - 1;
    baseline_ = project.baselinePerplexity;
    pareto_->setRuns(runs_);
    pareto_->setBaseline(baseline_);
    if (!runs_.empty()) layerSummary_->setRun(runs_.back());
    if (!project.modelPath.isEmpty()) openModel(project.modelPath);
    // What was just read is saved, unless it is the autosave of a session never saved.
    setWindowModified(projectPath_.isEmpty() && !(runs_.empty() && project.sweep.empty()));
    return true;
}

void MainWindow::autosave() {
    try {
        ::saveProject(currentProject(), projectPath_.isEmpty() ? autosavePath() : projectPath_);
        if (!projectPath_.isEmpty()) setWindowModified(false); // the project file has it all
    } catch (const quantlens::Error& error) {
        jobs_->log(tr("Could not save the session: %1").arg(QString::fromStdString(error.what())));
    }
}

bool MainWindow::mayClose() {
    if (!isWindowModified()) return true;
    QMessageBox box(QMessageBox::Question, tr("Quantlens"),
                    tr("This session has runs or a sweep list that are not saved in a project "
                       "file."),
                    QMessageBox::Save | QMessageBox::Discard | QMessageBox::Cancel, this);
    box.setInformativeText(tr("Save them before closing? Without saving, the last session's runs "
                              "can still be reopened with File ▸ Reopen Last Session."));
    box.setDefaultButton(QMessageBox::Save);
    switch (confirm_(box)) {
    case QMessageBox::Save:
        return projectPath_.isEmpty() ? chooseProjectToSave() : saveProject(projectPath_);
    case QMessageBox::Discard:
        return true;
    default:
        return false;
    }
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
    if (!mayClose()) {
        event->ignore();
        return;
    }
    QSettings settings;
    settings.setValue(geometryKey, saveGeometry());
    settings.setValue(stateKey, saveState());
    settings_->save(settings);
    engine_.cancelAll(); // the window goes now; the running job stops at its next checkpoint
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
