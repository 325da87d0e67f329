#pragma once

#include "quantlens/encoding/quant_config.h"

#include <QWidget>

#include <array>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <utility>
#include <vector>

class QCheckBox;
class QComboBox;
class QDoubleSpinBox;
class QFormLayout;
class QLineEdit;
class QListWidget;
class QPushButton;
class QSettings;
class QSpinBox;
class SparseTuner;
class ThresholdTuner;

namespace quantlens {
struct LayerAnalysis;
}

// The text a run calibrates and is scored on, and how much of it.
struct DataSettings {
    QString calibrationFile; // text (one document per line) or .u16/.u32 tokens
    int sequences = 16;
    int sequenceLength = 256;
    QString evaluationFile;
    int context = 256;

    bool operator==(const DataSettings&) const = default;
};

// The "Settings" dock: a method and its settings (wbits, β1, β2, qq bits, τ and the sparse
// percentages with their live previews, act-order, dampening), the calibration and evaluation
// text, and a sweep list. It only describes work; the main window runs it.
class QuantSettingsPanel : public QWidget {
    Q_OBJECT

public:
    explicit QuantSettingsPanel(QWidget* parent = nullptr);

    quantlens::QuantConfig config() const;
    void setConfig(const quantlens::QuantConfig& config);
    DataSettings data() const;
    void setData(const DataSettings& data);
    // The bit budget "Quantize and Evaluate" runs at, in paper bits per parameter; nullopt when
    // the budget is off (one setting for every layer).
    std::optional<double> targetBits() const;
    void setTargetBits(std::optional<double> bits);
    std::vector<quantlens::QuantConfig> sweep() const { return sweep_; }
    void setSweep(const std::vector<quantlens::QuantConfig>& configs);
    ThresholdTuner* tuner() const { return tuner_; }
    SparseTuner* sparseTuner() const { return sparseTuner_; }

    // The analysed layer both previews describe.
    void setLayer(std::shared_ptr<const quantlens::LayerAnalysis> layer);
    // The τ that marks the layer's previewed weights: the threshold's for an OBS-form analysis,
    // the sensitive share's for a Fisher-form one.
    double overlayThreshold() const;

    // Remembers the panel's values and sweep list between sessions.
    void save(QSettings& settings) const;
    void restore(const QSettings& settings);

public slots:
    // Adds config() to the sweep list.
    void addToSweep();
    void setAnalysisEnabled(bool enabled);

signals:
    void analyseRequested();
    void runRequested(const std::vector<quantlens::QuantConfig>& configs);
    // "Quantize and Evaluate" with the budget on: the method's bit budget at `targetBits`.
    void budgetRequested(const quantlens::QuantConfig& method, double targetBits);
    // The preview of the analysed layer's form changed its threshold (overlayThreshold()).
    void overlayThresholdChanged(double tau);
    void sweepChanged();

private:
    quantlens::QuantConfig configFor(std::size_t method) const;
    void showMethodRows();
    void chooseFile(QLineEdit* edit, const QString& title);
    // One editor per setting of quantlens::forEachSetting, read and written by name.
    void addSettingRows();
    void readSetting(const char* name, int& value) const;
    void readSetting(const char* name, double& value) const;
    void readSetting(const char* name, bool& value) const;
    void writeSetting(const char* name, int value);
    void writeSetting(const char* name, double value);
    void writeSetting(const char* name, bool value);

    // Each method's values while another is shown.
    std::array<quantlens::QuantConfig, std::variant_size_v<quantlens::QuantConfig>> base_;
    std::vector<quantlens::QuantConfig> sweep_;
    std::size_t shownMethod_ = 0;
    bool fisherLayer_ = false;
    QFormLayout* form_;
    QComboBox* method_;
    ThresholdTuner* tuner_;                   // outlier_threshold, with its live preview
    SparseTuner* sparseTuner_;                // sparse_percent and sensitive_percent, with theirs
    std::map<std::string, QWidget*> editors_; // by setting name: the rest
    std::vector<std::pair<std::string, QWidget*>> rows_; // setting name → its row's widget
    QLineEdit* calibrationFile_;
    QSpinBox* sequences_;
    QSpinBox* sequenceLength_;
    QLineEdit* evaluationFile_;
    QSpinBox* context_;
    QCheckBox* budgetOn_;
    QDoubleSpinBox* targetBits_;
    QListWidget* sweepList_;
    QPushButton* analyse_;
};
