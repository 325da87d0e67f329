#pragma once

#include "quantlens/encoding/quant_config.h"

#include <QWidget>

#include <cstdint>
#include <memory>

class QDoubleSpinBox;
class QLabel;

namespace quantlens {
struct LayerAnalysis;
}

// SqueezeLLM's dense-and-sparse shares as two percent spin boxes — by magnitude and by Fisher
// value — with the selected layer's sparse count and bits per parameter at those shares, counted
// as the quantizer counts them (squeezeSparseCounts, squeezeBitsPerParameter), so they follow each
// step without quantizing. On a Fisher analysis the sensitive share also sets the heatmap's
// overlay: threshold() marks that many of the layer's largest F·(w − q(w))².
class SparseTuner : public QWidget {
    Q_OBJECT

public:
    explicit SparseTuner(QWidget* parent = nullptr);

    // The layer the read-out describes; null shows none.
    void setLayer(std::shared_ptr<const quantlens::LayerAnalysis> layer);
    double sparsePercent() const;
    double sensitivePercent() const;
    void setPercents(double sparse, double sensitive);
    // The overlay τ for a Fisher analysis (+∞, marking nothing, without one).
    double threshold() const;
    // What the read-out shows; -1 without a layer.
    std::int64_t sparseCount() const { return count_; }
    double bitsPerParameter() const { return bits_; }

public slots:
    // The bits per weight the read-out counts with.
    void setWbits(int wbits);

signals:
    // On every change of either share (threshold() included).
    void thresholdChanged(double tau);

private:
    quantlens::SqueezeConfig config() const;
    void updateReadout();

    std::shared_ptr<const quantlens::LayerAnalysis> layer_;
    int wbits_ = 4;
    std::int64_t count_ = -1;
    double bits_ = 0.0;
    QDoubleSpinBox* sparse_;
    QDoubleSpinBox* sensitive_;
    QLabel* readout_;
};
