#pragma once

#include <QString>

class QCustomPlot;

// Writes a plot as PNG or PDF, or its data (`csv`) as CSV, chosen by the file's suffix. Returns an
// error sentence, empty on success.
QString exportPlot(QCustomPlot& plot, const QString& csv, const QString& path);
