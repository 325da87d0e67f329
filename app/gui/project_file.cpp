#include "project_file.h"

#include "quant_config_json.h"

#include "quantlens/core/error.h"

#include <QFile>
#include <QJsonArray>
#include <QJsonDocument>
#include <QJsonObject>
#include <QSaveFile>

#include <cmath>
#include <limits>

namespace {

constexpr int kVersion = 1;

// JSON has no NaN: unmeasured numbers are written as null and read back as NaN.
QJsonValue number(double value) {
    return std::isfinite(value) ? QJsonValue(value) : QJsonValue(QJsonValue::Null);
}

double numberFrom(const QJsonValue& value) {
    return value.isDouble() ? value.toDouble() : std::numeric_limits<double>::quiet_NaN();
}

[[noreturn]] void fail(const QString& path, const QString& message) {
    throw quantlens::Error(path.toStdString(), message.toStdString());
}

quantlens::QuantConfig configFrom(const QJsonValue& json, const QString& path) {
    try {
        return quantConfigFromJson(json.toObject());
    } catch (const quantlens::Error& error) {
        fail(path, QObject::tr("a method's settings are invalid: %1")
                       .arg(QString::fromStdString(error.message())));
    }
}

QJsonObject runJson(const quantlens::RunRecord& run) {
    QJsonArray layers;
    for (const quantlens::LayerReport& l : run.layers)
        layers.append(QJsonObject{{"block", l.block},
                                  {"name", QString::fromStdString(l.name)},
                                  {"rows", l.rows},
                                  {"cols", l.cols},
                                  {"stored_bytes", qint64(l.storedBytes)},
                                  {"bits_per_param", number(l.bitsPerParameter)},
                                  {"paper_bits_per_param", number(l.paperBitsPerParameter)},
                                  {"outliers", qint64(l.outliers)},
                                  {"relative_output_error", number(l.relativeOutputError)},
                                  {"config", toJson(l.config)}});
    QJsonObject comparison;
    for (const quantlens::ComparisonFigure& figure : quantlens::kComparisonFigures)
        comparison[figure.key] = number(run.comparison.*figure.value);
    QJsonObject json{{"config", toJson(run.config)},
                     {"bits_per_param", number(run.bitsPerParameter)},
                     {"paper_bits_per_param", number(run.paperBitsPerParameter)},
                     {"outlier_fraction", number(run.outlierFraction)},
                     {"ppl", number(run.perplexity)},
                     {"comparison", comparison},
                     {"seconds", number(run.seconds)},
                     {"device", QString::fromStdString(run.device)},
                     {"layers", layers}};
    if (run.targetBits) json["target_bits"] = *run.targetBits;
    return json;
}

quantlens::RunRecord runFrom(const QJsonObject& json, const QString& path) {
    quantlens::RunRecord run{configFrom(json["config"], path),
                             numberFrom(json["bits_per_param"]),
                             numberFrom(json["paper_bits_per_param"]),
                             numberFrom(json["outlier_fraction"]),
                             numberFrom(json["ppl"]),
                             {},
                             numberFrom(json["seconds"]),
                             json["device"].toString().toStdString(),
                             {},
                             std::nullopt};
    const QJsonObject comparison = json["comparison"].toObject();
    for (const quantlens::ComparisonFigure& figure : quantlens::kComparisonFigures)
        run.comparison.*figure.value = numberFrom(comparison[figure.key]);
    if (!json.contains("comparison"))
        run.comparison.klMean = numberFrom(json["kl"]); // older projects
    if (json["target_bits"].isDouble()) run.targetBits = json["target_bits"].toDouble();
    for (const QJsonValue& value : json["layers"].toArray()) {
        const QJsonObject l = value.toObject();
        // Layers saved before per-layer settings were quantized with the run's.
        run.layers.push_back(
            {l["block"].toInt(), l["name"].toString().toStdString(), l["rows"].toInt(),
             l["cols"].toInt(), std::size_t(l["stored_bytes"].toInteger()),
             numberFrom(l["bits_per_param"]), numberFrom(l["paper_bits_per_param"]),
             l["outliers"].toInteger(), numberFrom(l["relative_output_error"]),
             l.contains("config") ? configFrom(l["config"], path) : run.config});
    }
    return run;
}

} // namespace

void saveProject(const Project& project, const QString& path) {
    QJsonArray sweep, runs;
    for (const quantlens::QuantConfig& config : project.sweep)
        sweep.append(toJson(config));
    for (const quantlens::RunRecord& run : project.runs)
        runs.append(runJson(run));
    const QJsonObject json{{"format", "quantlens-project"},
                           {"version", kVersion},
                           {"model", project.modelPath},
                           {"calibration_file", project.data.calibrationFile},
                           {"calibration_sequences", project.data.sequences},
                           {"calibration_sequence_length", project.data.sequenceLength},
                           {"evaluation_file", project.data.evaluationFile},
                           {"evaluation_context", project.data.context},
                           {"settings", toJson(project.settings)},
                           {"sweep", sweep},
                           {"baseline_ppl", number(project.baselinePerplexity)},
                           {"runs", runs}};
    QSaveFile file(path);
    if (!file.open(QIODevice::WriteOnly) || file.write(QJsonDocument(json).toJson()) < 0 ||
        !file.commit())
        fail(path, QObject::tr("could not be written: %1").arg(file.errorString()));
}

Project loadProject(const QString& path) {
    QFile file(path);
    if (!file.open(QIODevice::ReadOnly))
        fail(path, QObject::tr("could not be read: %1").arg(file.errorString()));
    QJsonParseError error;
    const QJsonDocument document = QJsonDocument::fromJson(file.readAll(), &error);
    if (document.isNull())
        fail(path,
             QObject::tr("is not JSON: %1 at byte %2").arg(error.errorString()).arg(error.offset));
    const QJsonObject json = document.object();
    if (json["format"].toString() != "quantlens-project")
        fail(path, QObject::tr("is not a Quantlens project"));
    if (json["version"].toInt() != kVersion)
        fail(path, QObject::tr("has version %1; this studio reads version %2")
                       .arg(json["version"].toInt())
                       .arg(kVersion));
    Project project{json["model"].toString(),
                    {json["calibration_file"].toString(), json["calibration_sequences"].toInt(),
                     json["calibration_sequence_length"].toInt(),
                     json["evaluation_file"].toString(), json["evaluation_context"].toInt()},
                    configFrom(json["settings"], path),
                    {},
                    numberFrom(json["baseline_ppl"]),
                    {}};
    for (const QJsonValue& config : json["sweep"].toArray())
        project.sweep.push_back(configFrom(config, path));
    for (const QJsonValue& run : json["runs"].toArray())
        project.runs.push_back(runFrom(run.toObject(), path));
    return project;
}
