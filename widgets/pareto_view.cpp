#include "pareto_view.h"

#include "pareto_front.h"
#include "plot_layout.h"
#include "run_description.h"

#include <QComboBox>
#include <QHBoxLayout>
#include <QLabel>
#include <QToolTip>
#include <QVBoxLayout>
#include <qcustomplot.h>

#include <algorithm>
#include <cmath>
#include <limits>
#include <map>

namespace {

constexpr double kPickRadius = 8.0; // pixels

// The one table of the chart's quality axes: what each plots and which way is better.
struct QualityAxis {
    RunQuality quality;
    const char* label;
    double (*value)(const quantlens::RunRecord&);
    bool higherIsBetter;
};
constexpr QualityAxis kQualityAxes[] = {
    {RunQuality::Perplexity, QT_TRANSLATE_NOOP("ParetoView", "perplexity"),
     [](const quantlens::RunRecord& r) { return r.perplexity; }, false},
    {RunQuality::KlMean,
     QT_TRANSLATE_NOOP("ParetoView", "KL divergence to the unquantized model (mean, nats)"),
     [](const quantlens::RunRecord& r) { return r.comparison.klMean; }, false},
    {RunQuality::Top1Agreement,
     QT_TRANSLATE_NOOP("ParetoView", "top-1 agreement with the unquantized model"),
     [](const quantlens::RunRecord& r) { return r.comparison.top1Agreement; }, true},
};

const QualityAxis& axisOf(RunQuality quality) {
    return *std::find_if(std::begin(kQualityAxes), std::end(kQualityAxes),
                         [&](const QualityAxis& axis) { return axis.quality == quality; });
}

} // namespace

ParetoView::ParetoView(QWidget* parent)
    : QWidget(parent), baseline_(std::numeric_limits<double>::quiet_NaN()), plot_(new QCustomPlot),
      baselineLine_(new QCPItemStraightLine(plot_)), baselineLabel_(new QCPItemText(plot_)),
      readout_(new QLabel) {
    auto* layout = new QVBoxLayout(this);
    layout->setContentsMargins(0, 0, 0, 0);
    qualityChoice_ = new QComboBox;
    qualityChoice_->setObjectName("qualityAxis");
    for (const QualityAxis& axis : kQualityAxes)
        qualityChoice_->addItem(tr(axis.label), int(axis.quality));
    auto* choiceRow = new QHBoxLayout;
    choiceRow->addWidget(new QLabel(tr("Quality axis:")));
    choiceRow->addWidget(qualityChoice_);
    choiceRow->addStretch(1);
    layout->addLayout(choiceRow);
    connect(qualityChoice_, &QComboBox::currentIndexChanged, this,
            [this](int index) { setQuality(RunQuality(qualityChoice_->itemData(index).toInt())); });
    layout->addWidget(plot_, 1);
    layout->addWidget(readout_);
    readout_->setObjectName("paretoReadout");
    readout_->setMinimumHeight(readout_->fontMetrics().height() * 2);
    readout_->setWordWrap(true);
    plot_->xAxis->setLabel(tr("bits per parameter (stored)"));
    placeLegendBelow(*plot_);
    plot_->setInteractions(QCP::iRangeZoom);
    plot_->setMouseTracking(true); // hover details without a pressed button
    baselineLine_->setPen(QPen(Qt::darkGray, 1.0, Qt::DashLine));
    baselineLabel_->setPositionAlignment(Qt::AlignLeft | Qt::AlignBottom);
    baselineLabel_->setColor(Qt::darkGray);
    plotRuns();
    connect(plot_, &QCustomPlot::mouseMove, this,
            [this](QMouseEvent* event) { describeRunAt(event->position()); });
    connect(plot_, &QCustomPlot::mousePress, this, [this](QMouseEvent* event) {
        if (const int run = runAt(event->position()); run >= 0) emit runClicked(run);
    });
}

void ParetoView::setRuns(const std::vector<quantlens::RunRecord>& runs) {
    runs_ = runs;
    plotRuns();
}

void ParetoView::setQuality(RunQuality quality) {
    if (quality == quality_) return;
    quality_ = quality;
    qualityChoice_->setCurrentIndex(qualityChoice_->findData(int(quality)));
    plotRuns();
}

double ParetoView::qualityOf(const quantlens::RunRecord& run) const {
    return axisOf(quality_).value(run);
}

