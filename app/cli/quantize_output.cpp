#include "quantize_output.h"

#include "quantlens/error.h"

namespace {

// Runs `body`, attributing errors from inside `staging` to the target directory.
template <typename Body> void attributed(const quantlens::AtomicDirectory* staging, Body&& body) {
    try {
        body();
    } catch (const quantlens::Cancelled&) {
        throw;
    } catch (const quantlens::Error& e) {
        if (!staging) throw;
        throw staging->attributed(e);
    }
}

} // namespace

QuantizeOutput::QuantizeOutput(const quantlens::Model& model, const std::string& directory,
                               const std::string& format, const std::string& dtype,
                               const std::map<std::string, std::string>& metadata)
    : dtype_(dtype) {
    if (format == "quantlens") {
        quantlens_ = std::make_unique<quantlens::QuantlensWriter>(model, directory, metadata);
        return;
    }
    if (format != "dense")
        throw quantlens::Error("", "unknown output format '" + format + "' (dense or quantlens)");
    const auto parsed = quantlens::parseDType(dtype);
    if (!parsed) throw quantlens::Error("", "unknown dtype '" + dtype + "' (F32, F16 or BF16)");
    staging_ = std::make_unique<quantlens::AtomicDirectory>(directory);
    attributed(staging_.get(), [&] {
        dense_ = std::make_unique<quantlens::DenseCheckpointWriter>(model, staging_->path(),
                                                                    *parsed, metadata);
    });
}

void QuantizeOutput::write(int block, const std::string& name,
                           const quantlens::QuantizedLayer& layer,
                           const quantlens::RowMatrix& reconstruction) {
    if (quantlens_) return quantlens_->writeLayer(block, name, layer);
    attributed(staging_.get(), [&] { dense_->writeLayer(block, name, reconstruction); });
}

void QuantizeOutput::commit() {
    if (quantlens_) return quantlens_->commit();
    attributed(staging_.get(), [&] { dense_->commit(); });
    staging_->commit();
}

std::string QuantizeOutput::description() const {
    if (quantlens_) return "quantlens, runs compressed with `quantlens-cli eval`";
    return "dense " + dtype_ + ", loads with `quantlens-cli eval`";
}
