#pragma once

#include "backend_setup.h"
#include "engine_controller.h"

#include <QMainWindow>
#include <QMessageBox>

#include <functional>
#include <limits>
#include <memory>
#include <vector>

class HeatmapView;
class JobsPanel;
class LayerSummaryView;
class ModelMapView;
class ModelSummaryView;
class OutlierPatternView;
class ParetoView;
class QuantSettingsPanel;
class QLabel;
class QMenu;
class QProgressBar;
class QTabWidget;
struct Project;

// The studio's frame: docks for the model's outline ("Model"), the method settings ("Settings")
// and the engine's jobs ("Jobs"); a central tab area with an overview, the whole-model map, the
// selected layer's sensitivity heatmap and outlier patterns, the runs' bits-vs-quality chart and
// the per-layer summary of the selected run; a status line naming the loaded model. All work goes
// through EngineController; the window keeps only what it shows.
class MainWindow : public QMainWindow {
    Q_OBJECT

public:
    // `backends`: the devices the Jobs dock offers (the ones this build and machine have).
    explicit MainWindow(quantlens::BackendRegistry backends = quantlens::makeBackendRegistry(),
                        QWidget* parent = nullptr);

    // Loads an HF directory or a llama2.c .bin in the background; the result arrives as
    // modelShown() or errorShown().
    void openModel(const QString& path);
    // Saves the session (model, settings, runs) as a project file; errors go to errorShown().
    bool saveProject(const QString& path);
    // Restores a saved session and reopens its model.
    bool openProject(const QString& path);
    // Writes the current tab's plot as .png or .pdf, or its data as .csv; errors go to
    // errorShown().
    bool exportCurrentPlot(const QString& path);
    // Exports a run of this session as the request says; exportFinished() or errorShown() follows.
    void exportRun(const ExportRequest& request);

    const std::vector<quantlens::RunRecord>& runs() const { return runs_; }
    EngineController& engine() { return engine_; }

    // Shows a question `box` (unsaved work when the window closes; an interrupted export to
    // resume; the CPU for a job whose GPU failed) and returns the button chosen; replaceable so
    // that the questions can be answered without a person.
    using Confirmation = std::function<QMessageBox::StandardButton(QMessageBox& box)>;
    void setConfirmation(Confirmation confirm) { confirm_ = std::move(confirm); }

signals:
    // After the model's outline and the status line show a newly opened model.
    void modelShown();
    // After a layer's heatmap, outlier patterns and threshold preview show a new analysis.
    void layerShown();
    // After a finished run is on the chart and in the session.
    void runShown();
    // After the Model Map tab shows a new map.
    void modelMapShown();
    void exportFinished(const QString& directory);
    // After an error has been put in front of the user (without blocking).
    void errorShown(const QString& message);

protected:
    void closeEvent(QCloseEvent* event) override;
    void dragEnterEvent(QDragEnterEvent* event) override;
    void dropEvent(QDropEvent* event) override;

private:
    void createDocks();
    void createMenus();
    void connectEngine();
    void showModel(const std::shared_ptr<const quantlens::Model>& model);
    void showAnalysis(const std::shared_ptr<const quantlens::LayerAnalysis>& analysis);
    void addRun(const quantlens::RunRecord& run);
    void selectRun(int index);
    void showError(const QString& message);
    void showDevices(const std::vector<quantlens::ComputeDevice>& devices,
                     const std::vector<quantlens::BackendRegistry::Unavailable>& unavailable);
    // Jobs asked for from now on run on `id`, this session and the next.
    void useDevice(const QString& id);
    // Offers the CPU for a job whose device failed.
    void offerCpu(int job, const QString& device, const QString& message);
    void analyseSelectedLayer();
    // Has the engine compute the whole-model map of `metric`, or draws a run's output errors.
    void mapModel(quantlens::MapMetric metric);
    void runConfigs(const std::vector<quantlens::QuantConfig>& configs);
    void chooseModelDirectory();
    void chooseCheckpoint();
    void chooseProjectToOpen();
    bool chooseProjectToSave();
    void choosePlotFile();
    void chooseExport();
    void rememberRecent(const QString& path);
    void rebuildRecentMenu();
    Project currentProject() const;
    // Keeps runs safe: the session is written after each run to its project file, or to the
    // autosave file until it has one.
    void autosave();
    // Whether the window may close: asks about unsaved work (runs or a sweep list not in a project
    // file) and saves it if asked to.
    bool mayClose();

    EngineController engine_;
    std::shared_ptr<const quantlens::Model> model_;
    std::vector<quantlens::RunRecord> runs_;
    double baseline_ = std::numeric_limits<double>::quiet_NaN();
    int selectedBlock_ = -1;
    int selectedRun_ = -1; // the run the Layers view and the tree show
    QString selectedLayer_;
    QString projectPath_;
    Confirmation confirm_ = [](QMessageBox& box) {
        return QMessageBox::StandardButton(box.exec());
    };

    ModelSummaryView* summary_;
    QuantSettingsPanel* settings_;
    JobsPanel* jobs_;
    QTabWidget* tabs_;
    QLabel* overview_;
    HeatmapView* heatmap_;
    OutlierPatternView* patterns_;
    ParetoView* pareto_;
    ModelMapView* modelMap_;
    LayerSummaryView* layerSummary_;
    QLabel* modelStatus_;
    QProgressBar* busyIndicator_;
    QMenu* recentMenu_ = nullptr;
};
