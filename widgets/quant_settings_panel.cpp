#include "quant_settings_panel.h"

#include "quant_config_json.h"
#include "run_description.h"
#include "sparse_tuner.h"
#include "threshold_tuner.h"

#include "quantlens/layer_calibration.h"

#include <QCheckBox>
#include <QComboBox>
#include <QDoubleSpinBox>
#include <QFileDialog>
#include <QFileInfo>
#include <QFormLayout>
#include <QGroupBox>
#include <QHBoxLayout>
#include <QJsonArray>
#include <QJsonDocument>
#include <QJsonObject>
#include <QLineEdit>
#include <QListWidget>
#include <QPushButton>
#include <QSettings>
#include <QSignalBlocker>
#include <QSpinBox>
#include <QToolButton>
#include <QVBoxLayout>

#include <type_traits>

namespace {

QSpinBox* spinBox(const char* name, int low, int high, const QString& tip) {
    auto* box = new QSpinBox;
    box->setObjectName(name);
    box->setRange(low, high);
    box->setToolTip(tip);
    return box;
}

} // namespace

QuantSettingsPanel::QuantSettingsPanel(QWidget* parent)
    : QWidget(parent), base_(defaultMethods()), form_(new QFormLayout), method_(new QComboBox),
      wbits_(spinBox("wbits", 1, 8, tr("Bits per weight"))),
      groupsize_(spinBox("groupsize", 0, 1 << 20,
                         tr("Columns per statistics group (β1 for SpQR); 0: one group per row"))),
      statsGroupsize_(spinBox("statsGroupsize", 1, 1 << 16,
                              tr("Rows per second-level statistics group (SpQR β2)"))),
      qqBits_(spinBox("qqBits", 1, 16, tr("Bits of SpQR's quantized scales and zeros"))),
      tuner_(new ThresholdTuner), percdamp_(new QDoubleSpinBox), actOrder_(new QCheckBox),
      sparseTuner_(new SparseTuner), calibrationFile_(new QLineEdit),
      sequences_(spinBox("sequences", 1, 4096, {})),
      sequenceLength_(spinBox("sequenceLength", 2, 32768, {})), evaluationFile_(new QLineEdit),
      context_(spinBox("context", 2, 32768, {})), sweepList_(new QListWidget),
      analyse_(new QPushButton(tr("&Analyse Selected Layer"))) {
    method_->setObjectName("method");
    for (const quantlens::QuantConfig& config : base_)
        method_->addItem(methodLabel(config));
    percdamp_->setObjectName("percdamp");
    percdamp_->setRange(0.0, 100.0);
    percdamp_->setDecimals(4);
    percdamp_->setSingleStep(0.01);
    percdamp_->setToolTip(tr("Hessian dampening as a fraction of mean(diag H)"));
    actOrder_->setObjectName("actOrder");
    actOrder_->setText(tr("quantize columns by descending diag H"));
    calibrationFile_->setObjectName("calibrationFile");
    evaluationFile_->setObjectName("evaluationFile");
    sweepList_->setObjectName("sweepList");
    analyse_->setObjectName("analyse");
    analyse_->setEnabled(false);

    const auto fileRow = [this](QLineEdit* edit, const QString& title) {
        auto* row = new QHBoxLayout;
        auto* browse = new QToolButton;
        browse->setText("…");
        connect(browse, &QToolButton::clicked, this, [=, this] { chooseFile(edit, title); });
        row->addWidget(edit, 1);
        row->addWidget(browse);
        return row;
    };
    form_->addRow(tr("Method"), method_);
    form_->addRow(tr("wbits"), wbits_);
    form_->addRow(tr("Group size β1"), groupsize_);
    form_->addRow(tr("Stats group β2"), statsGroupsize_);
    form_->addRow(tr("qq bits"), qqBits_);
    form_->addRow(tr("Outliers τ"), tuner_);
    form_->addRow(tr("Dampening"), percdamp_);
    form_->addRow(tr("Act-order"), actOrder_);
    form_->addRow(tr("Sparse values"), sparseTuner_);
    form_->addRow(tr("Calibration text"),
                  fileRow(calibrationFile_, tr("Calibration Text or Token File")));
    form_->addRow(tr("Sequences"), sequences_);
    form_->addRow(tr("Tokens each"), sequenceLength_);
    form_->addRow(tr("Evaluation text"),
                  fileRow(evaluationFile_, tr("Evaluation Text or Token File")));
    form_->addRow(tr("Context"), context_);

    auto* run = new QPushButton(tr("&Quantize and Evaluate"));
    run->setObjectName("quantize");
    auto* add = new QPushButton(tr("Add to Sweep"));
    add->setObjectName("addToSweep");
    auto* remove = new QPushButton(tr("Remove"));
    auto* runSweep = new QPushButton(tr("Run &Sweep"));
    runSweep->setObjectName("runSweep");
    auto* sweepButtons = new QHBoxLayout;
    sweepButtons->addWidget(add);
    sweepButtons->addWidget(remove);
    sweepButtons->addWidget(runSweep);
    auto* sweepBox = new QGroupBox(tr("Sweep"));
    auto* sweepLayout = new QVBoxLayout(sweepBox);
    sweepLayout->addWidget(sweepList_);
    sweepLayout->addLayout(sweepButtons);

    auto* layout = new QVBoxLayout(this);
    layout->addLayout(form_);
    layout->addWidget(analyse_);
    layout->addWidget(run);
    layout->addWidget(sweepBox, 1);

    connect(method_, &QComboBox::currentIndexChanged, this, [this](int index) {
        // Each method keeps its own values while another is shown.
        base_[shownMethod_] = configFor(shownMethod_);
        setConfig(base_[std::size_t(index)]);
    });
    connect(wbits_, &QSpinBox::valueChanged, sparseTuner_, &SparseTuner::setWbits);
    // Each preview drives the overlay only on the form of analysis it describes.
    connect(tuner_, &ThresholdTuner::thresholdChanged, this, [this](double tau) {
        if (!fisherLayer_) emit overlayThresholdChanged(tau);
    });
    connect(sparseTuner_, &SparseTuner::thresholdChanged, this, [this](double tau) {
        if (fisherLayer_) emit overlayThresholdChanged(tau);
    });
    connect(analyse_, &QPushButton::clicked, this, &QuantSettingsPanel::analyseRequested);
    connect(run, &QPushButton::clicked, this, [this] { emit runRequested({config()}); });
    connect(add, &QPushButton::clicked, this, &QuantSettingsPanel::addToSweep);
    connect(remove, &QPushButton::clicked, this, [this] {
        const int row = sweepList_->currentRow();
        if (row < 0) return;
        sweep_.erase(sweep_.begin() + row);
        setSweep(sweep_);
    });
    connect(runSweep, &QPushButton::clicked, this, [this] {
        if (!sweep_.empty()) emit runRequested(sweep_);
    });
    setConfig(quantlens::SpqrConfig{});
    setData({});
}

