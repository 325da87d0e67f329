#pragma once

#include "quantlens/model/model.h"
#include "quantlens/tokenizer/tokenizer.h"

#include <cstdint>
#include <filesystem>
#include <memory>
#include <span>
#include <string>
#include <string_view>
#include <vector>

namespace quantlens {

// The text a model reads, as the CLI and the studio both feed it: evaluation streams built the way
// a perplexity protocol scores them, and calibration sequences cut from a stream.

// The two protocols of shared/data/README.md.
enum class PerplexityProtocol {
    // Each non-empty line is a document: BOS + its ids, concatenated; windows of ctx + 1 tokens
    // at stride ctx (sharing their boundary token), the last one partial; mean NLL over all tokens.
    Documents,
    // The GPTQ/SpQR papers': BOS + the whole text, floor(n / ctx) windows of ctx tokens, each
    // scored alone on its last ctx - 1 tokens; ppl = exp(mean over windows of the window mean).
    Gptq,
};

PerplexityProtocol parsePerplexityProtocol(std::string_view name);
std::string_view protocolName(PerplexityProtocol protocol);

// The token stream a protocol scores, built from text; `source` names the text in errors.
std::vector<std::int32_t> tokenizeForProtocol(const Tokenizer& tokenizer, std::string_view text,
                                              PerplexityProtocol protocol, int bosToken,
                                              const std::string& source);

// The tokenizer for a model: `overridePath` when given, else the one shipped with the checkpoint.
// Throws Error when there is none or when it has more pieces than the model's vocabulary.
std::unique_ptr<Tokenizer> openTokenizer(const Model& model,
                                         const std::filesystem::path& overridePath = {});

// The token stream in `file`: a .u16/.u32 token file as it is, or text tokenized as `protocol`
// says. Ids are checked against the model's vocabulary.
std::vector<std::int32_t> readTokenStream(const std::filesystem::path& file, const Model& model,
                                          const std::filesystem::path& tokenizerOverride,
                                          PerplexityProtocol protocol);

struct CalibrationConfig {
    int sequences = 128;    // GPTQ's 128 calibration sequences
    int sequenceLength = 0; // 0: min(2048, the model's maximum)
};

// Cuts a token stream into the calibration sequences: consecutive, non-overlapping, up to
// `config.sequences` of them. Throws when not even one full sequence fits.
std::vector<std::vector<std::int32_t>> calibrationSequences(std::span<const std::int32_t> stream,
                                                            const CalibrationConfig& config,
                                                            const ModelConfig& model,
                                                            const std::string& source);

} // namespace quantlens
