#pragma once

#include "quantlens/quantization/run_record.h"

#include <QWidget>

#include <cstddef>
#include <vector>

class QCPItemStraightLine;
class QCPItemText;
class QComboBox;
class QCustomPlot;
class QLabel;

// What the chart's vertical axis shows of each run, as measured against the unquantized model.
enum class RunQuality { Perplexity, KlMean, Top1Agreement };

// Bits per parameter against a run's quality (perplexity, mean KL or top-1 agreement, chosen in
// the view), one point per run, coloured by method (bit-budget runs as diamonds), with the Pareto
// front of all runs drawn through them and, for perplexity, the unquantized model's as a line.
// Hovering a point describes its run; clicking it emits runClicked().
class ParetoView : public QWidget {
    Q_OBJECT

public:
    explicit ParetoView(QWidget* parent = nullptr);

    void setRuns(const std::vector<quantlens::RunRecord>& runs);
    // NaN hides the line.
    void setBaseline(double perplexity);
    void setQuality(RunQuality quality);
    RunQuality quality() const { return quality_; }

    // Indices into the runs, in front order (by bits).
    const std::vector<std::size_t>& front() const { return front_; }
    // Where run `index` is drawn, in the plot widget's coordinates.
    QPointF pixelOf(std::size_t index) const;
    QString readout() const;
    QCustomPlot* plot() const { return plot_; }
    QString csv() const;

signals:
    void runClicked(int index);

private:
    // The run drawn within a few pixels of `pixel`, or -1.
    int runAt(const QPointF& pixel) const;
    void describeRunAt(const QPointF& pixel);
    void rescale();
    void plotRuns();
    double qualityOf(const quantlens::RunRecord& run) const;

    std::vector<quantlens::RunRecord> runs_;
    RunQuality quality_ = RunQuality::Perplexity;
    QComboBox* qualityChoice_;
    std::vector<std::size_t> front_;
    double baseline_;
    QCustomPlot* plot_;
    QCPItemStraightLine* baselineLine_;
    QCPItemText* baselineLabel_;
    QLabel* readout_;
};
