#include "outlier_pattern_view.h"

#include "run_description.h"

#include "quantlens/quantization/layer_calibration.h"

#include <QVBoxLayout>
#include <qcustomplot.h>

#include <algorithm>

namespace {

QCPBars* addBars(QCPAxisRect* rect, const QColor& colour, const QString& x, const QString& y) {
    auto* bars = new QCPBars(rect->axis(QCPAxis::atBottom), rect->axis(QCPAxis::atLeft));
    bars->setPen(Qt::NoPen);
    bars->setBrush(colour);
    bars->setWidth(1.0);
    rect->axis(QCPAxis::atBottom)->setLabel(x);
    rect->axis(QCPAxis::atLeft)->setLabel(y);
    // Counts: whole-number ticks only.
    auto ticker = QSharedPointer<QCPAxisTickerFixed>::create();
    ticker->setTickStep(1.0);
    ticker->setScaleStrategy(QCPAxisTickerFixed::ssMultiples);
    rect->axis(QCPAxis::atLeft)->setTicker(ticker);
    return bars;
}

void showCounts(QCPBars* bars, const std::vector<std::int64_t>& counts) {
    QVector<double> keys(qsizetype(counts.size())), values(qsizetype(counts.size()));
    for (std::size_t i = 0; i < counts.size(); ++i) {
        keys[qsizetype(i)] = double(i);
        values[qsizetype(i)] = double(counts[i]);
    }
    bars->setData(keys, values, true);
    const double top =
        counts.empty() ? 1.0 : double(*std::max_element(counts.begin(), counts.end()));
    bars->keyAxis()->setRange(-0.5, std::max<double>(double(counts.size()), 1.0) - 0.5);
    bars->valueAxis()->setRange(0.0, std::max(top, 1.0) * 1.05);
}

} // namespace

OutlierPatternView::OutlierPatternView(QWidget* parent)
    : QWidget(parent), plot_(new QCustomPlot), rowRect_(plot_->axisRect()),
      columnRect_(new QCPAxisRect(plot_)), headRect_(new QCPAxisRect(plot_)) {
    auto* layout = new QVBoxLayout(this);
    layout->setContentsMargins(0, 0, 0, 0);
    layout->addWidget(plot_);
    plot_->plotLayout()->addElement(1, 0, columnRect_);
    plot_->plotLayout()->addElement(2, 0, headRect_);
    auto* margins = new QCPMarginGroup(plot_);
    for (QCPAxisRect* rect : {rowRect_, columnRect_, headRect_})
        rect->setMarginGroup(QCP::msLeft | QCP::msRight, margins);
    rowBars_ = addBars(rowRect_, QColor(220, 90, 40), tr("output row"), tr("outliers"));
    columnBars_ = addBars(columnRect_, QColor(40, 110, 200), tr("input column"), tr("outliers"));
    headBars_ = addBars(headRect_, QColor(120, 70, 170), tr("attention head"), tr("outliers"));
    headRect_->axis(QCPAxis::atBottom)->setTicker(QSharedPointer<QCPAxisTickerFixed>::create());
    headRect_->axis(QCPAxis::atBottom)->ticker()->setTickCount(8);
}

void OutlierPatternView::setLayer(std::shared_ptr<const quantlens::LayerAnalysis> layer) {
    layer_ = std::move(layer);
    refresh();
}

void OutlierPatternView::setThreshold(double tau) {
    tau_ = tau;
    refresh();
}

void OutlierPatternView::showEvent(QShowEvent* event) {
    QWidget::showEvent(event);
    if (stale_) refresh();
}

void OutlierPatternView::refresh() {
    if (!layer_) return;
    if (!isVisible()) {
        stale_ = true;
        return;
    }
    stale_ = false;
    counts_ = countOutliers(layer_->preview, tau_);
    showCounts(rowBars_, counts_.rows);
    showCounts(columnBars_, counts_.columns);
    showCounts(headBars_, counts_.heads);
    headRect_->setVisible(!counts_.heads.empty());
    const QString layer = QString::fromStdString(layer_->layer);
    const bool fisher = isFisherAnalysis(*layer_);
    rowRect_->axis(QCPAxis::atBottom)
        ->setLabel(fisher ? tr("output row of block %1 %2 (the most sensitive weights by %3)")
                                .arg(layer_->block)
                                .arg(layer, sensitivityFormula(*layer_))
                          : tr("output row of block %1 %2 (outliers at τ = %3)")
                                .arg(layer_->block)
                                .arg(layer)
                                .arg(tau_));
    for (QCPAxisRect* rect : {rowRect_, columnRect_, headRect_})
        rect->axis(QCPAxis::atLeft)->setLabel(fisher ? tr("sensitive") : tr("outliers"));
    plot_->replot(QCustomPlot::rpQueuedReplot);
}

QString OutlierPatternView::csv() const {
    QString out = "axis,index,outliers\n";
    const std::pair<const char*, const std::vector<std::int64_t>*> axes[] = {
        {"row", &counts_.rows}, {"column", &counts_.columns}, {"head", &counts_.heads}};
    for (const auto& [name, counts] : axes)
        for (std::size_t i = 0; i < counts->size(); ++i)
            out += QString("%1,%2,%3\n").arg(name).arg(i).arg((*counts)[i]);
    return out;
}
