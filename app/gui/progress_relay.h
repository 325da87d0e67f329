#pragma once

#include <QObject>
#include <QString>

#include <chrono>
#include <functional>
#include <mutex>
#include <string>

// Carries a job's progress from the engine's threads to a receiver's (GUI) thread, at most every
// 50 ms so the event loop is never flooded. A job made of parts (a sweep's runs, each quantized
// then scored) maps each part's 0…1 onto its share of the whole with setPhase().
class ProgressRelay {
public:
    using Deliver = std::function<void(double fraction, const QString& stage)>;

    // `deliver` runs on `receiver`'s thread.
    ProgressRelay(QObject* receiver, Deliver deliver);

    // From now on, a part's fraction f reports as from + f·span, its stage prefixed.
    void setPhase(double from, double span, const QString& prefix);
    // Thread-safe; called by the engine's JobContext.
    void report(double fraction, const std::string& stage);

private:
    QObject* receiver_;
    Deliver deliver_;
    std::mutex mutex_;
    std::chrono::steady_clock::time_point last_{};
    double from_ = 0.0, span_ = 1.0;
    QString prefix_;
};
