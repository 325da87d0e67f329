#pragma once

#include "quantlens/model/model.h"

#include <nlohmann/json.hpp>

#include <cstdint>
#include <span>
#include <string>

namespace quantlens {

// What a computation read, for the files that record one (a run's journal, a cached model map):
// a later computation on other inputs must not take them for its own.

// The model's path and block count, and the files it was read from with their sizes and
// modification times: a model rewritten in place (another download, a converted checkpoint) no
// longer matches.
nlohmann::ordered_json modelIdentity(const Model& model);

// A token stream's length and FNV-1a hash, as 16 hex digits.
nlohmann::ordered_json tokenStreamIdentity(std::span<const std::int32_t> tokens);

} // namespace quantlens
