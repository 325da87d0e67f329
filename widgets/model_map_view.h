#pragma once

#include "quantlens/quantization/model_map.h"

#include <QWidget>

#include <optional>

class QCPColorMap;
class QCPColorScale;
class QCPTextElement;
class QComboBox;
class QCustomPlot;
class QLabel;
class QPushButton;

// The whole-model map (docs/DESIGN.md, Model map): blocks down (block 0 at the top), the seven
// linear layers across, each cell one layer coloured on a log scale by the metric chosen above it,
// with its colour bar; cells without a value are left blank. Hovering tells the block, layer,
// value and its rank in the model; clicking a cell emits layerClicked(). The view only shows: the
// metric's Map button emits mapRequested() and the main window has the engine compute it.
class ModelMapView : public QWidget {
    Q_OBJECT

public:
    explicit ModelMapView(QWidget* parent = nullptr);

    void setMap(const quantlens::ModelMap& map);
    const std::optional<quantlens::ModelMap>& map() const { return map_; }
    // The metric chosen in the view (what the next request asks for).
    quantlens::MapMetric metric() const;
    void setMetric(quantlens::MapMetric metric);
    // Whether a model is open to map: the Map button is enabled only then.
    void setMappingEnabled(bool enabled);

    QString title() const;
    QString readout() const;
    // The centre of a cell, in the plot widget's coordinates.
    QPointF pixelOf(int block, int layer) const;
    QCustomPlot* plot() const { return plot_; }
    // The cells as CSV: block, layer, value.
    QString csv() const;

signals:
    void mapRequested(quantlens::MapMetric metric);
    void layerClicked(int block, const QString& layer);

private:
    // The cell under `pixel`, as (block, layer), if any.
    std::optional<std::pair<int, int>> cellAt(const QPointF& pixel) const;
    void describeCellAt(const QPointF& pixel);

    std::optional<quantlens::ModelMap> map_;
    QComboBox* metricChoice_;
    QPushButton* mapButton_;
    QCustomPlot* plot_;
    QCPColorMap* cells_;
    QCPColorScale* scale_;
    QCPTextElement* title_;
    QLabel* readout_;
};
