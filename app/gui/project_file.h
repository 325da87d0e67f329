#pragma once

#include "quant_settings_panel.h"

#include "quantlens/quantization/run_record.h"

#include <QString>

#include <vector>

// A studio session as saved in a project file (JSON, "*.quantlens"): the model, the data and
// method settings, the sweep list, and every run with its per-layer reports, so closing the window
// loses no run.
struct Project {
    QString modelPath; // empty when no model was open
    DataSettings data;
    quantlens::QuantConfig settings;
    std::vector<quantlens::QuantConfig> sweep;
    double baselinePerplexity; // NaN when not yet measured
    std::vector<quantlens::RunRecord> runs;
};

// Both throw quantlens::Error naming the file. Writes are atomic.
void saveProject(const Project& project, const QString& path);
Project loadProject(const QString& path);
