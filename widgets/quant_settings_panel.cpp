#include "quant_settings_panel.h"

#include "quant_config_json.h"
#include "run_description.h"
#include "sparse_tuner.h"
#include "threshold_tuner.h"

#include "quantlens/core/error.h"
#include "quantlens/quantization/layer_calibration.h"

#include <QCheckBox>
#include <QComboBox>
#include <QCoreApplication>
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

#include <algorithm>
#include <optional>
#include <type_traits>

namespace {

QSpinBox* spinBox(const char* name, int low, int high, const QString& tip) {
    auto* box = new QSpinBox;
    box->setObjectName(name);
    box->setRange(low, high);
    box->setToolTip(tip);
    return box;
}

// The form's label of a setting; the engine's name where none is given here.
QString settingLabel(const char* name) {
    static const std::map<std::string, const char*> kLabels = {
        {"groupsize", "Group size β1"},
        {"stats_groupsize", "Stats group β2"},
        {"qq_bits", "qq bits"},
        {"outlier_threshold", "Outliers τ"},
        {"percdamp", "Dampening"},
        {"act_order", "Act-order"},
        {"blocksize", "Block size"},
        {"sparse_percent", "Sparse values"},
        {"kmeans_iterations", "Lloyd steps"},
        {"optimal_kmeans", "Optimal k-means"},
    };
    const auto it = kLabels.find(name);
    return QCoreApplication::translate("QuantSettingsPanel",
                                       it != kLabels.end() ? it->second : name);
}

// An editor for a setting of type T (the type forEachSetting gives it), named after the setting,
// with the engine's range and description.
template <typename T> QWidget* settingEditor(const char* name, const T&) {
    const quantlens::SettingInfo& info = quantlens::settingInfo(name);
    const QString help = QString::fromUtf8(info.help);
    QWidget* editor = nullptr;
    if constexpr (std::is_same_v<T, bool>) {
        auto* box = new QCheckBox(help);
        editor = box;
    } else if constexpr (std::is_same_v<T, int>) {
        editor = spinBox(name, int(info.low), int(info.high), help);
    } else {
        auto* box = new QDoubleSpinBox;
        box->setRange(info.low, info.high);
        box->setDecimals(4);
        box->setSingleStep(0.01);
        editor = box;
    }
    editor->setObjectName(name);
    editor->setToolTip(help);
    return editor;
}

} // namespace

