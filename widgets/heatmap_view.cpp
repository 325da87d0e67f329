#include "heatmap_view.h"

#include "plot_layout.h"
#include "run_description.h"

#include "quantlens/quantization/layer_calibration.h"

#include <QLabel>
#include <QTimer>
#include <QVBoxLayout>
#include <qcustomplot.h>

#include <algorithm>
#include <cmath>
#include <limits>

namespace {

// Drawn over the thermal gradient, whose colours it does not share.
const QColor kOutlierColour(0, 230, 118);

// The matrix entries a coordinate range shows, clipped to [0, extent).
std::pair<int, int> visibleSpan(const QCPRange& range, int extent) {
    const int first = std::clamp(static_cast<int>(std::floor(range.lower + 0.5)), 0, extent - 1);
    const int last = std::clamp(static_cast<int>(std::ceil(range.upper - 0.5)), first, extent - 1);
    return {first, last - first + 1};
}

// The window, around a visible span, that is pooled: the span and as much again on each side, so
// panning by up to a screen needs no new pooling.
std::pair<int, int> pooledSpan(std::pair<int, int> visible, int extent) {
    const int first = std::max(0, visible.first - visible.second);
    const int end = std::min(extent, visible.first + 2 * visible.second);
    return {first, end - first};
}

QString number(double value) {
    return QLocale().toString(value, 'g', 4);
}

} // namespace

HeatmapView::HeatmapView(QWidget* parent)
    : QWidget(parent), plot_(new QCustomPlot), map_(new QCPColorMap(plot_->xAxis, plot_->yAxis)),
      overlay_(new QCPColorMap(plot_->xAxis, plot_->yAxis)), scale_(new QCPColorScale(plot_)),
      title_(new QCPTextElement(plot_, tr("Open a model and pick a linear layer"))),
      readout_(new QLabel) {
    auto* layout = new QVBoxLayout(this);
    layout->setContentsMargins(0, 0, 0, 0);
    layout->addWidget(plot_, 1);
    layout->addWidget(readout_);
    readout_->setObjectName("heatmapReadout");
    readout_->setTextInteractionFlags(Qt::TextSelectableByMouse);
    readout_->setMinimumHeight(readout_->fontMetrics().height() * 2);
    readout_->setWordWrap(true);

    placeTitleAndLogScale(*plot_, title_, scale_);
    scale_->axis()->setLabel(tr("sensitivity (log)"));

    map_->setColorScale(scale_);
    map_->setGradient(QCPColorGradient::gpThermal);
    map_->setInterpolate(false); // cells are data, not a picture
    QCPColorGradient mark;
    mark.setColorStops({{0.0, kOutlierColour}, {1.0, kOutlierColour}});
    overlay_->setGradient(mark);
    overlay_->setDataRange(QCPRange(0.0, 1.0));
    overlay_->setInterpolate(false);

    plot_->xAxis->setLabel(tr("input column"));
    plot_->yAxis->setLabel(tr("output row"));
    plot_->yAxis->setRangeReversed(true); // row 0 at the top, as matrices are written
    plot_->setInteractions(QCP::iRangeDrag | QCP::iRangeZoom);
    plot_->setMouseTracking(true); // hover read-out without a pressed button

    auto* repool = new QTimer(this); // coalesces the range changes of one wheel step or drag
    repool->setSingleShot(true);
    repool->setInterval(0);
    connect(repool, &QTimer::timeout, this, &HeatmapView::repoolForView);
    for (QCPAxis* axis : {plot_->xAxis, plot_->yAxis})
        connect(axis, qOverload<const QCPRange&>(&QCPAxis::rangeChanged), repool,
                qOverload<>(&QTimer::start));
    connect(plot_, &QCustomPlot::mouseMove, this,
            [this](QMouseEvent* event) { showCellAt(event->position()); });
    connect(plot_, &QCustomPlot::mouseDoubleClick, this, &HeatmapView::resetZoom);
}

