#include "model_map_view.h"

#include "plot_layout.h"

#include <QComboBox>
#include <QHBoxLayout>
#include <QLabel>
#include <QLocale>
#include <QPushButton>
#include <QToolTip>
#include <QVBoxLayout>
#include <qcustomplot.h>

#include <algorithm>
#include <cmath>
#include <limits>

ModelMapView::ModelMapView(QWidget* parent)
    : QWidget(parent), metricChoice_(new QComboBox), mapButton_(new QPushButton(tr("Map"))),
      plot_(new QCustomPlot), cells_(new QCPColorMap(plot_->xAxis, plot_->yAxis)),
      scale_(new QCPColorScale(plot_)),
      title_(new QCPTextElement(plot_, tr("Open a model, choose a metric and press Map"))),
      readout_(new QLabel) {
    auto* layout = new QVBoxLayout(this);
    layout->setContentsMargins(0, 0, 0, 0);
    auto* controls = new QHBoxLayout;
    metricChoice_->setObjectName("mapMetric");
    for (const quantlens::MapMetricInfo& info : quantlens::kMapMetrics)
        metricChoice_->addItem(QString::fromUtf8(info.label.data(), qsizetype(info.label.size())),
                               int(info.metric));
    mapButton_->setObjectName("mapButton");
    mapButton_->setToolTip(tr("Measure the metric for every layer with the Settings dock's method "
                              "and data (a job; maps computed before are read from the cache)"));
    mapButton_->setEnabled(false);
    controls->addWidget(new QLabel(tr("Metric:")));
    controls->addWidget(metricChoice_, 1);
    controls->addWidget(mapButton_);
    layout->addLayout(controls);
    layout->addWidget(plot_, 1);
    layout->addWidget(readout_);
    readout_->setObjectName("mapReadout");
    readout_->setMinimumHeight(readout_->fontMetrics().height() * 2);
    readout_->setWordWrap(true);
    connect(mapButton_, &QPushButton::clicked, this, [this] { emit mapRequested(metric()); });

    // Sensitivities span decades from layer to layer: a linear scale would show one hot cell.
    placeTitleAndLogScale(*plot_, title_, scale_);
    cells_->setColorScale(scale_);
    QCPColorGradient gradient(QCPColorGradient::gpThermal);
    gradient.setNanHandling(QCPColorGradient::nhTransparent); // unmeasured cells stay blank
    cells_->setGradient(gradient);
    cells_->setInterpolate(false);

    auto layerTicks = QSharedPointer<QCPAxisTickerText>::create();
    for (int l = 0; l < quantlens::kLinearLayerCount; ++l)
        layerTicks->addTick(l, quantlens::kLinearLayers[std::size_t(l)].name);
    plot_->xAxis->setTicker(layerTicks);
    plot_->xAxis->setTickLabelRotation(-30);
    plot_->xAxis->setRange(-0.5, quantlens::kLinearLayerCount - 0.5);
    plot_->yAxis->setLabel(tr("block"));
    plot_->yAxis->setRangeReversed(true); // block 0 at the top, as the Model dock lists them
    // Whole blocks only, about sixteen labels: every block of a small model, every fifth of 80.
    auto blockTicks = QSharedPointer<QCPAxisTickerFixed>::create();
    blockTicks->setTickStep(1.0);
    blockTicks->setScaleStrategy(QCPAxisTickerFixed::ssMultiples);
    blockTicks->setTickCount(16);
    plot_->yAxis->setTicker(blockTicks);
    plot_->setMouseTracking(true);
    connect(plot_, &QCustomPlot::mouseMove, this,
            [this](QMouseEvent* event) { describeCellAt(event->position()); });
    connect(plot_, &QCustomPlot::mousePress, this, [this](QMouseEvent* event) {
        if (const auto cell = cellAt(event->position()))
            emit layerClicked(cell->first,
                              quantlens::kLinearLayers[std::size_t(cell->second)].name);
    });
}

quantlens::MapMetric ModelMapView::metric() const {
    return quantlens::MapMetric(metricChoice_->currentData().toInt());
}

void ModelMapView::setMetric(quantlens::MapMetric metric) {
    metricChoice_->setCurrentIndex(metricChoice_->findData(int(metric)));
}

void ModelMapView::setMappingEnabled(bool enabled) {
    mapButton_->setEnabled(enabled);
}

