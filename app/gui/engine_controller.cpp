#include "engine_controller.h"

#include "model_export.h"
#include "progress_relay.h"

#include "quantlens/core/error.h"
#include "quantlens/formats/model_loading.h"
#include "quantlens/formats/model_map_file.h"
#include "quantlens/model/token_streams.h"
#include "quantlens/quantization/bit_budget.h"
#include "quantlens/runtime/perplexity.h"

#include <QDir>
#include <QMetaObject>
#include <QStandardPaths>

#include <chrono>
#include <cmath>
#include <exception>
#include <limits>
#include <map>
#include <string>
#include <utility>

namespace {

using quantlens::PerplexityProtocol;

// The token stream of a text or token file named in the Settings panel; `what` names the setting
// when it is empty.
std::vector<std::int32_t> tokenStream(const quantlens::Model& model, const QString& file,
                                      const QString& what) {
    if (file.isEmpty())
        throw quantlens::Error(
            "", QObject::tr("choose the %1 in the Settings panel").arg(what).toStdString());
    return quantlens::readTokenStream(file.toStdString(), model, "", PerplexityProtocol::Documents);
}

quantlens::CalibrationConfig calibrationOf(const DataSettings& data) {
    return {data.sequences, data.sequenceLength};
}

// The plan of `method`'s bit budget at `targetBits`, from its measurement in `measured` (made
// here the first time, over budgetCandidates(method)).
quantlens::QuantPlan budgetPlan(const quantlens::Model& model,
                                std::span<const std::int32_t> calibration,
                                const quantlens::QuantConfig& method,
                                const quantlens::CalibrationConfig& config, double targetBits,
                                std::map<std::string, quantlens::BudgetMeasurement>& measured,
                                const quantlens::JobContext& job) {
    auto found = measured.find(quantlens::describe(method));
    if (found == measured.end())
        found =
            measured
                .emplace(quantlens::describe(method),
                         quantlens::measureLayerCurves(model, calibration, config, method,
                                                       quantlens::budgetCandidates(method), job))
                .first;
    return quantlens::allocateBits(found->second, targetBits).plan;
}

// A device that cannot be opened fails its job as a device: the CPU can still be offered.
std::shared_ptr<const quantlens::Backend> openBackend(const quantlens::BackendRegistry& registry,
                                                      const QString& device) {
    try {
        return registry.open(device.toStdString());
    } catch (const quantlens::DeviceFailure&) {
        throw;
    } catch (const quantlens::Error& error) {
        throw quantlens::DeviceFailure(error.source(), error.message());
    }
}

double secondsSince(std::chrono::steady_clock::time_point start) {
    return std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
}

} // namespace

// What jobs remember between runs, so switching layers within a block or adding runs to a sweep
// repeats no work. Only jobs touch it, one at a time on the worker thread.
struct EngineController::WorkerCache {
    std::weak_ptr<const quantlens::Model> calibratedModel;
    DataSettings calibratedData;
    std::shared_ptr<const quantlens::BlockCalibration> calibration;

    std::weak_ptr<const quantlens::Model> fisherModel;
    DataSettings fisherData;
    std::shared_ptr<const quantlens::FisherInformation> fisher;

    std::weak_ptr<const quantlens::Model> scoredModel;
    DataSettings scoredData;
    double baseline = std::numeric_limits<double>::quiet_NaN();

    // The devices opened so far, by registry id: a GPU's backend is set up once.
    std::map<QString, std::shared_ptr<const quantlens::Backend>> backends;
    std::shared_ptr<const quantlens::Backend> backend(const quantlens::BackendRegistry& registry,
                                                      const QString& device) {
        std::shared_ptr<const quantlens::Backend>& opened = backends[device];
        if (!opened) opened = openBackend(registry, device);
        return opened;
    }

    // Bit-budget measurements by method settings (describe()), for budgetModel and budgetData.
    std::weak_ptr<const quantlens::Model> budgetModel;
    DataSettings budgetData;
    std::map<std::string, quantlens::BudgetMeasurement> budgets;
};

EngineController::EngineController(quantlens::BackendRegistry backends, QObject* parent)
    : QObject(parent), backends_(std::move(backends)), worker_(new QObject),
      cache_(std::make_shared<WorkerCache>()),
      mapCacheDirectory_(
          QDir(QStandardPaths::writableLocation(QStandardPaths::CacheLocation)).filePath("maps")) {
    qRegisterMetaType<std::shared_ptr<const quantlens::Model>>();
    qRegisterMetaType<quantlens::ModelMap>();
    qRegisterMetaType<std::shared_ptr<const quantlens::LayerAnalysis>>();
    qRegisterMetaType<quantlens::RunRecord>();
    qRegisterMetaType<JobOutcome>();
    qRegisterMetaType<std::vector<quantlens::ComputeDevice>>();
    qRegisterMetaType<std::vector<quantlens::BackendRegistry::Unavailable>>();
    thread_.setObjectName("quantlens engine");
    worker_->moveToThread(&thread_);
    connect(&thread_, &QThread::finished, worker_, &QObject::deleteLater);
    thread_.start();
}