void HeatmapView::setLayer(std::shared_ptr<const quantlens::LayerAnalysis> layer) {
    layer_ = std::move(layer);
    const quantlens::SensitivityMap& map = layer_->preview.map();
    // The colour scale spans what the layer holds, at most 8 decades below its peak so that a
    // few near-zero values do not wash out the rest.
    const float peak = map.values.maxCoeff();
    float smallest = std::numeric_limits<float>::infinity();
    for (Eigen::Index k = 0; k < map.values.size(); ++k)
        if (const float v = map.values.data()[k]; v > 0.0f) smallest = std::min(smallest, v);
    if (!(peak > 0.0f)) {
        lowest_ = 1e-12f;
        map_->setDataRange(QCPRange(lowest_, 1.0));
    } else {
        lowest_ = std::max(smallest, peak * 1e-8f);
        map_->setDataRange(QCPRange(lowest_, peak > lowest_ ? peak : lowest_ * 10.0f));
    }
    const QString formula = sensitivityFormula(*layer_);
    layerTitle_ = (isFisherAnalysis(*layer_)
                       ? tr("block %1 · %2 (%3 × %4): SqueezeLLM Fisher sensitivity %5, %6-bit LUT")
                       : tr("block %1 · %2 (%3 × %4): SpQR sensitivity %5, %6-bit base"))
                      .arg(layer_->block)
                      .arg(QString::fromStdString(layer_->layer))
                      .arg(map.rows)
                      .arg(map.cols)
                      .arg(formula)
                      .arg(quantlens::weightBits(layer_->config));
    scale_->axis()->setLabel(tr("%1 (log)").arg(formula));
    resetZoom();
    setReadout({}); // it described the previous layer
}

void HeatmapView::resetZoom() {
    if (!layer_) return;
    const quantlens::SensitivityMap& map = layer_->preview.map();
    plot_->xAxis->setRange(-0.5, map.cols - 0.5);
    plot_->yAxis->setRange(-0.5, map.rows - 0.5);
    repoolForView();
}

void HeatmapView::repoolForView() {
    if (!layer_) return;
    const quantlens::SensitivityMap& map = layer_->preview.map();
    const auto rows = visibleSpan(plot_->yAxis->range(), map.rows);
    const auto cols = visibleSpan(plot_->xAxis->range(), map.cols);
    const int tileRows = tileSizeFor(rows.second, kMaxCells);
    const int tileCols = tileSizeFor(cols.second, kMaxCells);
    const bool covered = !tiles_.max.empty() && tiles_.tileRows == tileRows &&
                         tiles_.tileCols == tileCols && rows.first >= tiles_.firstRow &&
                         cols.first >= tiles_.firstCol &&
                         rows.first + rows.second <= tiles_.firstRow + tiles_.rowCount &&
                         cols.first + cols.second <= tiles_.firstCol + tiles_.colCount;
    if (!covered) {
        const auto r = pooledSpan(rows, map.rows), c = pooledSpan(cols, map.cols);
        pool(r.first, c.first, r.second, c.second, tileRows, tileCols);
    }
    updateOverlay();
}

void HeatmapView::pool(int firstRow, int firstCol, int rowCount, int colCount, int tileRows,
                       int tileCols) {
    tiles_ = maxPool(layer_->preview.map().values, firstRow, firstCol, rowCount, colCount, tileRows,
                     tileCols);
    // Each tile's centre, in matrix coordinates (entry k at k, spanning k ± 0.5).
    const auto centres = [](int first, int tile, int count) {
        return QCPRange(first + (tile - 1) / 2.0,
                        first + (count - 1) * double(tile) + (tile - 1) / 2.0);
    };
    const QCPRange keys = centres(firstCol, tiles_.tileCols, tiles_.cols);
    const QCPRange values = centres(firstRow, tiles_.tileRows, tiles_.rows);
    for (QCPColorMap* m : {map_, overlay_}) {
        m->data()->setSize(tiles_.cols, tiles_.rows);
        m->data()->setRange(keys, values);
    }
    for (int r = 0; r < tiles_.rows; ++r)
        for (int c = 0; c < tiles_.cols; ++c) {
            map_->data()->setCell(c, r, std::max(tiles_.maxAt(r, c), lowest_));
            overlay_->data()->setCell(c, r, 1.0);
        }
}

void HeatmapView::setThreshold(double tau) {
    tau_ = tau;
    if (!layer_) return;
    updateOverlay();
}

void HeatmapView::updateOverlay() {
    const quantlens::OutlierPreview& preview = layer_->preview;
    const std::int64_t stride = preview.map().cols;
    marked_ = 0;
    // A tile holds an outlier exactly when its most sensitive weight is one (ν grows with s).
    for (int r = 0; r < tiles_.rows; ++r)
        for (int c = 0; c < tiles_.cols; ++c) {
            const std::int64_t at = tiles_.argmaxAt(r, c);
            const bool outlier = preview.isOutlier(static_cast<int>(at / stride),
                                                   static_cast<int>(at % stride), tau_);
            overlay_->data()->setAlpha(c, r, outlier ? 255 : 0);
            marked_ += outlier;
        }
    const QLocale locale;
    const QString cells = locale.toString(qint64(tiles_.rows) * tiles_.cols);
    title_->setText(isFisherAnalysis(*layer_)
                        ? tr("%1\ngreen: %2 of %3 cells hold one of the %4 most sensitive weights")
                              .arg(layerTitle_, locale.toString(marked_), cells,
                                   locale.toString(qint64(preview.outlierCount(tau_))))
                        : tr("%1\ngreen: %2 of %3 cells hold outliers at τ = %4")
                              .arg(layerTitle_, locale.toString(marked_), cells,
                                   locale.toString(tau_, 'g', 4)));
    plot_->replot(QCustomPlot::rpQueuedReplot);
}