QuantSettingsPanel::QuantSettingsPanel(QWidget* parent)
    : QWidget(parent), base_(defaultMethods()), form_(new QFormLayout), method_(new QComboBox),
      tuner_(new ThresholdTuner), sparseTuner_(new SparseTuner), calibrationFile_(new QLineEdit),
      sequences_(spinBox("sequences", 1, 4096, {})),
      sequenceLength_(spinBox("sequenceLength", 2, 32768, {})), evaluationFile_(new QLineEdit),
      context_(spinBox("context", 2, 32768, {})), budgetOn_(new QCheckBox(tr("Bit budget"))),
      targetBits_(new QDoubleSpinBox), sweepList_(new QListWidget),
      analyse_(new QPushButton(tr("&Analyse Selected Layer"))) {
    method_->setObjectName("method");
    for (const quantlens::QuantConfig& config : base_)
        method_->addItem(methodLabel(config));
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
    addSettingRows();
    form_->addRow(tr("Calibration text"),
                  fileRow(calibrationFile_, tr("Calibration Text or Token File")));
    form_->addRow(tr("Sequences"), sequences_);
    form_->addRow(tr("Tokens each"), sequenceLength_);
    form_->addRow(tr("Evaluation text"),
                  fileRow(evaluationFile_, tr("Evaluation Text or Token File")));
    form_->addRow(tr("Context"), context_);
    // The budget chooses each layer's settings from the method's grid (docs/DESIGN.md, Bit
    // budget) to the least predicted loss within the target.
    budgetOn_->setObjectName("budgetOn");
    budgetOn_->setToolTip(tr("Quantize and Evaluate measures every layer with the method's grid "
                             "of settings and gives each layer its own, within this many paper "
                             "bits per parameter in all"));
    targetBits_->setObjectName("targetBits");
    targetBits_->setRange(1.0, 16.0);
    targetBits_->setSingleStep(0.25);
    targetBits_->setDecimals(2);
    targetBits_->setSuffix(tr(" bits"));
    targetBits_->setValue(4.0);
    targetBits_->setEnabled(false);
    connect(budgetOn_, &QCheckBox::toggled, targetBits_, &QWidget::setEnabled);
    auto* budgetRow = new QHBoxLayout;
    budgetRow->addWidget(budgetOn_);
    budgetRow->addWidget(targetBits_, 1);
    form_->addRow(tr("Budget"), budgetRow);

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
    connect(qobject_cast<QSpinBox*>(editors_.at("wbits")), &QSpinBox::valueChanged, sparseTuner_,
            &SparseTuner::setWbits);
    // Each preview drives the overlay only on the form of analysis it describes.
    connect(tuner_, &ThresholdTuner::thresholdChanged, this, [this](double tau) {
        if (!fisherLayer_) emit overlayThresholdChanged(tau);
    });
    connect(sparseTuner_, &SparseTuner::thresholdChanged, this, [this](double tau) {
        if (fisherLayer_) emit overlayThresholdChanged(tau);
    });
    connect(analyse_, &QPushButton::clicked, this, &QuantSettingsPanel::analyseRequested);
    connect(run, &QPushButton::clicked, this, [this] {
        if (const auto bits = targetBits())
            emit budgetRequested(config(), *bits);
        else
            emit runRequested({config()});
    });
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

void QuantSettingsPanel::addSettingRows() {
    for (const quantlens::QuantConfig& method : base_)
        std::visit(
            [this](const auto& c) {
                quantlens::forEachSetting(c, [this](const char* name, const auto& value) {
                    const auto seen = [&](const auto& row) { return row.first == name; };
                    if (std::any_of(rows_.begin(), rows_.end(), seen)) return;
                    QWidget* row = nullptr;
                    if (std::string_view(name) == "outlier_threshold") {
                        row = tuner_;
                    } else if (std::string_view(name) == "sparse_percent" ||
                               std::string_view(name) == "sensitive_percent") {
                        row = sparseTuner_; // one row edits both shares
                    } else {
                        row = settingEditor(name, value);
                        editors_[name] = row;
                    }
                    if (std::string_view(name) != "sensitive_percent")
                        form_->addRow(settingLabel(name), row);
                    rows_.emplace_back(name, row);
                });
            },
            method);
}

void QuantSettingsPanel::readSetting(const char* name, int& value) const {
    value = qobject_cast<const QSpinBox*>(editors_.at(name))->value();
}

void QuantSettingsPanel::readSetting(const char* name, double& value) const {
    const std::string_view setting = name;
    if (setting == "outlier_threshold")
        value = tuner_->threshold();
    else if (setting == "sparse_percent")
        value = sparseTuner_->sparsePercent();
    else if (setting == "sensitive_percent")
        value = sparseTuner_->sensitivePercent();
    else
        value = qobject_cast<const QDoubleSpinBox*>(editors_.at(name))->value();
}

void QuantSettingsPanel::readSetting(const char* name, bool& value) const {
    value = qobject_cast<const QCheckBox*>(editors_.at(name))->isChecked();
}

void QuantSettingsPanel::writeSetting(const char* name, int value) {
    qobject_cast<QSpinBox*>(editors_.at(name))->setValue(value);
}

void QuantSettingsPanel::writeSetting(const char* name, double value) {
    const std::string_view setting = name;
    if (setting == "outlier_threshold")
        tuner_->setThreshold(value);
    else if (setting == "sparse_percent")
        sparseTuner_->setPercents(value, sparseTuner_->sensitivePercent());
    else if (setting == "sensitive_percent")
        sparseTuner_->setPercents(sparseTuner_->sparsePercent(), value);
    else
        qobject_cast<QDoubleSpinBox*>(editors_.at(name))->setValue(value);
}

void QuantSettingsPanel::writeSetting(const char* name, bool value) {
    qobject_cast<QCheckBox*>(editors_.at(name))->setChecked(value);
}

quantlens::QuantConfig QuantSettingsPanel::config() const {
    return configFor(shownMethod_);
}

quantlens::QuantConfig QuantSettingsPanel::configFor(std::size_t method) const {
    quantlens::QuantConfig config = base_[method];
    std::visit(
        [this](auto& c) {
            quantlens::forEachSetting(
                c, [this](const char* name, auto& value) { readSetting(name, value); });
        },
        config);
    return config;
}

void QuantSettingsPanel::setConfig(const quantlens::QuantConfig& config) {
    base_[config.index()] = config;
    std::visit(
        [this](const auto& c) {
            quantlens::forEachSetting(
                c, [this](const char* name, const auto& value) { writeSetting(name, value); });
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
    std::vector<std::string> shown;
    std::visit(
        [&](const auto& c) {
            quantlens::forEachSetting(
                c, [&](const char* name, const auto&) { shown.emplace_back(name); });
        },
        base_[shownMethod_]);
    const bool squeeze = std::holds_alternative<quantlens::SqueezeConfig>(base_[shownMethod_]);
    for (const auto& [name, row] : rows_) {
        // The τ preview also marks the analysed layer's sensitive weights for RTN and GPTQ.
        const bool visible = name == "outlier_threshold"
                                 ? !squeeze
                                 : std::find(shown.begin(), shown.end(), name) != shown.end();
        if (name != "sensitive_percent") form_->setRowVisible(row, visible);
    }
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

std::optional<double> QuantSettingsPanel::targetBits() const {
    return budgetOn_->isChecked() ? std::optional(targetBits_->value()) : std::nullopt;
}

void QuantSettingsPanel::setTargetBits(std::optional<double> bits) {
    budgetOn_->setChecked(bits.has_value());
    if (bits) targetBits_->setValue(*bits);
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
    // Preferences another version saved may no longer be valid: those are passed over, said why.
    const auto savedConfig = [](const QJsonObject& json) -> std::optional<quantlens::QuantConfig> {
        if (json.isEmpty()) return std::nullopt;
        try {
            return quantConfigFromJson(json);
        } catch (const quantlens::Error& error) {
            qWarning("saved settings passed over: %s", error.what());
            return std::nullopt;
        }
    };
    const QJsonObject saved =
        QJsonDocument::fromJson(settings.value("settings/method").toByteArray()).object();
    if (const auto config = savedConfig(saved)) setConfig(*config);
    std::vector<quantlens::QuantConfig> sweep;
    for (const QJsonValue& entry :
         QJsonDocument::fromJson(settings.value("settings/sweep").toByteArray()).array())
        if (const auto config = savedConfig(entry.toObject())) sweep.push_back(*config);
    setSweep(sweep);
}
