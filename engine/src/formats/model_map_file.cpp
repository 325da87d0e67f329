#include "quantlens/formats/model_map_file.h"

#include "input_identity.h"

#include "quantlens/core/error.h"
#include "quantlens/core/hash.h"
#include "quantlens/formats/quantlens_checkpoint.h"
#include "quantlens/io/atomic_file.h"
#include "quantlens/io/text_file.h"

#include <nlohmann/json.hpp>

#include <cmath>
#include <cstdio>
#include <limits>

namespace quantlens {
namespace {

namespace fs = std::filesystem;
using nlohmann::json;
using nlohmann::ordered_json;

// The request as JSON: the part of a map's file and identity that says what was measured.
ordered_json requestJson(const ModelMapRequest& request) {
    return {
        {"metric", mapMetricInfo(request.metric).key},
        {"settings", ordered_json::parse(quantConfigJson(request.config))},
        {"calibration",
         {{"sequences", request.calibration.sequences},
          {"sequence_length", request.calibration.sequenceLength}}},
        {"scoring",
         {{"ctx", request.scoring.context}, {"protocol", protocolName(request.scoring.protocol)}}}};
}

template <typename T> T field(const json& object, const char* key, const std::string& source) {
    const auto it = object.find(key);
    if (it == object.end()) throw Error(source, std::string("missing '") + key + "'");
    try {
        return it->get<T>();
    } catch (const json::exception&) {
        throw Error(source, std::string("'") + key + "' has the wrong type");
    }
}

} // namespace

std::string modelMapJson(const ModelMap& map) {
    ordered_json out = requestJson(map.request);
    out["label"] = mapMetricInfo(map.request.metric).label;
    out["blocks"] = map.blocks;
    out["layers"] = ordered_json::array();
    for (const LinearLayerSpec& layer : kLinearLayers)
        out["layers"].push_back(layer.name);
    out["values"] = ordered_json::array();
    for (int b = 0; b < map.blocks; ++b) {
        ordered_json row = ordered_json::array();
        for (int l = 0; l < kLinearLayerCount; ++l)
            row.push_back(std::isfinite(map.at(b, l)) ? ordered_json(map.at(b, l))
                                                      : ordered_json(nullptr));
        out["values"].push_back(std::move(row));
    }
    return out.dump();
}

ModelMap parseModelMapJson(const std::string& text, const std::string& source) {
    json in;
    try {
        in = json::parse(text);
    } catch (const json::exception& e) {
        throw Error(source, std::string("not valid JSON: ") + e.what());
    }
    if (!in.is_object()) throw Error(source, "a model map is a JSON object");
    ModelMap map;
    const auto metric = parseMapMetric(field<std::string>(in, "metric", source));
    if (!metric) throw Error(source, "unknown metric '" + in["metric"].get<std::string>() + "'");
    map.request.metric = *metric;
    map.request.config = parseQuantConfigJson(field<json>(in, "settings", source).dump(), source);
    const json calibration = field<json>(in, "calibration", source);
    map.request.calibration.sequences = field<int>(calibration, "sequences", source);
    map.request.calibration.sequenceLength = field<int>(calibration, "sequence_length", source);
    const json scoring = field<json>(in, "scoring", source);
    map.request.scoring.context = field<int>(scoring, "ctx", source);
    try {
        map.request.scoring.protocol =
            parsePerplexityProtocol(field<std::string>(scoring, "protocol", source));
    } catch (const Error& e) {
        throw Error(source, e.message());
    }
    map.blocks = field<int>(in, "blocks", source);
    const auto layers = field<std::vector<std::string>>(in, "layers", source);
    if (layers.size() != kLinearLayers.size())
        throw Error(source, "a model map has " + std::to_string(kLinearLayerCount) + " layers");
    for (std::size_t l = 0; l < layers.size(); ++l)
        if (layers[l] != kLinearLayers[l].name)
            throw Error(source, "layer " + std::to_string(l) + " is '" + layers[l] + "', not '" +
                                    kLinearLayers[l].name + "'");
    const json values = field<json>(in, "values", source);
    if (map.blocks < 0 || !values.is_array() || values.size() != std::size_t(map.blocks))
        throw Error(source, "'values' must hold one row per block");
    for (const json& row : values) {
        if (!row.is_array() || row.size() != kLinearLayers.size())
            throw Error(source, "each row of 'values' holds one value per layer");
        for (const json& value : row) {
            if (!value.is_null() && !value.is_number())
                throw Error(source, "values are numbers or null");
            map.values.push_back(value.is_null() ? std::numeric_limits<double>::quiet_NaN()
                                                 : value.get<double>());
        }
    }
    return map;
}

std::string modelMapIdentity(const Model& model, const ModelMapRequest& request,
                             std::span<const std::int32_t> calibration,
                             std::span<const std::int32_t> evaluation) {
    ordered_json identity = requestJson(request);
    identity["calibration"].update(tokenStreamIdentity(calibration));
    // Only SoloKl reads the evaluation text.
    if (request.metric == MapMetric::SoloKl)
        identity["scoring"].update(tokenStreamIdentity(evaluation));
    identity["model"] = modelIdentity(model);
    return identity.dump();
}

fs::path ModelMapCache::fileFor(const std::string& identity) const {
    char name[32];
    std::snprintf(name, sizeof name, "map-%016llx.json",
                  static_cast<unsigned long long>(fnv1a(identity)));
    return directory_ / name;
}

std::optional<ModelMap> ModelMapCache::find(const std::string& identity) const {
    const fs::path file = fileFor(identity);
    std::error_code error;
    if (!fs::is_regular_file(file, error)) return std::nullopt;
    try {
        const json stored = json::parse(readTextFile(file));
        // Two identities may share a hash: the file says whose map it holds.
        if (stored.value("identity", std::string()) != identity) return std::nullopt;
        return parseModelMapJson(stored.at("map").dump(), file.string());
    } catch (const std::exception&) {
        return std::nullopt; // damaged: computed again and replaced
    }
}

void ModelMapCache::store(const std::string& identity, const ModelMap& map) const {
    std::error_code error;
    fs::create_directories(directory_, error);
    if (error) throw Error(directory_.string(), "cannot create the map cache: " + error.message());
    const std::string text =
        ordered_json{{"identity", identity}, {"map", ordered_json::parse(modelMapJson(map))}}
            .dump();
    AtomicFile file(fileFor(identity));
    file.write(text.data(), text.size());
    file.commit();
}

ModelMap ModelMapCache::mapOf(const Model& model, const ModelMapRequest& request,
                              std::span<const std::int32_t> calibration,
                              std::span<const std::int32_t> evaluation,
                              const JobContext& job) const {
    const std::string identity = modelMapIdentity(model, request, calibration, evaluation);
    if (std::optional<ModelMap> cached = find(identity)) return *std::move(cached);
    ModelMap map = computeModelMap(model, request, calibration, evaluation, job);
    store(identity, map);
    return map;
}

} // namespace quantlens
