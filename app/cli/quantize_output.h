#pragma once

#include "quantlens/atomic_directory.h"
#include "quantlens/dense_checkpoint_writer.h"
#include "quantlens/model.h"
#include "quantlens/quantized_layer.h"
#include "quantlens/quantlens_checkpoint.h"

#include <map>
#include <memory>
#include <string>

// Where `quantize` writes its result, as one sink for quantizeModel: a dense Hugging Face
// checkpoint of the dequantized weights in `dtype` (format "dense", the default) or a quantlens
// checkpoint of the compressed layers (format "quantlens", which eval and generate run through
// the fused kernels and `export` converts). Either way the directory appears whole at commit()
// or not at all, and errors name the files the user asked for.
class QuantizeOutput {
public:
    QuantizeOutput(const quantlens::Model& model, const std::string& directory,
                   const std::string& format, const std::string& dtype,
                   const std::map<std::string, std::string>& metadata);

    void write(int block, const std::string& name, const quantlens::QuantizedLayer& layer,
               const quantlens::RowMatrix& reconstruction);
    void commit();
    // For the summary line, e.g. "quantlens, runs compressed with `quantlens-cli eval`".
    std::string description() const;

private:
    std::string dtype_;
    std::unique_ptr<quantlens::QuantlensWriter> quantlens_;
    std::unique_ptr<quantlens::AtomicDirectory> staging_; // dense: DenseCheckpointWriter's output
    std::unique_ptr<quantlens::DenseCheckpointWriter> dense_;
};
