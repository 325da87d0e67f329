#include "run_description.h"

#include "quantlens/quantization/layer_calibration.h"

#include <QLocale>

std::array<quantlens::QuantConfig, std::variant_size_v<quantlens::QuantConfig>> defaultMethods() {
    return {quantlens::RtnConfig{}, quantlens::GptqConfig{}, quantlens::SpqrConfig{},
            quantlens::SqueezeConfig{}};
}

QString methodLabel(const quantlens::QuantConfig& config) {
    constexpr const char* labels[] = {"RTN", "GPTQ", "SpQR", "SqueezeLLM"};
    return labels[config.index()];
}

QColor methodColour(const quantlens::QuantConfig& config) {
    // Colour-blind-safe (Okabe–Ito), one per QuantConfig alternative.
    const QColor colours[] = {QColor(0, 0, 0), QColor(0, 114, 178), QColor(213, 94, 0),
                              QColor(0, 158, 115)};
    return colours[config.index()];
}

QString methodColourKey() {
    QStringList entries;
    for (const quantlens::QuantConfig& method : defaultMethods())
        entries << QString("<span style=\"color:%1\">■</span>&nbsp;%2")
                       .arg(methodColour(method).name(), methodLabel(method));
    return entries.join("&nbsp;&nbsp; ");
}

bool isFisherAnalysis(const quantlens::LayerAnalysis& analysis) {
    return std::holds_alternative<quantlens::SqueezeConfig>(analysis.config);
}

QString sensitivityFormula(const quantlens::LayerAnalysis& analysis) {
    return isFisherAnalysis(analysis) ? QObject::tr("F·(w − q(w))²")
                                      : QObject::tr("(w − q(w))² / [H⁻¹]ⱼⱼ");
}

QString runSummary(const quantlens::RunRecord& run) {
    const QLocale locale;
    return QObject::tr("%1 · %2 bits per parameter (paper %3) · perplexity %4 · KL %5 · "
                       "outliers %6%")
        .arg(QString::fromStdString(quantlens::describe(run.config)),
             locale.toString(run.bitsPerParameter, 'f', 3),
             locale.toString(run.paperBitsPerParameter, 'f', 3),
             locale.toString(run.perplexity, 'f', 4),
             locale.toString(run.comparison.klMean, 'g', 3),
             locale.toString(100.0 * run.outlierFraction, 'f', 3));
}
