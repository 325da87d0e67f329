#include "pareto_view.h"

#include "pareto_front.h"
#include "plot_legend.h"
#include "run_description.h"

#include <QLabel>
#include <QToolTip>
#include <QVBoxLayout>
#include <qcustomplot.h>

#include <cmath>
#include <limits>
#include <map>

namespace {

constexpr double kPickRadius = 8.0; // pixels

} // namespace

ParetoView::ParetoView(QWidget* parent)
    : QWidget(parent), baseline_(std::numeric_limits<double>::quiet_NaN()), plot_(new QCustomPlot),
      baselineLine_(new QCPItemStraightLine(plot_)), baselineLabel_(new QCPItemText(plot_)),
      readout_(new QLabel) {
    auto* layout = new QVBoxLayout(this);
    layout->setContentsMargins(0, 0, 0, 0);
    layout->addWidget(plot_, 1);
    layout->addWidget(readout_);
    readout_->setObjectName("paretoReadout");
    readout_->setMinimumHeight(readout_->fontMetrics().height() * 2);
    readout_->setWordWrap(true);
    plot_->xAxis->setLabel(tr("bits per parameter (stored)"));
    plot_->yAxis->setLabel(tr("perplexity"));
    placeLegendBelow(*plot_);
    plot_->setInteractions(QCP::iRangeZoom);
    plot_->setMouseTracking(true); // hover details without a pressed button
    baselineLine_->setPen(QPen(Qt::darkGray, 1.0, Qt::DashLine));
    baselineLabel_->setPositionAlignment(Qt::AlignLeft | Qt::AlignBottom);
    baselineLabel_->setColor(Qt::darkGray);
    setBaseline(baseline_);
    connect(plot_, &QCustomPlot::mouseMove, this,
            [this](QMouseEvent* event) { describeRunAt(event->position()); });
    connect(plot_, &QCustomPlot::mousePress, this, [this](QMouseEvent* event) {
        if (const int run = runAt(event->position()); run >= 0) emit runClicked(run);
    });
}

void ParetoView::setRuns(const std::vector<quantlens::RunRecord>& runs) {
    runs_ = runs;
    plot_->clearGraphs();
    std::vector<ParetoPoint> points;
    std::map<QString, QCPGraph*> byMethod;
    for (const quantlens::RunRecord& run : runs_) {
        points.push_back({run.bitsPerParameter, run.perplexity});
        const QString method = methodLabel(run.config);
        QCPGraph*& graph = byMethod[method];
        if (!graph) {
            graph = plot_->addGraph();
            graph->setName(method);
            graph->setLineStyle(QCPGraph::lsNone);
            graph->setScatterStyle(
                QCPScatterStyle(QCPScatterStyle::ssDisc, methodColour(run.config), 9));
        }
        graph->addData(run.bitsPerParameter, run.perplexity);
    }
    front_ = paretoFront(points);
    QCPGraph* front = plot_->addGraph();
    front->setName(tr("Pareto front"));
    front->setPen(QPen(QColor(60, 60, 60), 1.5));
    front->setLineStyle(QCPGraph::lsLine);
    QVector<double> bits, perplexity;
    for (const std::size_t i : front_) {
        bits << runs_[i].bitsPerParameter;
        perplexity << runs_[i].perplexity;
    }
    front->setData(bits, perplexity, true);
    front->setLayer("background"); // under the points
    rescale();
}

void ParetoView::setBaseline(double perplexity) {
    baseline_ = perplexity;
    const bool shown = !std::isnan(perplexity);
    baselineLine_->setVisible(shown);
    baselineLabel_->setVisible(shown);
    if (shown) {
        baselineLine_->point1->setCoords(0.0, perplexity);
        baselineLine_->point2->setCoords(1.0, perplexity);
        baselineLabel_->position->setTypeX(QCPItemPosition::ptAxisRectRatio);
        baselineLabel_->position->setTypeY(QCPItemPosition::ptPlotCoords);
        baselineLabel_->position->setCoords(0.01, perplexity);
        baselineLabel_->setText(tr("unquantized: %1").arg(perplexity, 0, 'f', 4));
    }
    rescale();
}

void ParetoView::rescale() {
    plot_->rescaleAxes();
    QCPRange x = plot_->xAxis->range(), y = plot_->yAxis->range();
    if (!std::isnan(baseline_)) y.expand(baseline_);
    // Room around the points, and a sensible range for a single point.
    const double dx = std::max(x.size() * 0.08, 0.1), dy = std::max(y.size() * 0.08, 0.05);
    plot_->xAxis->setRange(x.lower - dx, x.upper + dx);
    plot_->yAxis->setRange(y.lower - dy, y.upper + dy);
    plot_->replot(QCustomPlot::rpQueuedReplot);
}

QPointF ParetoView::pixelOf(std::size_t index) const {
    const quantlens::RunRecord& run = runs_.at(index);
    return {plot_->xAxis->coordToPixel(run.bitsPerParameter),
            plot_->yAxis->coordToPixel(run.perplexity)};
}

int ParetoView::runAt(const QPointF& pixel) const {
    int nearest = -1;
    double best = kPickRadius;
    for (std::size_t i = 0; i < runs_.size(); ++i) {
        const QPointF d = pixelOf(i) - pixel;
        if (const double distance = std::hypot(d.x(), d.y()); distance <= best) {
            best = distance;
            nearest = static_cast<int>(i);
        }
    }
    return nearest;
}

void ParetoView::describeRunAt(const QPointF& pixel) {
    const int run = runAt(pixel);
    const QString text = run < 0 ? QString() : runSummary(runs_[std::size_t(run)]);
    if (text == readout_->text()) return;
    readout_->setText(text);
    if (run >= 0)
        QToolTip::showText(plot_->mapToGlobal(pixel.toPoint()), text, plot_);
    else
        QToolTip::hideText();
}

QString ParetoView::readout() const {
    return readout_->text();
}

QString ParetoView::csv() const {
    QString out = "method,settings,bits_per_param,paper_bits_per_param,outlier_fraction,ppl,kl,"
                  "seconds,on_front\n";
    std::vector<bool> onFront(runs_.size());
    for (const std::size_t i : front_)
        onFront[i] = true;
    for (std::size_t i = 0; i < runs_.size(); ++i) {
        const quantlens::RunRecord& r = runs_[i];
        out += QString("%1,\"%2\",%3,%4,%5,%6,%7,%8,%9\n")
                   .arg(QString::fromStdString(quantlens::methodName(r.config)),
                        QString::fromStdString(quantlens::describe(r.config)))
                   .arg(r.bitsPerParameter, 0, 'g', 9)
                   .arg(r.paperBitsPerParameter, 0, 'g', 9)
                   .arg(r.outlierFraction, 0, 'g', 9)
                   .arg(r.perplexity, 0, 'g', 9)
                   .arg(r.comparison.klMean, 0, 'g', 9)
                   .arg(r.seconds, 0, 'g', 6)
                   .arg(onFront[i] ? 1 : 0);
    }
    if (!std::isnan(baseline_))
        out += QString("none,\"unquantized\",,,,%1,0,,0\n").arg(baseline_, 0, 'g', 9);
    return out;
}
