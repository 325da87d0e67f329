#pragma once

#include "quantlens/model.h"

#include <QObject>
#include <QString>
#include <QThread>

#include <memory>

// The GUI's only way into the engine: every job runs on one worker thread, and its result or error
// comes back as a signal emitted on the controller's (GUI) thread, so the GUI never computes and
// never blocks. Jobs run one after another in the order they were asked for.
class EngineController : public QObject {
    Q_OBJECT

public:
    explicit EngineController(QObject* parent = nullptr);
    // Waits for the running job, if any, and stops the worker; pending jobs are dropped.
    ~EngineController() override;

    bool isBusy() const { return pendingJobs_ > 0; }

public slots:
    void openModel(const QString& path);

signals:
    void modelOpened(std::shared_ptr<const quantlens::Model> model);
    // The engine's error text ("file: message"), readable as it is.
    void jobFailed(const QString& message);
    void busyChanged(bool busy);

private:
    template <typename Work, typename Deliver> void runJob(Work work, Deliver deliver);
    void jobStarted();
    void jobFinished();

    QThread thread_;
    QObject* worker_; // lives on thread_; jobs are queued calls on it
    int pendingJobs_ = 0;
};
