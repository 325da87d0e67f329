#include "sparse_tuner.h"

#include "run_description.h"

#include "quantlens/quantization/layer_calibration.h"

#include <QDoubleSpinBox>
#include <QGridLayout>
#include <QLabel>
#include <QLocale>
#include <QSignalBlocker>

#include <limits>

namespace {

QDoubleSpinBox* percentBox(const char* name, const QString& tip) {
    auto* box = new QDoubleSpinBox;
    box->setObjectName(name);
    box->setRange(0.0, 100.0);
    box->setDecimals(3);
    box->setSingleStep(0.05);
    box->setSuffix(" %");
    box->setToolTip(tip);
    return box;
}

} // namespace

SparseTuner::SparseTuner(QWidget* parent)
    : QWidget(parent),
      sparse_(percentBox("sparsePercent",
                         tr("SqueezeLLM: share of weights kept sparse in fp16 by magnitude"))),
      sensitive_(
          percentBox("sensitivePercent",
                     tr("SqueezeLLM: share of weights kept sparse in fp16 by Fisher value"))),
      readout_(new QLabel) {
    readout_->setObjectName("sparseReadout");
    readout_->setWordWrap(true);
    auto* layout = new QGridLayout(this);
    layout->setContentsMargins(0, 0, 0, 0);
    layout->addWidget(new QLabel(tr("by magnitude")), 0, 0);
    layout->addWidget(sparse_, 0, 1);
    layout->addWidget(new QLabel(tr("by Fisher")), 1, 0);
    layout->addWidget(sensitive_, 1, 1);
    layout->addWidget(readout_, 2, 0, 1, 2);
    for (QDoubleSpinBox* box : {sparse_, sensitive_})
        connect(box, &QDoubleSpinBox::valueChanged, this, [this] {
            updateReadout();
            emit thresholdChanged(threshold());
        });
    updateReadout();
}

void SparseTuner::setLayer(std::shared_ptr<const quantlens::LayerAnalysis> layer) {
    layer_ = std::move(layer);
    updateReadout();
}

double SparseTuner::sparsePercent() const {
    return sparse_->value();
}

double SparseTuner::sensitivePercent() const {
    return sensitive_->value();
}

void SparseTuner::setPercents(double sparse, double sensitive) {
    {
        const QSignalBlocker blockSparse(sparse_), blockSensitive(sensitive_);
        sparse_->setValue(sparse);
        sensitive_->setValue(sensitive);
    }
    updateReadout();
    emit thresholdChanged(threshold());
}

void SparseTuner::setWbits(int wbits) {
    wbits_ = wbits;
    updateReadout();
}

double SparseTuner::threshold() const {
    if (!layer_ || !isFisherAnalysis(*layer_)) return std::numeric_limits<double>::infinity();
    const quantlens::SensitivityMap& map = layer_->preview.map();
    return layer_->preview.thresholdForCount(
        quantlens::squeezeSparseCounts(config(), std::int64_t(map.rows) * map.cols).byFisher);
}

quantlens::SqueezeConfig SparseTuner::config() const {
    quantlens::SqueezeConfig config;
    config.wbits = wbits_;
    config.sparsePercent = sparsePercent();
    config.sensitivePercent = sensitivePercent();
    return config;
}

void SparseTuner::updateReadout() {
    if (!layer_) {
        count_ = -1;
        bits_ = 0.0;
        readout_->setText(tr("Pick a linear layer to preview its sparse values."));
        readout_->setToolTip({});
        return;
    }
    const quantlens::SensitivityMap& map = layer_->preview.map();
    const quantlens::SqueezeConfig config = this->config();
    const double parameters = double(map.rows) * map.cols;
    count_ = quantlens::squeezeSparseCounts(config, std::int64_t(map.rows) * map.cols).total();
    bits_ = quantlens::squeezeBitsPerParameter(config, map.rows, map.cols);
    const QLocale locale;
    readout_->setText(config.sparsePercent + config.sensitivePercent > 100.0
                          ? tr("The two shares add up to more than 100 %.")
                          : tr("%1 sparse weights (%2%) · %3 bits/param")
                                .arg(locale.toString(qlonglong(count_)))
                                .arg(locale.toString(100.0 * double(count_) / parameters, 'f', 3))
                                .arg(locale.toString(bits_, 'f', 3)));
    readout_->setToolTip(
        tr("Block %1 %2 with %3-bit lookup tables: the sparse values and bits per parameter "
           "SqueezeLLM stores, in the paper's accounting. %4")
            .arg(layer_->block)
            .arg(QString::fromStdString(layer_->layer))
            .arg(config.wbits)
            .arg(isFisherAnalysis(*layer_)
                     ? tr("The heatmap marks the sensitive share as the weights with the largest "
                          "F·(w − q(w))².")
                     : tr("Analyse the layer with SqueezeLLM selected to see its Fisher "
                          "sensitivities.")));
}
