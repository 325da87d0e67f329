#pragma once

#include "export_dialog.h"
#include "job_outcome.h"
#include "quant_settings_panel.h"

#include "quantlens/model/model.h"
#include "quantlens/quantization/layer_calibration.h"
#include "quantlens/quantization/model_map.h"
#include "quantlens/quantization/run_record.h"
#include "quantlens/runtime/backend_registry.h"

#include <QHash>
#include <QObject>
#include <QString>
#include <QThread>

#include <atomic>
#include <functional>
#include <memory>
#include <optional>
#include <vector>

namespace quantlens {
class JobContext;
}

// The GUI's only way into the engine: every job runs on one worker thread, and its result or error
// comes back as a signal emitted on the controller's (GUI) thread, so the GUI never computes and
// never blocks. Jobs run one after another in the order they were asked for; each has an id, its
// progress is reported as it goes, and cancel() stops it at the engine's next checkpoint. Jobs run
// on the device chosen with setDevice() when they were asked for; a device that fails ends its job
// (deviceFailed) and the job can be run again on the CPU (retryOnCpu), never silently.
class EngineController : public QObject {
    Q_OBJECT

public:
    using ModelPtr = std::shared_ptr<const quantlens::Model>;
    using AnalysisPtr = std::shared_ptr<const quantlens::LayerAnalysis>;

    // `backends`: the devices jobs may run on (makeBackendRegistry() for the studio's own).
    explicit EngineController(quantlens::BackendRegistry backends, QObject* parent = nullptr);
    // Cancels every job, waits for the running one to stop, and stops the worker.
    ~EngineController() override;

    bool isBusy() const { return pendingJobs_ > 0; }

    // The registry id ("cpu", "cuda:0") of the device that jobs asked for from now on run on; the
    // CPU until set. A device that cannot be opened fails the jobs asked of it, with the reason.
    void setDevice(const QString& id) { device_ = id; }
    QString device() const { return device_; }

    // Each returns the job's id.
    // The devices and the kinds without one (querying a GPU driver takes a moment, so on the
    // worker): devicesListed follows.
    int listDevices();
    // Runs again, on the CPU, a job that ended with deviceFailed; -1 when `job` did not.
    int retryOnCpu(int job);
    int openModel(const QString& path);
    // Previews a layer's sensitivity in the form `config`'s method uses. SqueezeLLM: the Fisher
    // form, from the diagonal Fisher of the whole model on the calibration text (kept for every
    // other layer). Other methods: the OBS form of SpQR's base quantizer with the method's bits
    // and groups, from the Hessians of the unquantized model's block (kept for its other layers).
    // A request replaces the analysis still waiting (it ends Cancelled, "replaced by a newer
    // analysis"), so clicking through layers never builds a queue; a running one finishes.
    int analyseLayer(ModelPtr model, const DataSettings& data, const quantlens::QuantConfig& config,
                     int block, const QString& layer);
    // The whole-model map of `metric` (computeModelMap) with `config`'s quantizer on the data's
    // calibration text (and evaluation text for SoloKl). A map computed before for the same
    // model, settings and text is read from the map cache (mapCacheDirectory()) instead, and a new
    // one stored there.
    int mapModel(ModelPtr model, const DataSettings& data, const quantlens::QuantConfig& config,
                 quantlens::MapMetric metric);
    // Scores the unquantized model (baselineEvaluated), then quantizes and scores each config in
    // turn (runFinished after each, so a cancelled sweep keeps the runs it finished). With
    // `targetBits`, each config is a method whose bit budget is run instead: its layers measured
    // with budgetCandidates() (once per model, data and method, kept for later targets) and each
    // given the settings allocateBits() chooses.
    int runQuantizations(ModelPtr model, const DataSettings& data,
                         const std::vector<quantlens::QuantConfig>& configs,
                         std::optional<double> targetBits = std::nullopt);
    // Quantizes with `plan` and writes the result as request.format (a key of exportFormats())
    // into request.directory.
    int exportModel(ModelPtr model, const DataSettings& data, const quantlens::QuantPlan& plan,
                    const ExportRequest& request);

    // Where computed model maps are kept: the user's cache location, maps/.
    QString mapCacheDirectory() const { return mapCacheDirectory_; }

public slots:
    void cancel(int job);
    void cancelAll();

signals:
    void modelOpened(std::shared_ptr<const quantlens::Model> model);
    void layerAnalysed(std::shared_ptr<const quantlens::LayerAnalysis> analysis);
    void modelMapped(const quantlens::ModelMap& map);
    void baselineEvaluated(double perplexity);
    void runFinished(const quantlens::RunRecord& run);
    void exportFinished(const QString& directory);
    // The engine's error text ("file: message"), readable as it is.
    void jobFailed(const QString& message);
    void busyChanged(bool busy);
    void devicesListed(const std::vector<quantlens::ComputeDevice>& devices,
                       const std::vector<quantlens::BackendRegistry::Unavailable>& unavailable);
    // Job `job` failed on its device (its jobEnded carries the same message); retryOnCpu(job)
    // runs it on the CPU.
    void deviceFailed(int job, const QString& device, const QString& message);

    void jobQueued(int job, const QString& title);
    // The job began, on `device` (Backend::name()).
    void jobStarted(int job, const QString& device);
    void jobProgress(int job, double fraction, const QString& stage);
    // Something the user should know that did not stop the job (a device path that runs on the
    // CPU instead, and why).
    void jobNoted(int job, const QString& text);
    void jobEnded(int job, JobOutcome outcome, const QString& message);

private:
    struct WorkerCache;
    using Superseded = std::shared_ptr<std::atomic<bool>>;
    // `superseded`, when given and set by the time the job would start, drops it unstarted. The
    // job runs on `device`, else on the one set now.
    template <typename Work, typename Deliver>
    int runJob(const QString& title, Work work, Deliver deliver, Superseded superseded = {},
               QString device = {});
    Superseded supersedeAnalysis();
    // `onDevice`: the job failed because its device did (deviceFailed, not jobFailed).
    void jobFinished(int job, JobOutcome outcome, const QString& message, bool onDevice = false);

    QThread thread_;
    const quantlens::BackendRegistry backends_; // read by jobs
    QString device_ = "cpu";
    QObject* worker_;                    // lives on thread_; jobs are queued calls on it
    std::shared_ptr<WorkerCache> cache_; // touched only by jobs, on thread_
    QHash<int, std::shared_ptr<quantlens::JobContext>> jobs_;
    Superseded waitingAnalysis_; // the newest analysis request's flag
    // How to ask again, on the CPU, for each job that failed on its device.
    QHash<int, std::function<int()>> retryOnCpu_;
    QString mapCacheDirectory_;
    int nextJob_ = 1;
    int pendingJobs_ = 0;
};

Q_DECLARE_METATYPE(std::shared_ptr<const quantlens::LayerAnalysis>)
Q_DECLARE_METATYPE(quantlens::RunRecord)
Q_DECLARE_METATYPE(quantlens::ModelMap)
Q_DECLARE_METATYPE(std::vector<quantlens::ComputeDevice>)
Q_DECLARE_METATYPE(std::vector<quantlens::BackendRegistry::Unavailable>)
