#pragma once

#include "quantlens/model.h"
#include "quantlens/tokenizer.h"

#include <memory>
#include <string>

// The tokenizer for a model: `overridePath` when given, else the one shipped with the checkpoint.
std::unique_ptr<quantlens::Tokenizer> openTokenizer(const quantlens::Model& model,
                                                    const std::string& overridePath);
