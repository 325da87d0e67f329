#include "quantlens/formats/run_journal.h"

#include "input_identity.h"

#include "quantlens/core/error.h"
#include "quantlens/formats/quantlens_checkpoint.h"
#include "quantlens/io/atomic_file.h"
#include "quantlens/io/safetensors.h"
#include "quantlens/io/safetensors_writer.h"
#include "quantlens/io/text_file.h"
#include "quantlens/runtime/compressed_matrix.h"

#include <nlohmann/json.hpp>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <limits>

namespace quantlens {
namespace {

namespace fs = std::filesystem;
using nlohmann::json;
using nlohmann::ordered_json;

constexpr const char* kRunFile = "run.json";
constexpr const char* kHiddenFile = "hidden.safetensors";
constexpr const char* kLayersKey = "quantlens.journal.layers";
constexpr const char* kNextBlockKey = "quantlens.journal.next_block";

fs::path blockFile(const fs::path& directory, int block) {
    char name[32];
    std::snprintf(name, sizeof name, "block-%05d.safetensors", block);
    return directory / name;
}

void writeText(const fs::path& path, const std::string& text) {
    AtomicFile file(path);
    file.write(text.data(), text.size());
    file.commit();
}

// What the run is; a journal continues only a run whose identity is the same, key for key.
ordered_json runIdentity(const Model& model, std::span<const std::int32_t> calibration,
                         const QuantPlan& plan, const CalibrationConfig& calibrationConfig,
                         const std::string& format) {
    // A per-layer plan is part of what the run is: its settings, layer by layer.
    ordered_json method = ordered_json::parse(quantConfigJson(plan.method()));
    if (!plan.isUniform()) {
        method["layers"] = ordered_json::array();
        for (const QuantConfig& layer : plan.layers())
            method["layers"].push_back(ordered_json::parse(quantConfigJson(layer)));
    }
    ordered_json calibrated{{"sequences", calibrationConfig.sequences},
                            {"sequence_length", calibrationConfig.sequenceLength}};
    calibrated.update(tokenStreamIdentity(calibration));
    return {{"format", format},
            {"method", method},
            {"calibration", calibrated},
            {"model", modelIdentity(model)}};
}

json readJson(const fs::path& path) {
    try {
        return json::parse(readTextFile(path));
    } catch (const json::exception& e) {
        throw Error(path.string(), std::string("not valid JSON: ") + e.what());
    }
}

// Why an interrupted run's identity differs from this one's, for people.
std::string difference(const json& recorded, const json& current) {
    if (recorded.value("format", json()) != current["format"])
        return "it was writing " + recorded.value("format", json()).dump() + ", not " +
               current["format"].dump();
    if (recorded.value("method", json()) != current["method"])
        return "it quantized with other settings (" + recorded.value("method", json()).dump() +
               ", now " + current["method"].dump() + ")";
    const json& calibration = current["calibration"];
    const json was = recorded.value("calibration", json());
    if (was.value("sequences", json()) != calibration["sequences"] ||
        was.value("sequence_length", json()) != calibration["sequence_length"])
        return "it calibrated on other sequences (" + was.dump() + ")";
    if (was != calibration) return "its calibration text was different";
    const json model = recorded.value("model", json());
    if (model.value("path", json()) != current["model"]["path"])
        return "it quantized another model (" + model.value("path", json()).dump() + ")";
    if (model != current["model"])
        return "the model's files have changed since (sizes or modification times)";
    return "";
}

} // namespace

fs::path RunJournal::directoryFor(const fs::path& output) {
    fs::path directory = output;
    if (!directory.has_filename()) directory = directory.parent_path(); // "out/"
    return directory.string() + ".resume";
}

std::optional<RunJournal::Interrupted> RunJournal::interruptedRun(const fs::path& output) {
    const fs::path directory = directoryFor(output);
    if (!fs::exists(directory / kRunFile)) return std::nullopt;
    Interrupted run;
    try {
        run.blocks = readJson(directory / kRunFile)["model"]["blocks"].get<int>();
    } catch (const std::exception&) {
        return std::nullopt;
    }
    while (fs::exists(blockFile(directory, run.completedBlocks)))
        ++run.completedBlocks;
    return run;
}

RunJournal::RunJournal(const fs::path& output, const Model& model,
                       std::span<const std::int32_t> calibration, const QuantPlan& plan,
                       const CalibrationConfig& calibrationConfig, const std::string& format)
    : output_(output), directory_(directoryFor(output)), model_(model) {
    const ordered_json identity = runIdentity(model, calibration, plan, calibrationConfig, format);
    const fs::path runFile = directory_ / kRunFile;
    if (!fs::exists(runFile)) {
        std::error_code error;
        fs::create_directories(directory_, error);
        if (error)
            throw Error(directory_.string(),
                        "cannot create the resume journal: " + error.message());
        // Block files of a journal whose run.json never made it are not this run's.
        for (int b = 0; fs::exists(blockFile(directory_, b)); ++b)
            fs::remove(blockFile(directory_, b));
        fs::remove(directory_ / kHiddenFile);
        writeText(runFile, identity.dump(2) + "\n");
        return;
    }
    const std::string why = difference(readJson(runFile), json::parse(identity.dump()));
    if (!why.empty())
        throw Error(directory_.string(),
                    "cannot resume: " + why + "; remove this directory to start over");
    while (completed_ < model.config.layerCount && fs::exists(blockFile(directory_, completed_)))
        ++completed_;
    // The states are written after their block: a kill in between leaves the block to redo.
    if (!calibration.empty() && completed_ > 0) {
        const fs::path hidden = directory_ / kHiddenFile;
        const int next = fs::exists(hidden)
                             ? std::stoi(SafetensorsFile(hidden).metadata().at(kNextBlockKey))
                             : 0;
        completed_ = std::min(completed_, next);
    }
}

std::vector<JournaledLayer> RunJournal::recordedBlock(int block) const {
    const fs::path path = blockFile(directory_, block);
    const std::string source = path.string();
    const SafetensorsFile file(path, SafetensorsFile::DTypes::Any);
    const auto entry = file.metadata().find(kLayersKey);
    if (entry == file.metadata().end())
        throw Error(source, std::string("no '") + kLayersKey + "' in the metadata");
    json layers;
    try {
        layers = json::parse(entry->second);
    } catch (const json::exception& e) {
        throw Error(source, std::string("damaged layer list: ") + e.what());
    }
    if (!layers.is_array() || layers.size() != std::size_t(kLinearLayerCount))
        throw Error(source, "the layer list does not hold the block's 7 linear layers");
    std::vector<JournaledLayer> result;
    for (int i = 0; i < kLinearLayerCount; ++i) {
        const LinearLayerSpec& spec = kLinearLayers[std::size_t(i)];
        const json& settings = layers[std::size_t(i)];
        JournaledLayer journaled;
        QuantizedLayer& layer = journaled.layer;
        try {
            layer.config = parseQuantConfigJson(settings.at("settings").get<std::string>(), source);
            layer.rows = settings.at("rows").get<int>();
            layer.cols = settings.at("cols").get<int>();
            layer.outlierCount = settings.at("outliers").get<std::int64_t>();
            const json& error = settings.at("relative_output_error");
            journaled.relativeOutputError =
                error.is_null() ? std::numeric_limits<double>::quiet_NaN() : error.get<double>();
        } catch (const json::exception& e) {
            throw Error(source, std::string(spec.name) + ": damaged settings: " + e.what());
        }
        const std::vector<std::int64_t> shape = linearLayerShape(spec, model_.config);
        if (layer.rows != shape[0] || layer.cols != shape[1])
            throw Error(source, std::string(spec.name) + " is " + std::to_string(layer.rows) + "×" +
                                    std::to_string(layer.cols) + ", not the model's " +
                                    std::to_string(shape[0]) + "×" + std::to_string(shape[1]));
        const std::string prefix = std::string(spec.name) + ".";
        for (const RawTensorView& array : file.rawTensors())
            if (array.name.starts_with(prefix)) {
                const auto* bytes = reinterpret_cast<const std::uint8_t*>(array.data);
                layer.tensors[array.name.substr(prefix.size())] = {
                    array.dtype, array.shape, std::vector<std::uint8_t>(bytes, bytes + array.size)};
            }
        // Only layers the checkpoint reader accepts are handed on.
        compressedMatrix(layer.config, layer.rows, layer.cols,
                         layerArrays(layer, spec.name, source));
        result.push_back(std::move(journaled));
    }
    return result;
}

std::vector<RowMatrix> RunJournal::recordedHiddenStates() const {
    const SafetensorsFile file(directory_ / kHiddenFile);
    std::vector<RowMatrix> states;
    for (const TensorView& tensor : file.tensors()) {
        if (tensor.shape.size() != 2 || tensor.shape[1] != model_.config.hiddenSize)
            throw Error(tensor.file, "state '" + tensor.name + "' has shape " +
                                         tensor.shapeString() + ", not [tokens, " +
                                         std::to_string(model_.config.hiddenSize) + "]");
        states.emplace_back(FloatTensor(tensor).matrix());
    }
    return states;
}

void RunJournal::recordBlock(int block, const std::vector<JournaledLayer>& layers,
                             const std::vector<RowMatrix>& hiddenStates) {
    std::vector<SafetensorsWriter::TensorSpec> specs;
    json list = json::array();
    for (std::size_t i = 0; i < layers.size(); ++i) {
        const QuantizedLayer& layer = layers[i].layer;
        const std::string name = kLinearLayers[i].name;
        for (const auto& [key, tensor] : layer.tensors)
            specs.push_back({name + "." + key, tensor.dtype, tensor.shape});
        const double error = layers[i].relativeOutputError;
        list.push_back({{"name", name},
                        {"settings", quantConfigJson(layer.config)},
                        {"rows", layer.rows},
                        {"cols", layer.cols},
                        {"outliers", layer.outlierCount},
                        {"relative_output_error", std::isnan(error) ? json() : json(error)}});
    }
    SafetensorsWriter blockWriter(blockFile(directory_, block), specs, {{kLayersKey, list.dump()}});
    std::size_t next = 0;
    for (const JournaledLayer& journaled : layers)
        for (const auto& [key, tensor] : journaled.layer.tensors)
            blockWriter.write(specs[next++].name, tensor.bytes.data(), tensor.bytes.size());
    blockWriter.commit();

    if (hiddenStates.empty()) return;
    std::vector<SafetensorsWriter::TensorSpec> stateSpecs;
    for (std::size_t s = 0; s < hiddenStates.size(); ++s) {
        char name[32];
        std::snprintf(name, sizeof name, "sequence.%05zu", s);
        stateSpecs.push_back({name, "F32", {hiddenStates[s].rows(), hiddenStates[s].cols()}});
    }
    SafetensorsWriter stateWriter(directory_ / kHiddenFile, stateSpecs,
                                  {{kNextBlockKey, std::to_string(block + 1)}});
    for (std::size_t s = 0; s < hiddenStates.size(); ++s)
        stateWriter.write(stateSpecs[s].name, hiddenStates[s].data(),
                          static_cast<std::size_t>(hiddenStates[s].size()) * sizeof(float));
    stateWriter.commit();
}

void RunJournal::discard(const fs::path& output) {
    std::error_code error;
    fs::remove_all(directoryFor(output), error); // a leftover is harmless: --resume checks it
}

} // namespace quantlens