quantlens::QuantConfig QuantSettingsPanel::config() const {
    return configFor(shownMethod_);
}

quantlens::QuantConfig QuantSettingsPanel::configFor(std::size_t method) const {
    quantlens::QuantConfig config = base_[method];
    std::visit(
        [this](auto& c) {
            using C = std::decay_t<decltype(c)>;
            c.wbits = wbits_->value();
            if constexpr (!std::is_same_v<C, quantlens::SqueezeConfig>)
                c.groupsize = groupsize_->value();
            if constexpr (std::is_same_v<C, quantlens::GptqConfig> ||
                          std::is_same_v<C, quantlens::SpqrConfig>) {
                c.percdamp = percdamp_->value();
                c.actOrder = actOrder_->isChecked();
            }
            if constexpr (std::is_same_v<C, quantlens::SpqrConfig>) {
                c.statsGroupsize = statsGroupsize_->value();
                c.qqBits = qqBits_->value();
                c.outlierThreshold = tuner_->threshold();
            }
            if constexpr (std::is_same_v<C, quantlens::SqueezeConfig>) {
                c.sparsePercent = sparseTuner_->sparsePercent();
                c.sensitivePercent = sparseTuner_->sensitivePercent();
            }
        },
        config);
    return config;
}

void QuantSettingsPanel::setConfig(const quantlens::QuantConfig& config) {
    base_[config.index()] = config;
    std::visit(
        [this](const auto& c) {
            using C = std::decay_t<decltype(c)>;
            wbits_->setValue(c.wbits);
            if constexpr (!std::is_same_v<C, quantlens::SqueezeConfig>)
                groupsize_->setValue(c.groupsize);
            if constexpr (std::is_same_v<C, quantlens::GptqConfig> ||
                          std::is_same_v<C, quantlens::SpqrConfig>) {
                percdamp_->setValue(c.percdamp);
                actOrder_->setChecked(c.actOrder);
            }
            if constexpr (std::is_same_v<C, quantlens::SpqrConfig>) {
                statsGroupsize_->setValue(c.statsGroupsize);
                qqBits_->setValue(c.qqBits);
                tuner_->setThreshold(c.outlierThreshold);
            }
            if constexpr (std::is_same_v<C, quantlens::SqueezeConfig>)
                sparseTuner_->setPercents(c.sparsePercent, c.sensitivePercent);
        },
        config);
    shownMethod_ = config.index();
    {
        const QSignalBlocker blocker(method_);
        method_->setCurrentIndex(static_cast<int>(shownMethod_));
    }
    showMethodRows();
}