EngineController::~EngineController() {
    cancelAll();
    thread_.quit();
    thread_.wait();
}

// Runs `work` on the worker thread and hands its result to `deliver` on this object's thread.
// Results that arrive after this object is gone are dropped with its pending events.
template <typename Work, typename Deliver>
int EngineController::runJob(const QString& title, Work work, Deliver deliver,
                             Superseded superseded, QString device) {
    const int id = nextJob_++;
    if (device.isEmpty()) device = device_;
    if (device != "cpu")
        retryOnCpu_.insert(id, [this, title, work, deliver] {
            return runJob(tr("%1 (on the CPU)").arg(title), work, deliver, {}, "cpu");
        });
    auto relay =
        std::make_shared<ProgressRelay>(this, [this, id](double fraction, const QString& stage) {
            if (jobs_.contains(id)) emit jobProgress(id, fraction, stage);
        });
    auto context = std::make_shared<quantlens::JobContext>(
        [relay](double fraction, const std::string& stage) { relay->report(fraction, stage); },
        nullptr,
        [this, id](const std::string& text) {
            QMetaObject::invokeMethod(
                this,
                [this, id, text = QString::fromStdString(text)] {
                    if (jobs_.contains(id)) emit jobNoted(id, text);
                },
                Qt::QueuedConnection);
        });
    jobs_.insert(id, context);
    if (pendingJobs_++ == 0) emit busyChanged(true);
    emit jobQueued(id, title);
    QMetaObject::invokeMethod(
        worker_,
        [this, id, context, relay, work = std::move(work), deliver = std::move(deliver),
         superseded = std::move(superseded), device, cache = cache_] {
            const auto end = [this, id](JobOutcome outcome, const QString& message,
                                        bool onDevice = false) {
                QMetaObject::invokeMethod(
                    this,
                    [this, id, outcome, message, onDevice] {
                        jobFinished(id, outcome, message, onDevice);
                    },
                    Qt::QueuedConnection);
            };
            if (superseded && superseded->load())
                return end(JobOutcome::Cancelled, tr("replaced by a newer analysis"));
            try {
                context->checkpoint(); // cancelled while it waited
                const quantlens::JobContext onDevice(*context, cache->backend(backends_, device));
                QMetaObject::invokeMethod(
                    this,
                    [this, id, name = QString::fromStdString(onDevice.backend().name())] {
                        emit jobStarted(id, name);
                    },
                    Qt::QueuedConnection);
                auto result = work(onDevice, *relay);
                QMetaObject::invokeMethod(
                    this,
                    [this, id, deliver, result = std::move(result)] {
                        deliver(result);
                        jobFinished(id, JobOutcome::Finished, {});
                    },
                    Qt::QueuedConnection);
            } catch (const quantlens::Cancelled&) {
                end(JobOutcome::Cancelled, tr("cancelled"));
            } catch (const quantlens::DeviceFailure& failure) {
                cache->backends.erase(device); // opened afresh next time: the failure may stick
                end(JobOutcome::Failed, QString::fromStdString(failure.what()), true);
            } catch (const quantlens::Error& error) {
                end(JobOutcome::Failed, QString::fromStdString(error.what()));
            } catch (const std::exception& error) {
                // Not an engine error, so a bug; report it rather than lose it.
                end(JobOutcome::Failed, QString("internal error: %1").arg(error.what()));
            }
        },
        Qt::QueuedConnection);
    return id;
}

void EngineController::jobFinished(int job, JobOutcome outcome, const QString& message,
                                   bool onDevice) {
    jobs_.remove(job);
    if (!onDevice) retryOnCpu_.remove(job);
    if (outcome == JobOutcome::Failed && !onDevice) emit jobFailed(message);
    emit jobEnded(job, outcome, message);
    if (onDevice) emit deviceFailed(job, device_, message);
    if (--pendingJobs_ == 0) emit busyChanged(false);
}

void EngineController::cancel(int job) {
    if (const auto it = jobs_.find(job); it != jobs_.end()) (*it)->requestCancel();
}

void EngineController::cancelAll() {
    for (const auto& context : std::as_const(jobs_))
        context->requestCancel();
}

int EngineController::listDevices() {
    using Listing = std::pair<std::vector<quantlens::ComputeDevice>,
                              std::vector<quantlens::BackendRegistry::Unavailable>>;
    return runJob(
        tr("List devices"),
        [this](const quantlens::JobContext&, ProgressRelay&) {
            return Listing{backends_.devices(), backends_.unavailable()};
        },
        [this](const Listing& listing) { emit devicesListed(listing.first, listing.second); }, {},
        "cpu");
}

