#pragma once

#include "quantlens/core/dtype.h"
#include "quantlens/core/float_tensor.h"
#include "quantlens/io/safetensors_writer.h"
#include "quantlens/model/model.h"

#include <filesystem>
#include <map>
#include <memory>
#include <string>

namespace quantlens {

// Writes a Hugging Face LLaMA directory (config.json, model.safetensors, the tokenizer) that
// holds `source` with each block's linear layers replaced by the matrices given to writeLayer(),
// e.g. a quantized model's reconstruction. Streams: each tensor is written as soon as it is known,
// so memory stays at one layer. A llama2.c source is converted on the way (Q/K rows permuted from
// interleaved to rotate-half RoPE). Every file appears atomically.
class DenseCheckpointWriter {
public:
    DenseCheckpointWriter(const Model& source, const std::filesystem::path& directory, DType dtype,
                          const std::map<std::string, std::string>& metadata);
    ~DenseCheckpointWriter();

    // Layers arrive in quantization order (block by block, kLinearLayers order).
    void writeLayer(int block, const std::string& name, const RowMatrix& weights);
    void commit();

private:
    struct Entry {
        std::string name;         // Hugging Face tensor name
        const TensorView* source; // the stored tensor it replaces or copies
        int block;                // linear layers: their block; others: -1
        std::string layer;        // linear layers: "q_proj", …; others: empty
    };
    void writeTensor(const Entry& entry, const float* values);
    void copyUntilNextLayer();

    const Model& source_;
    std::filesystem::path directory_;
    DType dtype_;
    std::vector<Entry> entries_;
    std::size_t next_ = 0;
    std::unique_ptr<SafetensorsWriter> writer_;
};

} // namespace quantlens
