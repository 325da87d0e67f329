#include "engine_controller.h"

#include "quantlens/error.h"

#include <QMetaObject>

#include <exception>
#include <utility>

EngineController::EngineController(QObject* parent) : QObject(parent), worker_(new QObject) {
    qRegisterMetaType<std::shared_ptr<const quantlens::Model>>();
    thread_.setObjectName("quantlens engine");
    worker_->moveToThread(&thread_);
    connect(&thread_, &QThread::finished, worker_, &QObject::deleteLater);
    thread_.start();
}

EngineController::~EngineController() {
    thread_.quit();
    thread_.wait();
}

// Runs `work` on the worker thread and hands its result to `deliver` on this object's thread.
// Results that arrive after this object is gone are dropped with its pending events.
template <typename Work, typename Deliver>
void EngineController::runJob(Work work, Deliver deliver) {
    jobStarted();
    QMetaObject::invokeMethod(
        worker_,
        [this, work = std::move(work), deliver = std::move(deliver)] {
            const auto fail = [this](const QString& message) {
                QMetaObject::invokeMethod(
                    this,
                    [this, message] {
                        emit jobFailed(message);
                        jobFinished();
                    },
                    Qt::QueuedConnection);
            };
            try {
                auto result = work();
                QMetaObject::invokeMethod(
                    this,
                    [this, deliver, result = std::move(result)] {
                        deliver(result);
                        jobFinished();
                    },
                    Qt::QueuedConnection);
            } catch (const quantlens::Error& error) {
                fail(QString::fromStdString(error.what()));
            } catch (const std::exception& error) {
                // Not an engine error, so a bug; report it rather than lose it.
                fail(QString("internal error: %1").arg(error.what()));
            }
        },
        Qt::QueuedConnection);
}

void EngineController::openModel(const QString& path) {
    runJob(
        [path] {
            return std::shared_ptr<const quantlens::Model>(
                quantlens::loadModel(path.toStdString()));
        },
        [this](const std::shared_ptr<const quantlens::Model>& model) { emit modelOpened(model); });
}

void EngineController::jobStarted() {
    if (pendingJobs_++ == 0) emit busyChanged(true);
}

void EngineController::jobFinished() {
    if (--pendingJobs_ == 0) emit busyChanged(false);
}