int EngineController::retryOnCpu(int job) {
    const std::function<int()> retry = retryOnCpu_.take(job);
    return retry ? retry() : -1;
}

int EngineController::openModel(const QString& path) {
    return runJob(
        tr("Open %1").arg(path),
        [path](const quantlens::JobContext&, ProgressRelay&) {
            return ModelPtr(quantlens::loadModel(path.toStdString()));
        },
        [this](const ModelPtr& model) { emit modelOpened(model); });
}

EngineController::Superseded EngineController::supersedeAnalysis() {
    if (waitingAnalysis_) waitingAnalysis_->store(true);
    waitingAnalysis_ = std::make_shared<std::atomic<bool>>(false);
    return waitingAnalysis_;
}

int EngineController::analyseLayer(ModelPtr model, const DataSettings& data,
                                   const quantlens::QuantConfig& config, int block,
                                   const QString& layer) {
    if (const auto* squeeze = std::get_if<quantlens::SqueezeConfig>(&config))
        return runJob(
            tr("Analyse block %1 %2 (Fisher)").arg(block).arg(layer),
            [model, data, squeeze = *squeeze, block, layer,
             cache = cache_](const quantlens::JobContext& job, ProgressRelay& relay) {
                if (!cache->fisher || cache->fisherModel.lock() != model ||
                    !(cache->fisherData == data)) {
                    cache->fisher.reset();
                    const auto stream =
                        tokenStream(*model, data.calibrationFile, tr("calibration text"));
                    relay.setPhase(0.0, 0.9, tr("Fisher: "));
                    cache->fisher = std::make_shared<const quantlens::FisherInformation>(
                        quantlens::accumulateFisher(*model,
                                                    quantlens::calibrationSequences(
                                                        stream, calibrationOf(data), model->config,
                                                        data.calibrationFile.toStdString()),
                                                    job));
                    cache->fisherModel = model;
                    cache->fisherData = data;
                }
                relay.setPhase(0.9, 0.1, {});
                job.report(0.0, tr("clustering %1").arg(layer).toStdString());
                return AnalysisPtr(
                    std::make_shared<const quantlens::LayerAnalysis>(quantlens::analyseLayerFisher(
                        *model, *cache->fisher, block, layer.toStdString(), squeeze, job)));
            },
            [this](const AnalysisPtr& analysis) { emit layerAnalysed(analysis); },
            supersedeAnalysis());
    return runJob(
        tr("Analyse block %1 %2").arg(block).arg(layer),
        [model, data, spqr = quantlens::obsAnalysisConfig(config), block, layer,
         cache = cache_](const quantlens::JobContext& job, ProgressRelay&) {
            if (!cache->calibration || cache->calibratedModel.lock() != model ||
                !(cache->calibratedData == data) || cache->calibration->block != block) {
                cache->calibration.reset();
                const auto stream =
                    tokenStream(*model, data.calibrationFile, tr("calibration text"));
                cache->calibration = std::make_shared<const quantlens::BlockCalibration>(
                    quantlens::calibrateBlock(*model, stream, calibrationOf(data), block, job));
                cache->calibratedModel = model;
                cache->calibratedData = data;
            }
            return AnalysisPtr(
                std::make_shared<const quantlens::LayerAnalysis>(quantlens::analyseLayer(
                    *model, *cache->calibration, layer.toStdString(), spqr, job)));
        },
        [this](const AnalysisPtr& analysis) { emit layerAnalysed(analysis); }, supersedeAnalysis());
}

int EngineController::mapModel(ModelPtr model, const DataSettings& data,
                               const quantlens::QuantConfig& config, quantlens::MapMetric metric) {
    const auto& info = quantlens::mapMetricInfo(metric);
    return runJob(
        tr("Map %1 (%2)")
            .arg(QString::fromUtf8(info.key.data(), qsizetype(info.key.size())),
                 QString::fromStdString(quantlens::describe(config))),
        [model, data, config, metric,
         directory = mapCacheDirectory_](const quantlens::JobContext& job, ProgressRelay&) {
            const quantlens::ModelMapRequest request{
                metric, config, calibrationOf(data), {data.context, PerplexityProtocol::Documents}};
            const auto calibration =
                tokenStream(*model, data.calibrationFile, tr("calibration text"));
            const auto evaluation =
                metric == quantlens::MapMetric::SoloKl
                    ? tokenStream(*model, data.evaluationFile, tr("evaluation text"))
                    : std::vector<std::int32_t>{};
            return quantlens::ModelMapCache(directory.toStdString())
                .mapOf(*model, request, calibration, evaluation, job);
        },
        [this](const quantlens::ModelMap& map) { emit modelMapped(map); });
}

