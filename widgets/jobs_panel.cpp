#include "jobs_panel.h"

#include "device_picker.h"

#include <QHeaderView>
#include <QPlainTextEdit>
#include <QProgressBar>
#include <QSplitter>
#include <QTime>
#include <QToolButton>
#include <QTreeWidget>
#include <QVBoxLayout>

#include <cmath>

QString etaText(std::optional<double> secondsLeft) {
    if (!secondsLeft) return JobsPanel::tr("estimating…");
    const qint64 left = std::llround(*secondsLeft);
    return JobsPanel::tr("%1:%2 left").arg(left / 60).arg(left % 60, 2, 10, QChar('0'));
}

JobsPanel::JobsPanel(QWidget* parent)
    : QWidget(parent), devices_(new DevicePicker), jobs_(new QTreeWidget),
      log_(new QPlainTextEdit) {
    jobs_->setObjectName("jobList");
    jobs_->setHeaderLabels({tr("Job"), tr("Progress"), tr("Stage"), tr("Time left"), QString()});
    jobs_->setRootIsDecorated(false);
    jobs_->header()->setSectionResizeMode(TitleColumn, QHeaderView::ResizeToContents);
    jobs_->header()->setStretchLastSection(false);
    log_->setObjectName("jobLog");
    log_->setReadOnly(true);
    log_->setMaximumBlockCount(5000);
    auto* splitter = new QSplitter(Qt::Vertical);
    splitter->addWidget(jobs_);
    splitter->addWidget(log_);
    auto* layout = new QVBoxLayout(this);
    layout->setContentsMargins(0, 0, 0, 0);
    layout->addWidget(devices_);
    layout->addWidget(splitter);
}

QString JobsPanel::logText() const {
    return log_->toPlainText();
}

void JobsPanel::addJob(int id, const QString& title) {
    Row row{new QTreeWidgetItem(jobs_, {title}), new QProgressBar, new QToolButton, {}, {}};
    row.progress->setRange(0, 1000);
    row.progress->setValue(0);
    row.progress->setTextVisible(false);
    row.cancel->setText(tr("Cancel"));
    row.cancel->setObjectName(QString("cancelJob%1").arg(id));
    row.item->setText(StageColumn, tr("queued"));
    jobs_->setItemWidget(row.item, ProgressColumn, row.progress);
    jobs_->setItemWidget(row.item, CancelColumn, row.cancel);
    jobs_->scrollToItem(row.item);
    connect(row.cancel, &QToolButton::clicked, this, [this, id] {
        if (const auto it = rows_.find(id); it != rows_.end()) it->cancel->setEnabled(false);
        emit cancelRequested(id);
    });
    row.clock.start();
    rows_.insert(id, row);
    log(tr("%1: queued").arg(title));
}

void JobsPanel::startJob(int id, const QString& device) {
    if (const auto it = rows_.find(id); it != rows_.end())
        log(tr("%1: running on %2").arg(it->item->text(TitleColumn), device));
}

void JobsPanel::noteJob(int id, const QString& text) {
    if (const auto it = rows_.find(id); it != rows_.end())
        log(tr("%1: %2").arg(it->item->text(TitleColumn), text));
}

void JobsPanel::updateJob(int id, double fraction, const QString& stage) {
    const auto it = rows_.find(id);
    if (it == rows_.end()) return;
    it->progress->setValue(static_cast<int>(std::lround(fraction * 1000)));
    it->item->setText(StageColumn, stage);
    it->item->setText(EtaColumn,
                      etaText(it->timeLeft.update(fraction, double(it->clock.elapsed()) / 1000.0)));
}

void JobsPanel::finishJob(int id, JobOutcome outcome, const QString& message) {
    const auto it = rows_.find(id);
    if (it == rows_.end()) return;
    const QString title = it->item->text(TitleColumn);
    const QString seconds = QString::number(double(it->clock.elapsed()) / 1000.0, 'f', 1);
    QString status;
    switch (outcome) {
    case JobOutcome::Finished:
        it->progress->setValue(1000);
        status = tr("done in %1 s").arg(seconds);
        break;
    case JobOutcome::Cancelled:
        status = tr("cancelled after %1 s").arg(seconds);
        break;
    case JobOutcome::Failed:
        status = tr("failed: %1").arg(message);
        break;
    }
    it->item->setText(StageColumn, status);
    it->item->setText(EtaColumn, QString());
    it->item->setToolTip(StageColumn, status);
    it->cancel->setEnabled(false);
    log(tr("%1: %2").arg(title, status));
    rows_.erase(it);
}

void JobsPanel::log(const QString& line) {
    log_->appendPlainText(QTime::currentTime().toString("HH:mm:ss  ") + line);
}
