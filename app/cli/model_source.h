#pragma once

#include "quantlens/model.h"
#include "quantlens/perplexity.h"
#include "quantlens/tokenizer.h"

#include <memory>
#include <string>

// The tokenizer for a model: `overridePath` when given, else the one shipped with the checkpoint.
std::unique_ptr<quantlens::Tokenizer> openTokenizer(const quantlens::Model& model,
                                                    const std::string& overridePath);

// The token stream in `file`: a .u16/.u32 token file as it is, or text tokenized as `protocol`
// says. Ids are checked against the model's vocabulary.
std::vector<std::int32_t> readTokenStream(const std::string& file, const quantlens::Model& model,
                                          const std::string& tokenizerOverride,
                                          quantlens::PerplexityProtocol protocol);