void ParetoView::plotRuns() {
    const QualityAxis& axis = axisOf(quality_);
    plot_->yAxis->setLabel(tr(axis.label));
    plot_->clearGraphs();
    std::vector<ParetoPoint> points;
    // One graph per method, and one more per method for its bit-budget runs.
    std::map<std::pair<int, bool>, QCPGraph*> graphs;
    for (const quantlens::RunRecord& run : runs_) {
        const double quality = qualityOf(run);
        points.push_back({run.bitsPerParameter, axis.higherIsBetter ? -quality : quality});
        const bool budget = run.targetBits.has_value();
        QCPGraph*& graph = graphs[{int(run.config.index()), budget}];
        if (!graph) {
            graph = plot_->addGraph();
            graph->setName(budget ? tr("%1 bit budget").arg(methodLabel(run.config))
                                  : methodLabel(run.config));
            graph->setLineStyle(QCPGraph::lsNone);
            graph->setScatterStyle(
                QCPScatterStyle(budget ? QCPScatterStyle::ssDiamond : QCPScatterStyle::ssDisc,
                                methodColour(run.config), budget ? 12 : 9));
        }
        graph->addData(run.bitsPerParameter, quality);
    }
    front_ = paretoFront(points);
    QCPGraph* front = plot_->addGraph();
    front->setName(tr("Pareto front"));
    front->setPen(QPen(QColor(60, 60, 60), 1.5));
    front->setLineStyle(QCPGraph::lsLine);
    QVector<double> bits, quality;
    for (const std::size_t i : front_) {
        bits << runs_[i].bitsPerParameter;
        quality << qualityOf(runs_[i]);
    }
    front->setData(bits, quality, true);
    front->setLayer("background"); // under the points
    setBaseline(baseline_);
}

void ParetoView::setBaseline(double perplexity) {
    baseline_ = perplexity;
    // The unquantized model's KL is 0 and its agreement 1 by definition: only perplexity has a
    // line worth drawing.
    const bool shown = !std::isnan(perplexity) && quality_ == RunQuality::Perplexity;
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
    if (baselineLine_->visible()) y.expand(baseline_);
    // Room around the points, and a sensible range for a single point.
    const double dx = std::max(x.size() * 0.08, 0.1), dy = std::max(y.size() * 0.08, 0.05);
    plot_->xAxis->setRange(x.lower - dx, x.upper + dx);
    plot_->yAxis->setRange(y.lower - dy, y.upper + dy);
    plot_->replot(QCustomPlot::rpQueuedReplot);
}

QPointF ParetoView::pixelOf(std::size_t index) const {
    const quantlens::RunRecord& run = runs_.at(index);
    return {plot_->xAxis->coordToPixel(run.bitsPerParameter),
            plot_->yAxis->coordToPixel(qualityOf(run))};
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
    QString out = "method,settings,bits_per_param,paper_bits_per_param,outlier_fraction,ppl";
    for (const quantlens::ComparisonFigure& figure : quantlens::kComparisonFigures)
        out += QString(",") + figure.key;
    out += ",target_bits,seconds,on_front\n";
    std::vector<bool> onFront(runs_.size());
    for (const std::size_t i : front_)
        onFront[i] = true;
    // Unmeasured figures are empty fields.
    const auto field = [](double value, int precision = 9) {
        return std::isfinite(value) ? QString::number(value, 'g', precision) : QString();
    };
    for (std::size_t i = 0; i < runs_.size(); ++i) {
        const quantlens::RunRecord& r = runs_[i];
        out += QString("%1,\"%2\",%3,%4,%5,%6")
                   .arg(QString::fromStdString(quantlens::methodName(r.config)), runSettings(r),
                        field(r.bitsPerParameter), field(r.paperBitsPerParameter),
                        field(r.outlierFraction), field(r.perplexity));
        for (const quantlens::ComparisonFigure& figure : quantlens::kComparisonFigures)
            out += "," + field(r.comparison.*figure.value);
        out += QString(",%1,%2,%3\n")
                   .arg(r.targetBits ? field(*r.targetBits) : QString(), field(r.seconds, 6))
                   .arg(onFront[i] ? 1 : 0);
    }
    if (!std::isnan(baseline_)) {
        out += QString("none,\"unquantized\",,,,%1").arg(field(baseline_));
        for (std::size_t k = 0; k < std::size(quantlens::kComparisonFigures); ++k)
            out += ",";
        out += ",,0\n";
    }
    return out;
}
