#include "model/model_shapes.h"
#include "quantlens/core/error.h"
#include "quantlens/model/model.h"

#include <array>
#include <cstdlib>
#include <cstring>

namespace quantlens {
namespace {

namespace fs = std::filesystem;

constexpr std::int32_t kVersionedExportMagic = 0x616b3432; // "ak42": llama2.c's v1/v2 exports

// The tokenizer llama2.c pairs with a checkpoint: tok<vocab>.bin or tokenizer.bin beside it.
fs::path findTokenizer(const fs::path& binFile, int vocabSize) {
    for (const fs::path& candidate :
         {binFile.parent_path() / ("tok" + std::to_string(vocabSize) + ".bin"),
          binFile.parent_path() / "tokenizer.bin"})
        if (fs::is_regular_file(candidate)) return candidate;
    return {};
}

} // namespace

// Layout (llama2.c `run.c`, legacy v0): 7 int32 header fields, then fp32 tensors in this order:
// token embedding [vocab, dim], rms_att [L, dim], wq [L, dim, dim], wk [L, kvDim, dim],
// wv [L, kvDim, dim], wo [L, dim, dim], rms_ffn [L, dim], w1 [L, ffn, dim], w2 [L, dim, ffn],
// w3 [L, ffn, dim], rms_final [dim], freq_cis_real and _imag [seq, headDim/2], then the classifier
// [vocab, dim] when the header's vocab is negative.
std::unique_ptr<Model> loadLlama2cModel(const fs::path& binFile) {
    const std::string source = binFile.string();
    auto file = std::make_shared<const MappedFile>(binFile);
    const std::span<const std::byte> bytes = file->bytes();
    std::array<std::int32_t, 7> header{};
    if (bytes.size() < sizeof(header))
        throw Error(source, "truncated: " + std::to_string(bytes.size()) +
                                " bytes is too short for the 28-byte llama2.c header");
    std::memcpy(header.data(), bytes.data(), sizeof(header));
    if (header[0] == kVersionedExportMagic)
        throw Error(source, "llama2.c versioned export (magic \"ak42\") is not supported; "
                            "export the checkpoint in the legacy (v0) format");

    const auto [dim, ffn, layers, heads, kvHeads, signedVocab, seqLen] = header;
    auto model = std::make_unique<Model>();
    model->format = ModelFormat::Llama2c;
    model->path = binFile;
    ModelConfig& c = model->config;
    c.hiddenSize = dim;
    c.intermediateSize = ffn;
    c.layerCount = layers;
    c.headCount = heads;
    c.kvHeadCount = kvHeads;
    const std::int64_t vocabMagnitude = std::abs(static_cast<std::int64_t>(signedVocab));
    c.vocabSize = vocabMagnitude > (1 << 30) ? 0 : static_cast<int>(vocabMagnitude);
    c.maxPositions = seqLen;
    c.headDim = defaultHeadDim(dim, heads, source + " header");
    c.rmsNormEps = 1e-5f;
    c.ropeTheta = 10000.0f;
    c.ropeLayout = RopeLayout::Interleaved;
    c.tiedEmbeddings = signedVocab > 0;
    c.bosToken = 1;
    c.eosTokens = {2};
    c.validate(source + " header");

    const std::int64_t vocab = c.vocabSize, kvDim = c.kvDim(), L = layers, half = c.headDim / 2;
    std::int64_t offset = sizeof(header);
    const auto take = [&](const std::string& name, std::vector<std::int64_t> shape) {
        TensorView view;
        view.name = name;
        view.dtype = DType::F32;
        view.shape = std::move(shape);
        view.file = source;
        std::int64_t size = sizeof(float);
        for (std::int64_t d : view.shape)
            if (__builtin_mul_overflow(size, d, &size))
                throw Error(source,
                            "tensor '" + name + "' is too large to address; the header is corrupt");
        if (size > static_cast<std::int64_t>(bytes.size()) - offset)
            throw Error(source, "truncated: tensor '" + name + "' needs bytes up to " +
                                    std::to_string(offset + size) + " but the file has " +
                                    std::to_string(bytes.size()));
        view.data = bytes.data() + offset;
        offset += size;
        model->storedTensors.push_back(view);
        return view;
    };

    const TensorView embedding = take("token_embedding_table", {vocab, dim});
    const TensorView rmsAtt = take("rms_att_weight", {L, dim});
    const TensorView wq = take("wq", {L, dim, dim});
    const TensorView wk = take("wk", {L, kvDim, dim});
    const TensorView wv = take("wv", {L, kvDim, dim});
    const TensorView wo = take("wo", {L, dim, dim});
    const TensorView rmsFfn = take("rms_ffn_weight", {L, dim});
    const TensorView w1 = take("w1", {L, ffn, dim});
    const TensorView w2 = take("w2", {L, dim, ffn});
    const TensorView w3 = take("w3", {L, ffn, dim});
    const TensorView rmsFinal = take("rms_final_weight", {dim});
    take("freq_cis_real", {seqLen, half});
    take("freq_cis_imag", {seqLen, half});
    const TensorView classifier = c.tiedEmbeddings ? embedding : take("wcls", {vocab, dim});
    if (offset != static_cast<std::int64_t>(bytes.size()))
        throw Error(source,
                    "file is " + std::to_string(bytes.size()) + " bytes but its header (dim " +
                        std::to_string(dim) + ", " + std::to_string(layers) + " layers, vocab " +
                        std::to_string(signedVocab) + ") implies " + std::to_string(offset));

    // One block's slice of a stacked [L, …] tensor.
    const auto slice = [&](const TensorView& stacked, int layer, const char* name) {
        TensorView view = stacked;
        view.name = "layers." + std::to_string(layer) + "." + name;
        view.shape.erase(view.shape.begin());
        view.data = stacked.data + layer * view.byteSize();
        return view;
    };
    model->embedding = embedding;
    for (int i = 0; i < layers; ++i) {
        model->blocks.push_back({slice(rmsAtt, i, "rms_att_weight"), slice(wq, i, "wq"),
                                 slice(wk, i, "wk"), slice(wv, i, "wv"), slice(wo, i, "wo"),
                                 slice(rmsFfn, i, "rms_ffn_weight"), slice(w1, i, "w1"),
                                 slice(w3, i, "w3"), slice(w2, i, "w2")});
    }
    model->finalNorm = rmsFinal;
    model->lmHead = classifier;
    model->defaultTokenizer = findTokenizer(binFile, c.vocabSize);
    model->storage.push_back(std::move(file));
    return model;
}

} // namespace quantlens
