#pragma once

#include "quantlens/model/model.h"

#include <filesystem>
#include <memory>

namespace quantlens {

// Whether `path` is a regular file that starts with GGUF's magic "GGUF".
bool isGgufFile(const std::filesystem::path& path);

// Opens a GGUF v2/v3 file of llama.cpp's "llama" architecture (as writeGguf or llama.cpp's
// convert_hf_to_gguf.py writes it), dequantized: every F32, F16, BF16, Q8_0, Q4_1 or Q5_1 tensor
// is decoded into an fp32 buffer the Model owns, under its Hugging Face name, with attn_q/attn_k
// rows moved back from llama.cpp's interleaved RoPE order to rotate-half (so the forward pass is
// the Hugging Face checkpoint's, bit for bit, for an F32 file written from one). The config comes
// from the llama.* keys; the tokenizer is a tokenizer.model beside the file, if there is one.
// Throws Error naming the file and the problem for a truncated or inconsistent file, another
// architecture, and tensor types or keys whose math Quantlens does not implement.
std::unique_ptr<Model> loadGgufModel(const std::filesystem::path& file);

} // namespace quantlens
