#include "quantlens/formats/gptq_checkpoint.h"

#include "formats/original_order.h"
#include "formats/rope_rows.h"
#include "quantlens/core/error.h"
#include "quantlens/encoding/bit_packing.h"
#include "quantlens/formats/quantlens_checkpoint.h"
#include "quantlens/io/atomic_file.h"
#include "quantlens/io/safetensors_writer.h"
#include "quantlens/io/text_file.h"
#include "quantlens/runtime/compressed_linear.h"

#include <nlohmann/json.hpp>

#include <optional>

namespace quantlens {
namespace {

namespace fs = std::filesystem;

struct Settings {
    int bits = 0;
    int groupsize = 0;
    bool actOrder = false;
    double percdamp = 0.0;
};

// The settings the GPTQ layout records, or an error for methods it cannot hold.
Settings settingsOf(const QuantConfig& config, const std::string& name) {
    if (const auto* rtn = std::get_if<RtnConfig>(&config)) return {rtn->wbits, rtn->groupsize};
    if (const auto* gptq = std::get_if<GptqConfig>(&config))
        return {gptq->wbits, gptq->groupsize, gptq->actOrder, gptq->percdamp};
    throw Error(name, "is quantized with " + methodName(config) +
                          "; the GPTQ layout holds only rtn and gptq layers (export " +
                          methodName(config) + " as quantlens or dense)");
}

void writeWholeFile(const fs::path& path, const std::string& bytes) {
    AtomicFile file(path);
    file.write(bytes.data(), bytes.size());
    file.commit();
}

// Words [rows][stride] as [stride][rows], reinterpreted as the int32 torch stores.
std::vector<std::int32_t> transposed(const std::vector<std::uint32_t>& words, std::size_t rows,
                                     std::size_t stride) {
    std::vector<std::int32_t> out(words.size());
    for (std::size_t r = 0; r < rows; ++r)
        for (std::size_t k = 0; k < stride; ++k)
            out[k * rows + r] = static_cast<std::int32_t>(words[r * stride + k]);
    return out;
}

} // namespace

namespace {

// The first (row, group) whose zero point is 0 while it uses the largest code, if any.
std::optional<std::pair<int, int>>
v1Conflict(const QuantizedLayer& layer, const CompressedMatrix& m, const OriginalOrder& order) {
    const int maxCode = (1 << m.wbits) - 1;
    const StoredTensor& zeros = layer.tensors.at("zeros");
    for (int r = 0; r < layer.rows; ++r)
        for (int c = 0; c < layer.cols; ++c) {
            const int g = order.group[static_cast<std::size_t>(c)];
            if (order.codes[static_cast<std::size_t>(r) * layer.cols + c] == maxCode &&
                zeros.f16At(static_cast<std::size_t>(r) * m.groups + g) == 0.0f)
                return std::pair{r, g};
        }
    return std::nullopt;
}

} // namespace

bool fitsGptqV1(const QuantizedLayer& layer) {
    const auto op = CompressedLinear::fromLayer(std::make_shared<const QuantizedLayer>(layer), "");
    return !v1Conflict(layer, op->matrix(), originalOrder(layer, op->matrix()));
}

GptqLayer toGptqLayer(const QuantizedLayer& layer, const std::string& name, bool interleavedRope,
                      int headDim, GptqZeros zeroConvention) {
    const Settings settings = settingsOf(layer.config, name);
    const int bits = settings.bits, rows = layer.rows, cols = layer.cols;
    if (bits != 2 && bits != 3 && bits != 4 && bits != 8)
        throw Error(name, "has " + std::to_string(bits) +
                              "-bit codes; the GPTQ layout supports 2, 3, 4 and 8 bits");
    if (rows % 32 != 0 || cols % 32 != 0)
        throw Error(name, "is " + std::to_string(rows) + "×" + std::to_string(cols) +
                              "; the GPTQ layout packs 32 codes into " + std::to_string(bits) +
                              " words along both dimensions, so in and out features must be "
                              "multiples of 32");
    const auto op =
        CompressedLinear::fromLayer(std::make_shared<const QuantizedLayer>(layer), name);
    const CompressedMatrix& m = op->matrix();
    const int groups = m.groups, maxCode = (1 << bits) - 1;

    GptqLayer out;
    out.bits = bits;
    out.rows = rows;
    out.cols = cols;
    OriginalOrder order = originalOrder(layer, m);
    out.gIdx = order.group;
    std::vector<std::uint16_t>& codes = order.codes;
    const StoredTensor& scales = layer.tensors.at("scales");
    const StoredTensor& zeros = layer.tensors.at("zeros");
    std::vector<int> zero(static_cast<std::size_t>(rows) * groups);
    for (std::size_t i = 0; i < zero.size(); ++i)
        zero[i] = static_cast<int>(zeros.f16At(i));

    // v1 stores zero − 1: a zero of 0 becomes zero 1 with every code of the group + 1, which
    // decodes to the same scale·(code − zero).
    if (zeroConvention == GptqZeros::V1) {
        if (const auto conflict = v1Conflict(layer, m, order))
            throw Error(name, "row " + std::to_string(conflict->first) + " group " +
                                  std::to_string(conflict->second) +
                                  " has zero point 0 and uses code " + std::to_string(maxCode) +
                                  ": the GPTQ v1 layout stores zero − 1 and cannot hold it");
        for (int r = 0; r < rows; ++r) {
            int* rowZeros = zero.data() + static_cast<std::size_t>(r) * groups;
            std::uint16_t* rowCodes = codes.data() + static_cast<std::size_t>(r) * cols;
            for (int c = 0; c < cols; ++c)
                if (rowZeros[out.gIdx[static_cast<std::size_t>(c)]] == 0) ++rowCodes[c];
            for (int g = 0; g < groups; ++g)
                if (rowZeros[g] == 0) rowZeros[g] = 1;
        }
    }
    const int zeroOffset = zeroConvention == GptqZeros::V1 ? 1 : 0;

    // Output rows in Hugging Face order: llama2.c rotates pairs (2i, 2i+1) of each head; HF
    // rotates (i, i + d/2). Row `to` of the output is row rowOf[to] of the layer.
    std::vector<int> rowOf(static_cast<std::size_t>(rows));
    for (int r = 0; r < rows; ++r)
        rowOf[static_cast<std::size_t>(r)] = r;
    if (interleavedRope) rowOf = ropeRowOrder(rows, headDim, RopeLayout::RotateHalf);

    std::vector<std::uint16_t> orderedCodes(codes.size()),
        zeroCodes(static_cast<std::size_t>(groups) * rows);
    out.scales.resize(static_cast<std::size_t>(groups) * rows);
    for (int to = 0; to < rows; ++to) {
        const int from = rowOf[static_cast<std::size_t>(to)];
        std::copy_n(codes.begin() + static_cast<std::ptrdiff_t>(from) * cols, cols,
                    orderedCodes.begin() + static_cast<std::ptrdiff_t>(to) * cols);
        for (int g = 0; g < groups; ++g) {
            const std::size_t at = static_cast<std::size_t>(from) * groups + g;
            zeroCodes[static_cast<std::size_t>(g) * rows + to] =
                static_cast<std::uint16_t>(zero[at] - zeroOffset);
            out.scales[static_cast<std::size_t>(g) * rows + to] = scales.at<std::uint16_t>(at);
        }
    }
    // The one bit packer: LSB-first along each packed dimension, as AutoGPTQ's pack() (its 3-bit
    // case spreads 32 codes over 3 words the same way).
    const std::size_t inWords = static_cast<std::size_t>(cols) * bits / 32;
    out.qweight = transposed(packRows(orderedCodes, static_cast<std::size_t>(cols), bits),
                             static_cast<std::size_t>(rows), inWords);
    const std::vector<std::uint32_t> packedZeros =
        packRows(zeroCodes, static_cast<std::size_t>(rows), bits);
    out.qzeros.assign(packedZeros.begin(), packedZeros.end());
    return out;
}

GptqZeros writeGptqCheckpoint(const Model& model, const fs::path& directory,
                              const JobContext& job) {
    const std::string source = model.path.string();
    if (model.compressedLayers.size() != model.blocks.size() || model.blocks.empty())
        throw Error(source, "is not a compressed (quantlens) model");
    const Settings settings =
        settingsOf(model.compressedLayers[0][0]->config(), linearLayerPrefix(0, 0));
    for (std::size_t b = 0; b < model.blocks.size(); ++b)
        for (int i = 0; i < 7; ++i) {
            const std::string name = linearLayerPrefix(static_cast<int>(b), i);
            const Settings s = settingsOf(model.compressedLayers[b][i]->config(), name);
            if (s.bits != settings.bits || s.groupsize != settings.groupsize ||
                s.actOrder != settings.actOrder)
                throw Error(source, "layers differ in bits, groupsize or act-order (" + name +
                                        "); the GPTQ layout has one quantization_config");
        }

    // v1 unless some group cannot be written that way (a zero of 0 next to the largest code).
    GptqZeros convention = GptqZeros::V1;
    for (std::size_t b = 0; b < model.blocks.size() && convention == GptqZeros::V1; ++b)
        for (int i = 0; i < 7 && convention == GptqZeros::V1; ++i) {
            job.checkpoint();
            if (!fitsGptqV1(
                    model.compressedLayers[b][static_cast<std::size_t>(i)]->quantizedLayer()))
                convention = GptqZeros::V2;
        }

    const ModelConfig& c = model.config;
    std::vector<SafetensorsWriter::TensorSpec> specs;
    std::vector<const TensorView*> dense; // per spec, the source of an unquantized tensor
    const auto addDense = [&](const std::string& name, const TensorView& view) {
        specs.push_back({name, std::string(dtypeName(view.dtype)), view.shape});
        dense.push_back(&view);
    };
    const auto addLinear = [&](int block, int layer) {
        const auto& op = *model.compressedLayers[static_cast<std::size_t>(block)]
                                                [static_cast<std::size_t>(layer)];
        const std::int64_t rows = op.rows(), cols = op.cols(), bits = settings.bits;
        const std::int64_t groups = op.matrix().groups;
        const std::string prefix = linearLayerPrefix(block, layer);
        specs.push_back({prefix + ".qweight", "I32", {cols * bits / 32, rows}});
        specs.push_back({prefix + ".qzeros", "I32", {groups, rows * bits / 32}});
        specs.push_back({prefix + ".scales", "F16", {groups, rows}});
        specs.push_back({prefix + ".g_idx", "I32", {cols}});
        dense.insert(dense.end(), 4, nullptr);
    };
    forEachModelTensor(model, addDense, addLinear);

    SafetensorsWriter writer(directory / "model.safetensors", specs, {{"format", "pt"}});
    std::size_t next = 0;
    for (int b = 0; b < c.layerCount; ++b) {
        job.checkpoint();
        job.report(static_cast<double>(b) / c.layerCount, "export block " + std::to_string(b));
        const auto flushDense = [&] {
            for (; next < specs.size() && dense[next]; ++next)
                writer.write(specs[next].name, dense[next]->data, dense[next]->byteSize());
        };
        for (int i = 0; i < kLinearLayerCount; ++i) {
            flushDense();
            const std::string name = linearLayerPrefix(b, i);
            const bool rope = c.ropeLayout == RopeLayout::Interleaved &&
                              kLinearLayers[static_cast<std::size_t>(i)].rotary;
            const GptqLayer layer = toGptqLayer(
                model.compressedLayers[static_cast<std::size_t>(b)][static_cast<std::size_t>(i)]
                    ->quantizedLayer(),
                name, rope, c.headDim, convention);
            writer.write(specs[next++].name, layer.qweight.data(), layer.qweight.size() * 4);
            writer.write(specs[next++].name, layer.qzeros.data(), layer.qzeros.size() * 4);
            writer.write(specs[next++].name, layer.scales.data(), layer.scales.size() * 2);
            writer.write(specs[next++].name, layer.gIdx.data(), layer.gIdx.size() * 4);
        }
        if (b + 1 == c.layerCount) flushDense();
    }
    for (; next < specs.size(); ++next)
        writer.write(specs[next].name, dense[next]->data, dense[next]->byteSize());
    writer.commit();

    const nlohmann::ordered_json quantization = {
        {"bits", settings.bits},
        {"group_size", settings.groupsize == 0 ? -1 : settings.groupsize},
        {"damp_percent", settings.percdamp},
        {"desc_act", settings.actOrder},
        {"static_groups", false},
        {"sym", false},
        {"true_sequential", true},
        {"model_name_or_path", nullptr},
        {"model_file_base_name", "model"},
        {"quant_method", "gptq"},
        {"checkpoint_format", convention == GptqZeros::V1 ? "gptq" : "gptq_v2"}};
    nlohmann::ordered_json config =
        nlohmann::ordered_json::parse(readTextFile(model.path / "config.json"));
    config["quantization_config"] = quantization;
    writeWholeFile(directory / "config.json", config.dump(2) + "\n");
    writeWholeFile(directory / "quantize_config.json", quantization.dump(2) + "\n");
    if (!model.defaultTokenizer.empty()) {
        const bool sentencePiece = model.defaultTokenizer.extension() != ".bin";
        writeWholeFile(directory / (sentencePiece ? "tokenizer.model" : "tokenizer.bin"),
                       readTextFile(model.defaultTokenizer));
    }
    return convention;
}

} // namespace quantlens
