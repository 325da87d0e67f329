#pragma once

#include "quantlens/formats/quantlens_checkpoint.h"
#include "quantlens/model/model.h"

#include <filesystem>
#include <memory>

namespace quantlens {

// Loads an HF directory (config.json + model.safetensors or a sharded index), a `quantlens`
// checkpoint directory (its compressed layers as `compressed` says), a Hugging Face SpQR
// directory or a GGUF file (both dequantized), or a llama2.c .bin.
std::unique_ptr<Model> loadModel(const std::filesystem::path& path,
                                 CompressedLayers compressed = CompressedLayers::Dequantize);

} // namespace quantlens