void QuantSettingsPanel::showMethodRows() {
    const std::size_t method = shownMethod_;
    const bool obs = method == 1 || method == 2, spqr = method == 2, squeeze = method == 3;
    form_->setRowVisible(groupsize_, !squeeze);
    form_->setRowVisible(statsGroupsize_, spqr);
    form_->setRowVisible(qqBits_, spqr);
    form_->setRowVisible(percdamp_, obs);
    form_->setRowVisible(actOrder_, obs);
    form_->setRowVisible(tuner_, !squeeze);
    form_->setRowVisible(sparseTuner_, squeeze);
}

void QuantSettingsPanel::setLayer(std::shared_ptr<const quantlens::LayerAnalysis> layer) {
    fisherLayer_ = layer && isFisherAnalysis(*layer);
    tuner_->setLayer(layer);
    sparseTuner_->setLayer(std::move(layer));
}

double QuantSettingsPanel::overlayThreshold() const {
    return fisherLayer_ ? sparseTuner_->threshold() : tuner_->threshold();
}

DataSettings QuantSettingsPanel::data() const {
    return {calibrationFile_->text(), sequences_->value(), sequenceLength_->value(),
            evaluationFile_->text(), context_->value()};
}

void QuantSettingsPanel::setData(const DataSettings& data) {
    calibrationFile_->setText(data.calibrationFile);
    sequences_->setValue(data.sequences);
    sequenceLength_->setValue(data.sequenceLength);
    evaluationFile_->setText(data.evaluationFile);
    context_->setValue(data.context);
}

void QuantSettingsPanel::setSweep(const std::vector<quantlens::QuantConfig>& configs) {
    sweep_ = configs;
    sweepList_->clear();
    for (const quantlens::QuantConfig& config : sweep_)
        sweepList_->addItem(QString::fromStdString(quantlens::describe(config)));
    emit sweepChanged();
}

void QuantSettingsPanel::addToSweep() {
    sweep_.push_back(config());
    setSweep(sweep_);
}

void QuantSettingsPanel::setAnalysisEnabled(bool enabled) {
    analyse_->setEnabled(enabled);
}

void QuantSettingsPanel::chooseFile(QLineEdit* edit, const QString& title) {
    const QString file =
        QFileDialog::getOpenFileName(this, title, QFileInfo(edit->text()).absolutePath(),
                                     tr("Text or tokens (*.txt *.u16 *.u32);;All files (*)"));
    if (!file.isEmpty()) edit->setText(file);
}

void QuantSettingsPanel::save(QSettings& settings) const {
    const DataSettings d = data();
    settings.setValue("settings/calibrationFile", d.calibrationFile);
    settings.setValue("settings/sequences", d.sequences);
    settings.setValue("settings/sequenceLength", d.sequenceLength);
    settings.setValue("settings/evaluationFile", d.evaluationFile);
    settings.setValue("settings/context", d.context);
    settings.setValue("settings/method", QJsonDocument(toJson(config())).toJson());
    QJsonArray sweep;
    for (const quantlens::QuantConfig& config : sweep_)
        sweep.append(toJson(config));
    settings.setValue("settings/sweep", QJsonDocument(sweep).toJson());
}

void QuantSettingsPanel::restore(const QSettings& settings) {
    const DataSettings defaults;
    setData({settings.value("settings/calibrationFile").toString(),
             settings.value("settings/sequences", defaults.sequences).toInt(),
             settings.value("settings/sequenceLength", defaults.sequenceLength).toInt(),
             settings.value("settings/evaluationFile").toString(),
             settings.value("settings/context", defaults.context).toInt()});
    const QJsonObject saved =
        QJsonDocument::fromJson(settings.value("settings/method").toByteArray()).object();
    if (const auto config = quantConfigFromJson(saved)) setConfig(*config);
    std::vector<quantlens::QuantConfig> sweep;
    for (const QJsonValue& entry :
         QJsonDocument::fromJson(settings.value("settings/sweep").toByteArray()).array())
        if (const auto config = quantConfigFromJson(entry.toObject())) sweep.push_back(*config);
    setSweep(sweep);
}