QString HeatmapView::title() const {
    return title_->text();
}

QString HeatmapView::readout() const {
    return readout_->text();
}

void HeatmapView::showCellAt(const QPointF& pixel) {
    QString text;
    if (layer_ && plot_->axisRect()->rect().contains(pixel.toPoint())) {
        const int col = static_cast<int>(std::floor(plot_->xAxis->pixelToCoord(pixel.x()) + 0.5));
        const int row = static_cast<int>(std::floor(plot_->yAxis->pixelToCoord(pixel.y()) + 0.5));
        const int r = row - tiles_.firstRow, c = col - tiles_.firstCol;
        if (r >= 0 && c >= 0 && r < tiles_.rowCount && c < tiles_.colCount) {
            const int tileRow = r / tiles_.tileRows, tileCol = c / tiles_.tileCols;
            const std::int64_t stride = layer_->preview.map().cols;
            const std::int64_t at = tiles_.argmaxAt(tileRow, tileCol);
            const int maxRow = static_cast<int>(at / stride),
                      maxCol = static_cast<int>(at % stride);
            const QString mark = isFisherAnalysis(*layer_)
                                     ? tr(", among the most sensitive")
                                     : tr(", an outlier at τ = %1").arg(number(tau_));
            const QString weight =
                tr("weight %1, sensitivity %2%3")
                    .arg(number(layer_->weights(maxRow, maxCol)),
                         number(tiles_.maxAt(tileRow, tileCol)),
                         layer_->preview.isOutlier(maxRow, maxCol, tau_) ? mark : QString());
            if (tiles_.tileRows == 1 && tiles_.tileCols == 1) {
                text = tr("row %1, column %2: %3").arg(maxRow).arg(maxCol).arg(weight);
            } else {
                const int firstRow = tiles_.firstRow + tileRow * tiles_.tileRows;
                const int firstCol = tiles_.firstCol + tileCol * tiles_.tileCols;
                const int lastRow =
                    std::min(firstRow + tiles_.tileRows, tiles_.firstRow + tiles_.rowCount) - 1;
                const int lastCol =
                    std::min(firstCol + tiles_.tileCols, tiles_.firstCol + tiles_.colCount) - 1;
                text = tr("rows %1–%2, columns %3–%4 (a %5 × %6 tile, max-pooled); its maximum at "
                          "row %7, column %8: %9")
                           .arg(firstRow)
                           .arg(lastRow)
                           .arg(firstCol)
                           .arg(lastCol)
                           .arg(tiles_.tileRows)
                           .arg(tiles_.tileCols)
                           .arg(maxRow)
                           .arg(maxCol)
                           .arg(weight);
            }
        }
    }
    setReadout(text);
}

void HeatmapView::setReadout(const QString& text) {
    if (text == readout_->text()) return;
    readout_->setText(text);
    emit readoutChanged(text);
}

QString HeatmapView::csv() const {
    QString out = "first_row,last_row,first_col,last_col,max_sensitivity,row_of_max,col_of_max,"
                  "weight,outlier\n";
    if (!layer_) return out;
    const std::int64_t stride = layer_->preview.map().cols;
    for (int r = 0; r < tiles_.rows; ++r)
        for (int c = 0; c < tiles_.cols; ++c) {
            const int firstRow = tiles_.firstRow + r * tiles_.tileRows;
            const int firstCol = tiles_.firstCol + c * tiles_.tileCols;
            const std::int64_t at = tiles_.argmaxAt(r, c);
            const int row = static_cast<int>(at / stride), col = static_cast<int>(at % stride);
            out +=
                QString("%1,%2,%3,%4,%5,%6,%7,%8,%9\n")
                    .arg(firstRow)
                    .arg(std::min(firstRow + tiles_.tileRows, tiles_.firstRow + tiles_.rowCount) -
                         1)
                    .arg(firstCol)
                    .arg(std::min(firstCol + tiles_.tileCols, tiles_.firstCol + tiles_.colCount) -
                         1)
                    .arg(double(tiles_.maxAt(r, c)), 0, 'g', 9)
                    .arg(row)
                    .arg(col)
                    .arg(double(layer_->weights(row, col)), 0, 'g', 9)
                    .arg(layer_->preview.isOutlier(row, col, tau_) ? 1 : 0);
        }
    return out;
}
