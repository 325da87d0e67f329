#pragma once

#include "max_pool.h"

#include "quantlens/encoding/quant_config.h"

#include <QWidget>

#include <memory>

class QCPColorMap;
class QCPColorScale;
class QCPTextElement;
class QCustomPlot;
class QLabel;

namespace quantlens {
struct LayerAnalysis;
}

// A layer's per-weight sensitivity as a heatmap (docs/DESIGN.md: no interpolation, log colour scale
// with its bar, each cell one weight or a max-pooled tile whose size the read-out states), in the
// OBS form with the weights SpQR would keep as outliers at threshold τ overlaid, or in
// SqueezeLLM's Fisher form with the most sensitive weights (those above τ·mean) overlaid; the
// title and the colour bar name the form. Columns are inputs, rows are
// outputs (row 0 at the top). Wheel zooms, dragging pans, a double click shows the whole layer;
// zooming in re-pools the visible part at a finer tile, down to one weight per cell.
class HeatmapView : public QWidget {
    Q_OBJECT

public:
    // Cells per axis at most: about the screen's resolution, so pooling loses nothing visible.
    static constexpr int kMaxCells = 512;

    explicit HeatmapView(QWidget* parent = nullptr);

    void setLayer(std::shared_ptr<const quantlens::LayerAnalysis> layer);
    const quantlens::LayerAnalysis* layer() const { return layer_.get(); }
    double threshold() const { return tau_; }
    const PooledTiles& tiles() const { return tiles_; }
    // Tiles marked as holding an outlier at the current threshold.
    qint64 markedTiles() const { return marked_; }
    // Which layer and which sensitivity form is shown, and what the overlay marks.
    QString title() const;
    QString readout() const;
    QCustomPlot* plot() const { return plot_; }

    // The shown cells as CSV: tile extents, maximum sensitivity and its weight, outlier mark.
    QString csv() const;

public slots:
    void setThreshold(double tau);
    // Shows the whole layer again.
    void resetZoom();

signals:
    // The read-out changed (the pointer moved to another cell, or left the map).
    void readoutChanged(const QString& text);

private:
    void pool(int firstRow, int firstCol, int rowCount, int colCount, int tileRows, int tileCols);
    void repoolForView();
    void updateOverlay();
    void showCellAt(const QPointF& pixel);
    void setReadout(const QString& text);

    std::shared_ptr<const quantlens::LayerAnalysis> layer_;
    double tau_ = quantlens::SpqrConfig{}.outlierThreshold;
    PooledTiles tiles_;
    qint64 marked_ = 0;
    QString layerTitle_;
    float lowest_ = 0.0f; // the colour scale's lower end: zero sensitivities are drawn there
    QCustomPlot* plot_;
    QCPColorMap* map_;
    QCPColorMap* overlay_;
    QCPColorScale* scale_;
    QCPTextElement* title_;
    QLabel* readout_;
};
