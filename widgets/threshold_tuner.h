#pragma once

#include <QWidget>

#include <cstdint>
#include <memory>

class QDoubleSpinBox;
class QLabel;
class QSlider;

namespace quantlens {
struct LayerAnalysis;
}

// SpQR's outlier threshold τ as a logarithmic slider and a spin box, with the selected layer's
// outlier count and bits per parameter at that τ read from its OutlierPreview (a binary search, so
// they follow the slider while it is dragged, without quantizing). Only an OBS-form analysis has
// SpQR's outliers; a Fisher-form one shows no read-out.
class ThresholdTuner : public QWidget {
    Q_OBJECT

public:
    static constexpr double kMinimum = 0.01, kMaximum = 100.0;
    static constexpr int kSteps = 1000; // slider positions across the logarithmic range

    explicit ThresholdTuner(QWidget* parent = nullptr);

    // The layer the read-outs describe; null shows none.
    void setLayer(std::shared_ptr<const quantlens::LayerAnalysis> layer);
    double threshold() const;
    // What the read-outs show; -1 without a layer.
    std::int64_t outlierCount() const { return outliers_; }
    double bitsPerParameter() const { return bits_; }
    QSlider* slider() const { return slider_; }

public slots:
    void setThreshold(double tau);

signals:
    // On every change, including each step of a drag.
    void thresholdChanged(double tau);

private:
    void fromSlider(int position);
    void fromSpinBox(double tau);
    void updateReadouts();

    std::shared_ptr<const quantlens::LayerAnalysis> layer_;
    std::int64_t outliers_ = -1;
    double bits_ = 0.0;
    QSlider* slider_;
    QDoubleSpinBox* spin_;
    QLabel* readout_;
};
