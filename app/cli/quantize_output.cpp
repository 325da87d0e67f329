#include "quantize_output.h"

#include "quantlens/error.h"

QuantizeOutput::QuantizeOutput(const quantlens::Model& model, const std::string& directory,
                               const std::string& format, const std::string& dtype,
                               const std::map<std::string, std::string>& metadata)
    : format_(format), dtype_(dtype) {
    if (format == "quantlens") {
        quantlens_ = std::make_unique<quantlens::QuantlensWriter>(model, directory, metadata);
    } else if (format == "dense") {
        const auto parsed = quantlens::parseDType(dtype);
        if (!parsed) throw quantlens::Error("", "unknown dtype '" + dtype + "' (F32, F16 or BF16)");
        dense_ = std::make_unique<quantlens::DenseCheckpointWriter>(model, directory, *parsed,
                                                                    metadata);
    } else {
        throw quantlens::Error("", "unknown output format '" + format + "' (dense or quantlens)");
    }
}

void QuantizeOutput::write(int block, const std::string& name,
                           const quantlens::QuantizedLayer& layer,
                           const quantlens::RowMatrix& reconstruction) {
    if (quantlens_)
        quantlens_->writeLayer(block, name, layer);
    else
        dense_->writeLayer(block, name, reconstruction);
}

void QuantizeOutput::commit() {
    if (quantlens_)
        quantlens_->commit();
    else
        dense_->commit();
}

std::string QuantizeOutput::description() const {
    if (quantlens_) return "quantlens, runs compressed with `quantlens-cli eval`";
    return "dense " + dtype_ + ", loads with `quantlens-cli eval`";
}