void ModelMapView::setMap(const quantlens::ModelMap& map) {
    map_ = map;
    setMetric(map.request.metric);
    const int blocks = map.blocks;
    cells_->data()->setSize(quantlens::kLinearLayerCount, blocks);
    cells_->data()->setRange(QCPRange(0, quantlens::kLinearLayerCount - 1),
                             QCPRange(0, std::max(blocks - 1, 1)));
    double peak = 0.0, smallest = std::numeric_limits<double>::infinity();
    for (int b = 0; b < blocks; ++b)
        for (int l = 0; l < quantlens::kLinearLayerCount; ++l) {
            const double value = map.at(b, l);
            // Non-positive values have no place on a log scale: blank, like unmeasured ones.
            const bool shown = std::isfinite(value) && value > 0.0;
            cells_->data()->setCell(l, b, shown ? value : std::numeric_limits<double>::quiet_NaN());
            if (shown) {
                peak = std::max(peak, value);
                smallest = std::min(smallest, value);
            }
        }
    if (peak > 0.0)
        cells_->setDataRange(QCPRange(smallest, peak > smallest ? peak : smallest * 10.0));
    const QString label =
        QString::fromUtf8(quantlens::mapMetricInfo(map.request.metric).label.data(),
                          qsizetype(quantlens::mapMetricInfo(map.request.metric).label.size()));
    scale_->axis()->setLabel(tr("%1 (log)").arg(label));
    title_->setText(tr("%1 · %2 · %3 blocks")
                        .arg(label, QString::fromStdString(quantlens::describe(map.request.config)))
                        .arg(blocks));
    plot_->yAxis->setRange(-0.5, blocks - 0.5);
    plot_->replot();
    readout_->clear();
}

QString ModelMapView::title() const {
    return title_->text();
}

QString ModelMapView::readout() const {
    return readout_->text();
}

QPointF ModelMapView::pixelOf(int block, int layer) const {
    return {plot_->xAxis->coordToPixel(layer), plot_->yAxis->coordToPixel(block)};
}

std::optional<std::pair<int, int>> ModelMapView::cellAt(const QPointF& pixel) const {
    if (!map_ || !plot_->axisRect()->rect().contains(pixel.toPoint())) return std::nullopt;
    const int layer = int(std::lround(plot_->xAxis->pixelToCoord(pixel.x())));
    const int block = int(std::lround(plot_->yAxis->pixelToCoord(pixel.y())));
    if (layer < 0 || layer >= quantlens::kLinearLayerCount || block < 0 || block >= map_->blocks)
        return std::nullopt;
    return std::pair(block, layer);
}

void ModelMapView::describeCellAt(const QPointF& pixel) {
    const auto cell = cellAt(pixel);
    QString text;
    if (cell) {
        const double value = map_->at(cell->first, cell->second);
        // Its rank among the measured cells: 1 is where the model is most sensitive.
        const auto measured = std::count_if(map_->values.begin(), map_->values.end(),
                                            [](double v) { return std::isfinite(v); });
        const auto above = std::count_if(map_->values.begin(), map_->values.end(),
                                         [&](double v) { return std::isfinite(v) && v > value; });
        const QString name = quantlens::kLinearLayers[std::size_t(cell->second)].name;
        text = std::isfinite(value)
                   ? tr("block %1 · %2: %3 (rank %4 of %5) · click to open its heatmap")
                         .arg(cell->first)
                         .arg(name, QLocale().toString(value, 'g', 4))
                         .arg(above + 1)
                         .arg(measured)
                   : tr("block %1 · %2: not measured").arg(cell->first).arg(name);
    }
    if (text == readout_->text()) return;
    readout_->setText(text);
    if (cell)
        QToolTip::showText(plot_->mapToGlobal(pixel.toPoint()), text, plot_);
    else
        QToolTip::hideText();
}

QString ModelMapView::csv() const {
    QString out = "block,layer,value\n";
    if (!map_) return out;
    for (int b = 0; b < map_->blocks; ++b)
        for (int l = 0; l < quantlens::kLinearLayerCount; ++l) {
            const double value = map_->at(b, l);
            out += QString("%1,%2,%3\n")
                       .arg(b)
                       .arg(quantlens::kLinearLayers[std::size_t(l)].name)
                       .arg(std::isfinite(value) ? QString::number(value, 'g', 9) : QString());
        }
    return out;
}
