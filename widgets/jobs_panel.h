#pragma once

#include "job_outcome.h"

#include "quantlens/core/time_left.h"

#include <QElapsedTimer>
#include <QHash>
#include <QWidget>

class DevicePicker;
class QPlainTextEdit;
class QProgressBar;
class QToolButton;
class QTreeWidget;
class QTreeWidgetItem;

// "2:05 left", or "estimating…" while TimeLeft has no estimate yet.
QString etaText(std::optional<double> secondsLeft);

// The "Jobs" dock: the device jobs run on, one row per engine job with its progress bar, stage,
// time left and a cancel button, and a log of what every job did and where. It shows what the
// controller reports and asks it to cancel; it runs nothing itself.
class JobsPanel : public QWidget {
    Q_OBJECT

public:
    explicit JobsPanel(QWidget* parent = nullptr);

    QTreeWidget* jobs() const { return jobs_; }
    DevicePicker* devices() const { return devices_; }
    QString logText() const;

public slots:
    void addJob(int id, const QString& title);
    // Logs where the job runs.
    void startJob(int id, const QString& device);
    // A line in the log under the job's title.
    void noteJob(int id, const QString& text);
    void updateJob(int id, double fraction, const QString& stage);
    void finishJob(int id, JobOutcome outcome, const QString& message);
    void log(const QString& line);

signals:
    void cancelRequested(int id);

private:
    enum Column { TitleColumn, ProgressColumn, StageColumn, EtaColumn, CancelColumn };
    struct Row {
        QTreeWidgetItem* item;
        QProgressBar* progress;
        QToolButton* cancel;
        QElapsedTimer clock;
        quantlens::TimeLeft timeLeft;
    };

    QHash<int, Row> rows_;
    DevicePicker* devices_;
    QTreeWidget* jobs_;
    QPlainTextEdit* log_;
};
