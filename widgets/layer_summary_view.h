#pragma once

#include "quantlens/quantization/run_record.h"

#include <QWidget>

class QCPBars;
class QCPTextElement;
class QCustomPlot;

// One run, layer by layer: each linear layer's relative output error ‖WX − ŴX‖²/‖WX‖² on a log
// scale, in quantization order, so the layers a method struggles with stand out. The bars have
// the run's method colour, named in the legend.
class LayerSummaryView : public QWidget {
    Q_OBJECT

public:
    explicit LayerSummaryView(QWidget* parent = nullptr);

    void setRun(const quantlens::RunRecord& run);
    int barCount() const;
    QColor barColour() const;
    QCustomPlot* plot() const { return plot_; }
    QString csv() const;

private:
    std::vector<quantlens::LayerReport> layers_;
    QCustomPlot* plot_;
    QCPBars* bars_;
    QCPTextElement* title_;
};
