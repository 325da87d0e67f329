#include "layer_summary_view.h"

#include "plot_layout.h"
#include "run_description.h"

#include <QVBoxLayout>
#include <qcustomplot.h>

#include <cmath>
#include <limits>

LayerSummaryView::LayerSummaryView(QWidget* parent)
    : QWidget(parent), plot_(new QCustomPlot), bars_(new QCPBars(plot_->xAxis, plot_->yAxis)),
      title_(new QCPTextElement(plot_, tr("Run a quantization to see its layers"))) {
    auto* layout = new QVBoxLayout(this);
    layout->setContentsMargins(0, 0, 0, 0);
    layout->addWidget(plot_);
    plot_->plotLayout()->insertRow(0);
    plot_->plotLayout()->addElement(0, 0, title_);
    plot_->yAxis->setScaleType(QCPAxis::stLogarithmic);
    plot_->yAxis->setTicker(QSharedPointer<QCPAxisTickerLog>::create());
    plot_->yAxis->setNumberFormat("eb");
    plot_->yAxis->setNumberPrecision(0);
    plot_->yAxis->setLabel(tr("relative output error ‖WX − ŴX‖² / ‖WX‖²"));
    plot_->xAxis->setTickLabelRotation(60);
    bars_->setWidth(0.8);
    bars_->setPen(Qt::NoPen);
    bars_->setBaseValue(0.0);
    // The bars take their method's colour, as on the bits-vs-perplexity chart; the legend says so.
    bars_->removeFromLegend();
    placeLegendBelow(*plot_);
}

void LayerSummaryView::setRun(const quantlens::RunRecord& run) {
    layers_ = run.layers;
    auto ticker = QSharedPointer<QCPAxisTickerText>::create();
    QVector<double> keys, values;
    double smallest = std::numeric_limits<double>::infinity(), largest = 0.0;
    for (std::size_t i = 0; i < layers_.size(); ++i) {
        const quantlens::LayerReport& layer = layers_[i];
        QString name = QString::fromStdString(layer.name);
        name.chop(5); // "q_proj" → "q"
        ticker->addTick(double(i), QString("%1 %2").arg(layer.block).arg(name));
        const double error = layer.relativeOutputError;
        if (!(error > 0.0))
            continue; // NaN without calibration data; 0 cannot be drawn on a log axis
        keys << double(i);
        values << error;
        smallest = std::min(smallest, error);
        largest = std::max(largest, error);
    }
    bars_->setData(keys, values, true);
    bars_->setBrush(methodColour(run.config));
    bars_->setName(methodLabel(run.config));
    bars_->addToLegend();
    plot_->xAxis->setTicker(ticker);
    plot_->xAxis->setRange(-0.7, double(layers_.size()) - 0.3);
    if (largest > 0.0) plot_->yAxis->setRange(smallest / 2.0, largest * 2.0);
    bars_->setBaseValue(largest > 0.0 ? smallest / 2.0 : 0.0); // bars rise from the axis
    title_->setText(tr("Per-layer output error: %1")
                        .arg(QString::fromStdString(quantlens::describe(run.config))));
    plot_->replot(QCustomPlot::rpQueuedReplot);
}

int LayerSummaryView::barCount() const {
    return bars_->dataCount();
}

QColor LayerSummaryView::barColour() const {
    return bars_->brush().color();
}

QString LayerSummaryView::csv() const {
    QString out = "block,layer,rows,cols,bits_per_param,paper_bits_per_param,outliers,"
                  "relative_output_error\n";
    for (const quantlens::LayerReport& l : layers_)
        out += QString("%1,%2,%3,%4,%5,%6,%7,%8\n")
                   .arg(l.block)
                   .arg(QString::fromStdString(l.name))
                   .arg(l.rows)
                   .arg(l.cols)
                   .arg(l.bitsPerParameter, 0, 'g', 9)
                   .arg(l.paperBitsPerParameter, 0, 'g', 9)
                   .arg(l.outliers)
                   .arg(l.relativeOutputError, 0, 'g', 9);
    return out;
}
