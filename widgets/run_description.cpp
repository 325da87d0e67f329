#include "run_description.h"

#include <QLocale>

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

QString runSummary(const quantlens::RunRecord& run) {
    const QLocale locale;
    return QObject::tr("%1 · %2 bits per parameter (paper %3) · perplexity %4 · KL %5 · "
                       "outliers %6%")
        .arg(QString::fromStdString(quantlens::describe(run.config)),
             locale.toString(run.bitsPerParameter, 'f', 3),
             locale.toString(run.paperBitsPerParameter, 'f', 3),
             locale.toString(run.perplexity, 'f', 4), locale.toString(run.meanKlDivergence, 'g', 3),
             locale.toString(100.0 * run.outlierFraction, 'f', 3));
}
