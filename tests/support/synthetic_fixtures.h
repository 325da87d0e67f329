#pragma once

#include <cstdint>
#include <filesystem>
#include <vector>

namespace quantlens::test {

// A small synthetic LLaMA (dim 64, FFN 96, 2 layers, 4 heads / 2 KV, vocabulary 128, F32) whose
// every dimension is a multiple of 32, as the GPTQ checkpoint layout needs.
void writeGptqShapedModel(const std::filesystem::path& directory, std::uint64_t seed);

// `count` token ids drawn uniformly from [0, vocab) by a generator seeded with `seed`.
std::vector<std::int32_t> randomTokens(int count, int vocab, std::uint32_t seed);

} // namespace quantlens::test
