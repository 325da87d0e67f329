#include "synthetic_fixtures.h"

#include "quantlens/model/synthetic_model.h"

#include <random>

namespace quantlens::test {

void writeGptqShapedModel(const std::filesystem::path& directory, std::uint64_t seed) {
    SyntheticModelSpec spec;
    spec.hiddenSize = 64;
    spec.intermediateSize = 96;
    spec.layers = 2;
    spec.heads = 4;
    spec.kvHeads = 2;
    spec.vocab = 128;
    spec.maxPositions = 64;
    spec.dtype = "F32";
    spec.seed = seed;
    writeSyntheticModel(spec, directory, JobContext{});
}

std::vector<std::int32_t> randomTokens(int count, int vocab, std::uint32_t seed) {
    std::mt19937 generator(seed);
    std::vector<std::int32_t> tokens(static_cast<std::size_t>(count));
    for (auto& t : tokens)
        t = std::uniform_int_distribution<int>(0, vocab - 1)(generator);
    return tokens;
}

} // namespace quantlens::test
