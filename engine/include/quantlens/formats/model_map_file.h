#pragma once

#include "quantlens/model/model.h"
#include "quantlens/quantization/model_map.h"

#include <cstdint>
#include <filesystem>
#include <optional>
#include <span>
#include <string>

namespace quantlens {

// A model map as JSON (docs/FORMAT.md, Model maps), as `analyse --json` prints it and the map cache
// keeps it: the metric, the settings it was measured with, the layer names and one row of values
// per block, null where nothing was measured.
std::string modelMapJson(const ModelMap& map);
// Throws Error (with `source`) for text that is not such a map.
ModelMap parseModelMapJson(const std::string& text, const std::string& source);

// What a map was computed from, key for key: the request, the model's files (sizes and times) and
// the calibration and evaluation token streams' hashes. Equal identities mean equal maps.
std::string modelMapIdentity(const Model& model, const ModelMapRequest& request,
                             std::span<const std::int32_t> calibration,
                             std::span<const std::int32_t> evaluation);

// Computed maps kept in a directory, one file per identity (written atomically), so that a map
// costs its computation once per model and settings.
class ModelMapCache {
public:
    explicit ModelMapCache(std::filesystem::path directory) : directory_(std::move(directory)) {}

    // The map stored under `identity`; nothing when there is none or its file is damaged (it is
    // then computed again and replaced).
    std::optional<ModelMap> find(const std::string& identity) const;
    // Throws Error naming the file when it cannot be written (e.g. the disk is full).
    void store(const std::string& identity, const ModelMap& map) const;
    // The map of `request` on these inputs: found here, or computed (computeModelMap) and stored.
    ModelMap mapOf(const Model& model, const ModelMapRequest& request,
                   std::span<const std::int32_t> calibration,
                   std::span<const std::int32_t> evaluation, const JobContext& job) const;

private:
    std::filesystem::path fileFor(const std::string& identity) const;
    std::filesystem::path directory_;
};

} // namespace quantlens
