#include "run_description.h"

#include "quantlens/quantization/layer_calibration.h"

#include <QLocale>

#include <cmath>

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

QString runSettings(const quantlens::RunRecord& run) {
    if (run.targetBits)
        return QObject::tr("%1 budget %2 bits")
            .arg(methodLabel(run.config), QLocale().toString(*run.targetBits, 'f', 2));
    return QString::fromStdString(quantlens::describe(run.config));
}

QString runSummary(const quantlens::RunRecord& run) {
    const QLocale locale;
    // A figure the run did not measure (a project saved before it existed) reads "–".
    const auto figure = [&](double value, char format, int precision) {
        return std::isfinite(value) ? locale.toString(value, format, precision) : QString("–");
    };
    const quantlens::BaseComparison& c = run.comparison;
    return QObject::tr("%1 · %2 bits per parameter (paper %3) · perplexity %4 (×%5 ± %6) · "
                       "KL %7, p99 %8 · top-1 %9% · outliers %10%")
               .arg(runSettings(run), figure(run.bitsPerParameter, 'f', 3),
                    figure(run.paperBitsPerParameter, 'f', 3), figure(run.perplexity, 'f', 4),
                    figure(c.perplexityRatio, 'f', 4), figure(c.perplexityRatioError, 'f', 4),
                    figure(c.klMean, 'g', 3), figure(c.klP99, 'g', 3),
                    figure(100.0 * c.top1Agreement, 'f', 2))
               .arg(figure(100.0 * run.outlierFraction, 'f', 3)) +
           (run.device.empty() ? QString()
                               : QObject::tr(" · on %1").arg(QString::fromStdString(run.device)));
}
