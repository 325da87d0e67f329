#include "engine_controller.h"

#include "model_export.h"
#include "progress_relay.h"

#include "quantlens/core/error.h"
#include "quantlens/formats/model_loading.h"
#include "quantlens/model/token_streams.h"
#include "quantlens/runtime/perplexity.h"

#include <QMetaObject>

#include <chrono>
#include <cmath>
#include <exception>
#include <limits>
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

// The OBS analysis uses SpQR's base quantizer; RTN and GPTQ lend it their bits and groups.
quantlens::SpqrConfig obsAnalysisConfig(const quantlens::QuantConfig& config) {
    if (const auto* spqr = std::get_if<quantlens::SpqrConfig>(&config)) return *spqr;
    quantlens::SpqrConfig spqr;
    spqr.wbits = quantlens::weightBits(config);
    if (const auto* gptq = std::get_if<quantlens::GptqConfig>(&config))
        spqr.groupsize = gptq->groupsize;
    if (const auto* rtn = std::get_if<quantlens::RtnConfig>(&config))
        spqr.groupsize = rtn->groupsize;
    return spqr;
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
};

EngineController::EngineController(QObject* parent)
    : QObject(parent), worker_(new QObject), cache_(std::make_shared<WorkerCache>()) {
    qRegisterMetaType<std::shared_ptr<const quantlens::Model>>();
    qRegisterMetaType<std::shared_ptr<const quantlens::LayerAnalysis>>();
    qRegisterMetaType<quantlens::RunRecord>();
    qRegisterMetaType<JobOutcome>();
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
                             Superseded superseded) {
    const int id = nextJob_++;
    auto relay =
        std::make_shared<ProgressRelay>(this, [this, id](double fraction, const QString& stage) {
            if (jobs_.contains(id)) emit jobProgress(id, fraction, stage);
        });
    auto context = std::make_shared<quantlens::JobContext>(
        [relay](double fraction, const std::string& stage) { relay->report(fraction, stage); });
    jobs_.insert(id, context);
    if (pendingJobs_++ == 0) emit busyChanged(true);
    emit jobQueued(id, title);
    QMetaObject::invokeMethod(
        worker_,
        [this, id, context, relay, work = std::move(work), deliver = std::move(deliver),
         superseded = std::move(superseded)] {
            const auto end = [this, id](JobOutcome outcome, const QString& message) {
                QMetaObject::invokeMethod(
                    this, [this, id, outcome, message] { jobFinished(id, outcome, message); },
                    Qt::QueuedConnection);
            };
            if (superseded && superseded->load())
                return end(JobOutcome::Cancelled, tr("replaced by a newer analysis"));
            try {
                context->checkpoint(); // cancelled while it waited
                auto result = work(*context, *relay);
                QMetaObject::invokeMethod(
                    this,
                    [this, id, deliver, result = std::move(result)] {
                        deliver(result);
                        jobFinished(id, JobOutcome::Finished, {});
                    },
                    Qt::QueuedConnection);
            } catch (const quantlens::Cancelled&) {
                end(JobOutcome::Cancelled, tr("cancelled"));
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

void EngineController::jobFinished(int job, JobOutcome outcome, const QString& message) {
    jobs_.remove(job);
    if (outcome == JobOutcome::Failed) emit jobFailed(message);
    emit jobEnded(job, outcome, message);
    if (--pendingJobs_ == 0) emit busyChanged(false);
}

void EngineController::cancel(int job) {
    if (const auto it = jobs_.find(job); it != jobs_.end()) (*it)->requestCancel();
}

void EngineController::cancelAll() {
    for (const auto& context : std::as_const(jobs_))
        context->requestCancel();
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
        [model, data, spqr = obsAnalysisConfig(config), block, layer,
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
            return AnalysisPtr(std::make_shared<const quantlens::LayerAnalysis>(
                quantlens::analyseLayer(*model, *cache->calibration, layer.toStdString(), spqr)));
        },
        [this](const AnalysisPtr& analysis) { emit layerAnalysed(analysis); }, supersedeAnalysis());
}

int EngineController::runQuantizations(ModelPtr model, const DataSettings& data,
                                       const std::vector<quantlens::QuantConfig>& configs) {
    const QString title =
        configs.size() == 1
            ? tr("Quantize %1").arg(QString::fromStdString(quantlens::describe(configs.front())))
            : tr("Sweep of %1 runs").arg(configs.size());
    return runJob(
        title,
        [this, model, data, configs, cache = cache_](const quantlens::JobContext& job,
                                                     ProgressRelay& relay) {
            bool calibrated = false;
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
                const quantlens::QuantizedModel quantized = quantlens::quantizeInMemory(
                    *model, calibration, configs[i], calibrationOf(data), job);
                relay.setPhase((double(i + 1) + 0.7) * part, 0.3 * part, run);
                const quantlens::PerplexityResult scored = quantlens::evaluatePerplexity(
                    quantlens::Transformer(*quantized.model), evaluation, scoring, job, &reference);
                const quantlens::RunRecord record = quantlens::makeRunRecord(
                    configs[i], quantized.result, scored, secondsSince(started));
                QMetaObject::invokeMethod(
                    this, [this, record] { emit runFinished(record); }, Qt::QueuedConnection);
            }
            return configs.size();
        },
        [](std::size_t) {});
}

int EngineController::exportModel(ModelPtr model, const DataSettings& data,
                                  const quantlens::QuantConfig& config,
                                  const ExportRequest& request) {
    return runJob(
        tr("Export to %1").arg(request.directory),
        [model, data, config, request](const quantlens::JobContext& job, ProgressRelay&) {
            const bool calibrated =
                quantlens::needsHessian(config) || quantlens::needsFisher(config);
            const auto calibration =
                calibrated || !data.calibrationFile.isEmpty()
                    ? tokenStream(*model, data.calibrationFile, tr("calibration text"))
                    : std::vector<std::int32_t>{};
            // Resumable: a cancelled or failed export keeps its journal, and exporting the same
            // run to the same directory again continues it (MainWindow asks first).
            ::exportModel(*model, calibration, config, calibrationOf(data), request.format,
                          request.directory, quantlens::Interruption::Resume, job);
            return request.directory;
        },
        [this](const QString& directory) { emit exportFinished(directory); });
}