int EngineController::runQuantizations(ModelPtr model, const DataSettings& data,
                                       const std::vector<quantlens::QuantConfig>& configs,
                                       std::optional<double> targetBits) {
    const QString what = targetBits ? tr("budget %1 bits, ").arg(*targetBits, 0, 'f', 2) : "";
    const QString title =
        configs.size() == 1
            ? tr("Quantize %1%2")
                  .arg(what, QString::fromStdString(quantlens::describe(configs.front())))
            : tr("Sweep of %1 runs").arg(configs.size());
    return runJob(
        title,
        [this, model, data, configs, targetBits, cache = cache_](const quantlens::JobContext& job,
                                                                 ProgressRelay& relay) {
            bool calibrated = targetBits.has_value(); // a budget measures on calibration text
            if (cache->budgetModel.lock() != model || !(cache->budgetData == data)) {
                cache->budgets.clear();
                cache->budgetModel = model;
                cache->budgetData = data;
            }
            for (const quantlens::QuantConfig& config : configs)
                calibrated |= quantlens::needsHessian(config) || quantlens::needsFisher(config);
            const auto calibration =
                calibrated || !data.calibrationFile.isEmpty()
                    ? tokenStream(*model, data.calibrationFile, tr("calibration text"))
                    : std::vector<std::int32_t>{};
            const auto evaluation = tokenStream(*model, data.evaluationFile, tr("evaluation text"));
            const quantlens::PerplexityConfig scoring{data.context, PerplexityProtocol::Documents};
            const quantlens::Transformer reference(*model);
            // The baseline counts as one part, each run as one more: 70% quantizing, 30% scoring.
            const double part = 1.0 / double(configs.size() + 1);
            if (cache->scoredModel.lock() != model || !(cache->scoredData == data)) {
                relay.setPhase(0.0, part, tr("unquantized: "));
                cache->baseline =
                    quantlens::evaluatePerplexity(reference, evaluation, scoring, job).perplexity;
                cache->scoredModel = model;
                cache->scoredData = data;
            }
            QMetaObject::invokeMethod(
                this, [this, baseline = cache->baseline] { emit baselineEvaluated(baseline); },
                Qt::QueuedConnection);
            for (std::size_t i = 0; i < configs.size(); ++i) {
                const auto started = std::chrono::steady_clock::now();
                const QString run = tr("run %1/%2, ").arg(i + 1).arg(configs.size());
                relay.setPhase(double(i + 1) * part, 0.7 * part, run);
                const quantlens::QuantPlan plan =
                    targetBits ? budgetPlan(*model, calibration, configs[i], calibrationOf(data),
                                            *targetBits, cache->budgets,
                                            quantlens::JobContext(job, 0.0, 0.8))
                               : quantlens::QuantPlan(configs[i]);
                const quantlens::QuantizedModel quantized = quantlens::quantizeInMemory(
                    *model, calibration, plan, calibrationOf(data),
                    quantlens::JobContext(job, targetBits ? 0.8 : 0.0, 1.0));
                relay.setPhase((double(i + 1) + 0.7) * part, 0.3 * part, run);
                const quantlens::PerplexityResult scored = quantlens::evaluatePerplexity(
                    quantlens::Transformer(*quantized.model), evaluation, scoring, job, &reference);
                quantlens::RunRecord record = quantlens::makeRunRecord(
                    configs[i], quantized.result, scored, secondsSince(started));
                record.targetBits = targetBits;
                record.device = job.backend().name();
                QMetaObject::invokeMethod(
                    this, [this, record] { emit runFinished(record); }, Qt::QueuedConnection);
            }
            return configs.size();
        },
        [](std::size_t) {});
}

int EngineController::exportModel(ModelPtr model, const DataSettings& data,
                                  const quantlens::QuantPlan& plan, const ExportRequest& request) {
    return runJob(
        tr("Export to %1").arg(request.directory),
        [model, data, plan, request](const quantlens::JobContext& job, ProgressRelay&) {
            const bool calibrated =
                quantlens::needsHessian(plan.method()) || quantlens::needsFisher(plan.method());
            const auto calibration =
                calibrated || !data.calibrationFile.isEmpty()
                    ? tokenStream(*model, data.calibrationFile, tr("calibration text"))
                    : std::vector<std::int32_t>{};
            // Resumable: a cancelled or failed export keeps its journal, and exporting the same
            // run to the same directory again continues it (MainWindow asks first).
            ::exportModel(*model, calibration, plan, calibrationOf(data), request.format,
                          request.directory, quantlens::Interruption::Resume, job);
            return request.directory;
        },
        [this](const QString& directory) { emit exportFinished(directory); });
}
