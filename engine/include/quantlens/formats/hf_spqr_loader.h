#pragma once

#include "quantlens/model/model.h"

#include <filesystem>
#include <memory>

namespace quantlens {

// Whether `directory` holds transformers' SpQR format (docs/HF_SPQR.md): a config.json whose
// quantization_config.quant_method is "spqr". A config.json that is not JSON answers false, so that
// the plain Hugging Face loader reports it.
bool isHfSpqrCheckpoint(const std::filesystem::path& directory);

// Loads a Hugging Face SpQR directory (config.json, model.safetensors, the tokenizer) as a dense
// model: each converted linear layer decoded from its dense_weights, row_offsets, col_vals and
// in_perm exactly as spqr_quant's kernels compute it (fp16 arithmetic, outliers added, columns in
// in_perm's order) into an fp32 matrix the model owns; the layers in modules_to_not_convert and
// every other tensor viewed as stored (fp16). Every array is checked against
// quantization_config.shapes and the shape the config implies; Error names the file and tensor.
std::unique_ptr<Model> loadHfSpqrModel(const std::filesystem::path& directory);

} // namespace quantlens
