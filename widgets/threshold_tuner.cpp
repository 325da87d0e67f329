#include "threshold_tuner.h"

#include "run_description.h"

#include "quantlens/quantization/layer_calibration.h"

#include <QDoubleSpinBox>
#include <QGridLayout>
#include <QLabel>
#include <QLocale>
#include <QSignalBlocker>
#include <QSlider>

#include <algorithm>
#include <cmath>

namespace {

double tauAt(int position) {
    const double span = std::log10(ThresholdTuner::kMaximum / ThresholdTuner::kMinimum);
    return ThresholdTuner::kMinimum *
           std::pow(10.0, span * position / double(ThresholdTuner::kSteps));
}

int positionOf(double tau) {
    const double span = std::log10(ThresholdTuner::kMaximum / ThresholdTuner::kMinimum);
    const double clamped = std::clamp(tau, ThresholdTuner::kMinimum, ThresholdTuner::kMaximum);
    return static_cast<int>(std::lround(std::log10(clamped / ThresholdTuner::kMinimum) / span *
                                        ThresholdTuner::kSteps));
}

} // namespace

ThresholdTuner::ThresholdTuner(QWidget* parent)
    : QWidget(parent), slider_(new QSlider(Qt::Horizontal)), spin_(new QDoubleSpinBox),
      readout_(new QLabel) {
    slider_->setObjectName("tauSlider");
    slider_->setRange(0, kSteps);
    slider_->setToolTip(tr("SpQR outlier threshold τ (logarithmic): a weight is an outlier when "
                           "its scaled quantization error exceeds τ"));
    spin_->setObjectName("tauSpinBox");
    spin_->setDecimals(4);
    spin_->setRange(0.0, kMaximum * 10);
    spin_->setSingleStep(0.05);
    readout_->setObjectName("tauReadout");
    readout_->setWordWrap(true); // else its longest text sets the Settings dock's width
    auto* layout = new QGridLayout(this);
    layout->setContentsMargins(0, 0, 0, 0);
    layout->addWidget(slider_, 0, 0);
    layout->addWidget(spin_, 0, 1);
    layout->addWidget(readout_, 1, 0, 1, 2);
    connect(slider_, &QSlider::valueChanged, this, &ThresholdTuner::fromSlider);
    connect(spin_, &QDoubleSpinBox::valueChanged, this, &ThresholdTuner::fromSpinBox);
    setThreshold(quantlens::SpqrConfig{}.outlierThreshold); // SpQR's LLaMA setting
}

void ThresholdTuner::setLayer(std::shared_ptr<const quantlens::LayerAnalysis> layer) {
    layer_ = std::move(layer);
    updateReadouts();
}

double ThresholdTuner::threshold() const {
    return spin_->value();
}

void ThresholdTuner::setThreshold(double tau) {
    spin_->setValue(tau); // emits through fromSpinBox when it changes
}

void ThresholdTuner::fromSlider(int position) {
    {
        const QSignalBlocker blocker(spin_);
        spin_->setValue(tauAt(position));
    }
    updateReadouts();
    emit thresholdChanged(threshold());
}

void ThresholdTuner::fromSpinBox(double tau) {
    {
        const QSignalBlocker blocker(slider_);
        slider_->setValue(positionOf(tau));
    }
    updateReadouts();
    emit thresholdChanged(tau);
}

void ThresholdTuner::updateReadouts() {
    if (!layer_ || isFisherAnalysis(*layer_)) {
        outliers_ = -1;
        bits_ = 0.0;
        // τ is SpQR's threshold on the OBS form; the Fisher form has the sparse shares instead.
        readout_->setText(layer_ ? tr("Analyse the layer with SpQR, GPTQ or RTN to preview τ.")
                                 : tr("Pick a linear layer to preview its outliers."));
        readout_->setToolTip({});
        return;
    }
    const quantlens::OutlierPreview& preview = layer_->preview;
    const double tau = threshold();
    outliers_ = preview.outlierCount(tau);
    bits_ = preview.bitsPerParameter(tau);
    const double parameters = double(preview.map().rows) * preview.map().cols;
    const QLocale locale;
    readout_->setText(tr("%1 outliers (%2%) · %3 bits/param")
                          .arg(locale.toString(qlonglong(outliers_)))
                          .arg(locale.toString(100.0 * double(outliers_) / parameters, 'f', 3))
                          .arg(locale.toString(bits_, 'f', 3)));
    readout_->setToolTip(tr("Preview for block %1 %2 from its sensitivity map, without quantizing; "
                            "bits per parameter in the SpQR paper's accounting")
                             .arg(layer_->block)
                             .arg(QString::fromStdString(layer_->layer)));
}
