#include "quantlens/formats/dense_checkpoint_writer.h"

#include "quantlens/core/error.h"
#include "quantlens/io/atomic_file.h"
#include "quantlens/io/text_file.h"

#include <nlohmann/json.hpp>

namespace quantlens {
namespace {

namespace fs = std::filesystem;

void writeWholeFile(const fs::path& path, const std::string& bytes) {
    AtomicFile file(path);
    file.write(bytes.data(), bytes.size());
    file.commit();
}

// config.json for the output: the source's own (dtype updated), or one describing a converted
// llama2.c model (whose Q/K rows the writer permutes to rotate-half).
std::string configJson(const Model& source, DType dtype) {
    if (source.format == ModelFormat::HuggingFace) {
        nlohmann::json config = nlohmann::json::parse(readTextFile(source.path / "config.json"));
        config["torch_dtype"] = torchDtypeName(dtype);
        return config.dump(2) + "\n";
    }
    ModelConfig converted = source.config;
    converted.ropeLayout = RopeLayout::RotateHalf;
    return hfConfigJson(converted, dtype);
}

} // namespace

DenseCheckpointWriter::DenseCheckpointWriter(const Model& source, const fs::path& directory,
                                             DType dtype,
                                             const std::map<std::string, std::string>& metadata)
    : source_(source), directory_(directory), dtype_(dtype) {
    std::error_code error;
    fs::create_directories(directory, error);
    if (error)
        throw Error(directory.string(), "cannot create the output directory: " + error.message());

    forEachModelTensor(
        source,
        [&](const std::string& name, const TensorView& view) {
            entries_.push_back({name, &view, -1, ""});
        },
        [&](int block, int layer) {
            const BlockWeights& weights = source.blocks[static_cast<std::size_t>(block)];
            const LinearLayerSpec& spec = kLinearLayers[static_cast<std::size_t>(layer)];
            entries_.push_back({linearLayerPrefix(block, layer) + ".weight",
                                &(weights.*spec.weights), block, spec.name});
        });

    std::vector<SafetensorsWriter::TensorSpec> specs;
    for (const Entry& e : entries_)
        specs.push_back({e.name, std::string(dtypeName(dtype)), e.source->shape});
    std::map<std::string, std::string> fullMetadata = metadata;
    fullMetadata["format"] = "pt";
    writer_ = std::make_unique<SafetensorsWriter>(directory / "model.safetensors", std::move(specs),
                                                  fullMetadata);
    copyUntilNextLayer();
}

DenseCheckpointWriter::~DenseCheckpointWriter() = default;

void DenseCheckpointWriter::writeTensor(const Entry& entry, const float* values) {
    const auto count = static_cast<std::size_t>(entry.source->elementCount());
    if (dtype_ == DType::F32) {
        writer_->write(entry.name, values, count * sizeof(float));
        return;
    }
    std::vector<std::uint16_t> narrow(count);
    for (std::size_t i = 0; i < count; ++i)
        narrow[i] = dtype_ == DType::F16 ? floatToF16(values[i]) : floatToBf16(values[i]);
    writer_->write(entry.name, narrow.data(), count * sizeof(std::uint16_t));
}

void DenseCheckpointWriter::copyUntilNextLayer() {
    for (; next_ < entries_.size() && entries_[next_].block < 0; ++next_) {
        const TensorView& source = *entries_[next_].source;
        writeTensor(entries_[next_], FloatTensor(source).data());
        releaseMappedPages(source.data, source.byteSize());
    }
}

void DenseCheckpointWriter::writeLayer(int block, const std::string& name,
                                       const RowMatrix& weights) {
    if (next_ >= entries_.size() || entries_[next_].block != block || entries_[next_].layer != name)
        throw Error(directory_.string(),
                    "layer " + std::to_string(block) + "." + name + " written out of order" +
                        (next_ < entries_.size() ? "; expected " + entries_[next_].name : ""));
    const Entry& entry = entries_[next_];
    if (weights.rows() != entry.source->shape[0] || weights.cols() != entry.source->shape[1])
        throw Error(directory_.string(), "layer " + entry.name + " has the wrong shape");
    // llama2.c sources, and quantlens checkpoints written from them, keep interleaved Q/K rows.
    const bool permuteRope = source_.config.ropeLayout == RopeLayout::Interleaved &&
                             kLinearLayers[std::size_t(linearLayerIndex(name))].rotary;
    if (!permuteRope) {
        writeTensor(entry, weights.data());
    } else {
        // llama2.c rotates pairs (2i, 2i+1) of each head; HF rotates (i, i + d/2).
        const int headDim = source_.config.headDim, half = headDim / 2;
        RowMatrix permuted(weights.rows(), weights.cols());
        for (Eigen::Index head = 0; head < weights.rows() / headDim; ++head)
            for (int i = 0; i < half; ++i)
                for (int j = 0; j < 2; ++j)
                    permuted.row(head * headDim + j * half + i) =
                        weights.row(head * headDim + 2 * i + j);
        writeTensor(entry, permuted.data());
    }
    ++next_;
    copyUntilNextLayer();
}

void DenseCheckpointWriter::commit() {
    copyUntilNextLayer();
    if (next_ != entries_.size())
        throw Error(directory_.string(),
                    "checkpoint incomplete: " + entries_[next_].name + " was never written");
    writer_->commit();
    writeWholeFile(directory_ / "config.json", configJson(source_, dtype_));
    if (!source_.defaultTokenizer.empty()) {
        const bool sentencePiece = source_.defaultTokenizer.extension() != ".bin";
        writeWholeFile(directory_ / (sentencePiece ? "tokenizer.model" : "tokenizer.bin"),
                       readTextFile(source_.defaultTokenizer));
    }
}

} // namespace quantlens
