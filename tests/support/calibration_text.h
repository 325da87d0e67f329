#pragma once

#include "quantlens/model/model.h"

#include <cstdint>
#include <vector>

namespace quantlens::test {

// The start of WikiText-2 test (enough for a few calibration sequences) as the model's tokenizer
// cuts it (Documents protocol: BOS + each line's ids).
std::vector<std::int32_t> wikitextStream(const Model& model);

// The TinyStories validation excerpt, the shared evaluation text, cut the same way.
std::vector<std::int32_t> tinystoriesStream(const Model& model);

} // namespace quantlens::test
