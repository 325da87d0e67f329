#include "progress_relay.h"

#include <QMetaObject>

ProgressRelay::ProgressRelay(QObject* receiver, Deliver deliver)
    : receiver_(receiver), deliver_(std::move(deliver)) {}

void ProgressRelay::setPhase(double from, double span, const QString& prefix) {
    const std::lock_guard lock(mutex_);
    from_ = from;
    span_ = span;
    prefix_ = prefix;
    last_ = {}; // the first report of a part always goes through
}

void ProgressRelay::report(double fraction, const std::string& stage) {
    const auto now = std::chrono::steady_clock::now();
    const std::lock_guard lock(mutex_);
    if (now - last_ < std::chrono::milliseconds(50)) return;
    last_ = now;
    const double overall = from_ + fraction * span_;
    const QString text = prefix_ + QString::fromStdString(stage);
    QMetaObject::invokeMethod(
        receiver_, [deliver = deliver_, overall, text] { deliver(overall, text); },
        Qt::QueuedConnection);
}
