#pragma once

#include "outlier_counts.h"

#include "quantlens/encoding/quant_config.h"

#include <QWidget>

#include <memory>

class QCPAxisRect;
class QCPBars;
class QCustomPlot;

namespace quantlens {
struct LayerAnalysis;
}

// Bar charts of where a layer's outliers sit at threshold τ: per output row, per input column and
// per attention head. Counting visits every weight, so while hidden the view only remembers that
// it is stale and counts when shown.
class OutlierPatternView : public QWidget {
    Q_OBJECT

public:
    explicit OutlierPatternView(QWidget* parent = nullptr);

    void setLayer(std::shared_ptr<const quantlens::LayerAnalysis> layer);
    // What the bars show (counted at the last threshold while visible).
    const OutlierCounts& counts() const { return counts_; }
    QCustomPlot* plot() const { return plot_; }
    QString csv() const;

public slots:
    void setThreshold(double tau);

protected:
    void showEvent(QShowEvent* event) override;

private:
    void refresh();

    std::shared_ptr<const quantlens::LayerAnalysis> layer_;
    double tau_ = quantlens::SpqrConfig{}.outlierThreshold;
    bool stale_ = false;
    OutlierCounts counts_;
    QCustomPlot* plot_;
    QCPAxisRect* rowRect_;
    QCPAxisRect* columnRect_;
    QCPAxisRect* headRect_;
    QCPBars* rowBars_;
    QCPBars* columnBars_;
    QCPBars* headBars_;
};
