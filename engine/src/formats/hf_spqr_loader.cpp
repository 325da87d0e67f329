#include "quantlens/formats/hf_spqr_loader.h"

#include "formats/hf_spqr_layout.h"
#include "model/model_shapes.h"
#include "quantlens/core/dtype.h"
#include "quantlens/core/error.h"
#include "quantlens/core/float_tensor.h"
#include "quantlens/core/parallel.h"
#include "quantlens/encoding/stored_tensor.h"
#include "quantlens/io/safetensors.h"
#include "quantlens/io/text_file.h"
#include "quantlens/model/model_config.h"

#include <nlohmann/json.hpp>

#include <bit>
#include <cmath>
#include <cstring>
#include <map>
#include <set>

namespace quantlens {
namespace {

namespace fs = std::filesystem;
using nlohmann::json;

static_assert(std::endian::native == std::endian::little,
              "the format's words are little-endian and are read from memory as is");

constexpr int kTile = kHfSpqrTile;

std::string shapeText(const std::vector<std::int64_t>& shape) {
    TensorView view;
    view.shape = shape;
    return view.shapeString();
}

// The parts of quantization_config the loader reads: the fixed settings are checked here, the
// shapes and modules_to_not_convert kept for the layers.
struct SpqrSettings {
    json shapes = json::object();
    std::set<std::string> notConverted;
};

SpqrSettings readSettings(const fs::path& configPath) {
    const std::string source = configPath.string();
    json config;
    try {
        config = json::parse(readTextFile(configPath));
    } catch (const json::exception& e) {
        throw Error(source, std::string("not valid JSON: ") + e.what());
    }
    const auto q = config.find("quantization_config");
    if (q == config.end() || !q->is_object())
        throw Error(source, "has no \"quantization_config\" object (not a Hugging Face SpQR "
                            "checkpoint)");
    const auto method = q->find("quant_method");
    if (method == q->end() || !method->is_string() || method->get<std::string>() != "spqr")
        throw Error(source, "quantization_config.quant_method is " +
                                (method == q->end() ? std::string("missing") : method->dump()) +
                                ", not \"spqr\"");
    const std::pair<const char*, int> fixed[] = {
        {"bits", kHfSpqrBits}, {"beta1", kTile}, {"beta2", kTile}};
    for (const auto& [key, wanted] : fixed) {
        const auto it = q->find(key);
        if (it == q->end() || !it->is_number_integer() || it->get<std::int64_t>() != wanted)
            throw Error(source, std::string("quantization_config.") + key + " is " +
                                    (it == q->end() ? std::string("missing") : it->dump()) +
                                    "; transformers' SpQR kernels hold " + key + " " +
                                    std::to_string(wanted) + " only");
    }
    SpqrSettings settings;
    if (const auto shapes = q->find("shapes"); shapes != q->end() && !shapes->is_null()) {
        if (!shapes->is_object())
            throw Error(source, "quantization_config.shapes must be an object");
        settings.shapes = *shapes;
    }
    if (const auto modules = q->find("modules_to_not_convert");
        modules != q->end() && !modules->is_null()) {
        if (!modules->is_array())
            throw Error(source, "quantization_config.modules_to_not_convert must be a list");
        for (const json& name : *modules) {
            if (!name.is_string())
                throw Error(source, "quantization_config.modules_to_not_convert holds " +
                                        name.dump() + ", not a module name");
            settings.notConverted.insert(name.get<std::string>());
        }
    }
    return settings;
}

// The four arrays of one converted layer, each checked to be the 1-D array of the dtype and
// element count that quantization_config.shapes and the layer's shape give.
struct LayerArrays {
    const RawTensorView* denseWeights = nullptr;
    const RawTensorView* rowOffsets = nullptr;
    const RawTensorView* colVals = nullptr;
    const RawTensorView* inPerm = nullptr;
    std::int64_t outliers = 0;
};

class LayerReader {
public:
    LayerReader(const SafetensorsFile& file, const SpqrSettings& settings,
                const std::string& configSource, std::set<std::string>& used)
        : file_(file), settings_(settings), source_(file.path().string()),
          configSource_(configSource), used_(used) {}

    // Layer `prefix`, W [rows, cols], decoded into fp32 in the original column order.
    RowMatrix decode(const std::string& prefix, int rows, int cols) const {
        const std::string shape = std::to_string(rows) + "×" + std::to_string(cols);
        if (rows % kTile != 0 || cols % kTile != 0 || cols > kHfSpqrMaxColumns)
            throw Error(source_, "layer '" + prefix + "' is " + shape +
                                     ", which transformers' SpQR kernels cannot hold (rows and "
                                     "columns multiples of 16, at most 65536 columns), yet it is "
                                     "not in quantization_config.modules_to_not_convert");
        LayerArrays a;
        a.denseWeights =
            &array(prefix, "dense_weights", "I64", std::int64_t(rows) * cols / kTile, shape);
        a.rowOffsets = &array(prefix, "row_offsets", "I32", std::int64_t(rows) + 1, shape);
        a.colVals = &array(prefix, "col_vals", "I32", -1, shape);
        a.inPerm = &array(prefix, "in_perm", "I32", cols / 2, shape);
        a.outliers = a.colVals->shape[0];

        const std::vector<int> perm = permutation(*a.inPerm, cols);
        const std::vector<std::int64_t> offsets = rowOffsets(*a.rowOffsets, rows, a.outliers);
        RowMatrix w(rows, cols);
        decodeTiles(*a.denseWeights, rows, cols, perm, w);

        // The kernels add each CSR entry to the decoded weight of its (permuted) column.
        for (int r = 0; r < rows; ++r)
            for (std::int64_t e = offsets[std::size_t(r)]; e < offsets[std::size_t(r) + 1]; ++e) {
                const auto entry =
                    static_cast<std::uint32_t>(loadIndex(a.colVals->data, 4, std::size_t(e)));
                const int j = static_cast<int>(entry & 0xffffu);
                if (j >= cols)
                    throw Error(source_, "tensor '" + a.colVals->name + "' entry " +
                                             std::to_string(e) + " names column " +
                                             std::to_string(j) + " of a layer of " +
                                             std::to_string(cols) + " columns");
                float& weight = w(r, perm[std::size_t(j)]);
                weight += f16ToFloat(static_cast<std::uint16_t>(entry >> 16));
                if (!std::isfinite(weight))
                    throw Error(source_, "tensor '" + a.colVals->name + "' entry " +
                                             std::to_string(e) + " makes row " + std::to_string(r) +
                                             " column " + std::to_string(perm[std::size_t(j)]) +
                                             " non-finite");
            }
        return w;
    }

private:
    const RawTensorView& array(const std::string& prefix, const char* suffix, const char* dtype,
                               std::int64_t implied, const std::string& shape) const {
        const std::string name = prefix + "." + suffix;
        const RawTensorView* t = file_.findRaw(name);
        if (!t)
            throw Error(source_, "missing tensor '" + name + "' (layer '" + prefix +
                                     "' is not in quantization_config.modules_to_not_convert)");
        if (t->dtype != dtype)
            throw Error(source_,
                        "tensor '" + name + "' has dtype " + t->dtype + " but must be " + dtype);
        if (t->shape.size() != 1)
            throw Error(source_, "tensor '" + name + "' has shape " + shapeText(t->shape) +
                                     " but must be 1-D");
        const std::int64_t count = t->shape[0];
        const std::int64_t configured = configuredCount(name);
        if (count != configured)
            throw Error(source_, "tensor '" + name + "' has " + std::to_string(count) +
                                     " elements, but " + configSource_ + " gives " +
                                     std::to_string(configured) + " in quantization_config.shapes");
        if (implied >= 0 && count != implied)
            throw Error(source_, "tensor '" + name + "' has " + std::to_string(count) +
                                     " elements, but a " + shape + " layer needs " +
                                     std::to_string(implied));
        if (t->size != static_cast<std::size_t>(count) * safetensorsElementSize(dtype))
            throw Error(source_, "tensor '" + name + "' holds " + std::to_string(t->size) +
                                     " bytes for " + std::to_string(count) + " elements");
        used_.insert(name);
        return *t;
    }

    // quantization_config.shapes["L.array.shape"]: an element count (or a one-element list).
    std::int64_t configuredCount(const std::string& name) const {
        const std::string key = name + ".shape";
        const auto it = settings_.shapes.find(key);
        if (it == settings_.shapes.end())
            throw Error(configSource_, "quantization_config.shapes has no \"" + key + "\"");
        const json& value = it->is_array() && it->size() == 1 ? (*it)[0] : *it;
        if (!value.is_number_integer() || value.get<std::int64_t>() < 0)
            throw Error(configSource_, "quantization_config.shapes \"" + key + "\" is " +
                                           it->dump() + ", not an element count");
        return value.get<std::int64_t>();
    }

    // in_perm: two 16-bit columns per word, which must be a permutation of the layer's columns.
    std::vector<int> permutation(const RawTensorView& inPerm, int cols) const {
        std::vector<int> perm(static_cast<std::size_t>(cols));
        std::vector<char> seen(perm.size(), 0);
        for (int k = 0; k < cols / 2; ++k) {
            const auto pair = static_cast<std::uint32_t>(loadIndex(inPerm.data, 4, std::size_t(k)));
            for (int half = 0; half < 2; ++half) {
                const int j = 2 * k + half,
                          column = static_cast<int>((pair >> (16 * half)) & 0xffffu);
                if (column >= cols || seen[std::size_t(column)])
                    throw Error(source_, "tensor '" + inPerm.name +
                                             "' is not a permutation of the layer's " +
                                             std::to_string(cols) + " columns: position " +
                                             std::to_string(j) + " holds column " +
                                             std::to_string(column) +
                                             (column < cols ? ", already placed" : ""));
                seen[std::size_t(column)] = 1;
                perm[std::size_t(j)] = column;
            }
        }
        return perm;
    }

    // row_offsets: CSR row pointers from 0 to the outlier count, never decreasing.
    std::vector<std::int64_t> rowOffsets(const RawTensorView& t, int rows,
                                         std::int64_t outliers) const {
        std::vector<std::int64_t> offsets(static_cast<std::size_t>(rows) + 1);
        for (std::size_t r = 0; r < offsets.size(); ++r) {
            offsets[r] = loadIndex(t.data, 4, r);
            if ((r == 0 && offsets[r] != 0) || (r > 0 && offsets[r] < offsets[r - 1]) ||
                offsets[r] > outliers)
                throw Error(source_, "tensor '" + t.name + "' element " + std::to_string(r) +
                                         " is " + std::to_string(offsets[r]) +
                                         ": row pointers must run from 0 up to the " +
                                         std::to_string(outliers) + " entries of col_vals");
        }
        if (offsets.back() != outliers)
            throw Error(source_, "tensor '" + t.name + "' ends at " +
                                     std::to_string(offsets.back()) + ", but col_vals has " +
                                     std::to_string(outliers) + " entries");
        return offsets;
    }

    // Every 16×16 tile (docs/HF_SPQR.md §dense_weights), one tile row per task: W[r, perm[j]] is
    // the weight of row r, permuted column j.
    void decodeTiles(const RawTensorView& t, int rows, int cols, const std::vector<int>& perm,
                     RowMatrix& w) const {
        const int tileCols = cols / kTile;
        parallelFor(rows / kTile, [&](std::int64_t task) {
            const int ti = static_cast<int>(task);
            for (int tj = 0; tj < tileCols; ++tj) {
                std::uint64_t words[kTile];
                std::memcpy(words,
                            t.data + (std::size_t(ti) * std::size_t(tileCols) + std::size_t(tj)) *
                                         kTile * sizeof(std::uint64_t),
                            sizeof words);
                const auto where = [&] {
                    return "tile (" + std::to_string(ti) + ", " + std::to_string(tj) + ") of '" +
                           t.name + "'";
                };
                // Rows 2b and 2b + 1 both carry byte b of the tile's second-level statistics.
                std::uint64_t second = 0;
                for (int k = 0; k < kTile; ++k) {
                    const std::uint64_t byte = (words[k] >> kHfSpqrSecondOrderShift) & 0xffu;
                    if (words[k] >> (kHfSpqrSecondOrderShift + 8))
                        throw Error(source_, where() + ": row " + std::to_string(k) +
                                                 " sets bits 62-63, which the format keeps 0");
                    if (k % 2 == 1 && byte != ((words[k - 1] >> kHfSpqrSecondOrderShift) & 0xffu))
                        throw Error(source_, where() + ": rows " + std::to_string(k - 1) + " and " +
                                                 std::to_string(k) +
                                                 " carry different bytes of "
                                                 "the second-level statistics");
                    second |= byte << (8 * (k / 2));
                }
                // SecondOrder: half2 ss (W_s_s, W_z_s), zz (W_s_z, W_z_z).
                const float scaleScale = f16ToFloat(std::uint16_t(second));
                const float zeroScale = f16ToFloat(std::uint16_t(second >> 16));
                const float scaleZero = f16ToFloat(std::uint16_t(second >> 32));
                const float zeroZero = f16ToFloat(std::uint16_t(second >> 48));
                constexpr std::uint64_t kCode = (1u << kHfSpqrBits) - 1;
                for (int k = 0; k < kTile; ++k) {
                    const int r = ti * kTile + k;
                    const float scale = hfSpqrDecode(scaleScale, scaleZero, int(words[k] & kCode));
                    const float zero =
                        hfSpqrDecode(zeroScale, zeroZero, int((words[k] >> kHfSpqrBits) & kCode));
                    for (int i = 0; i < kTile; ++i) {
                        const int q = int((words[k] >> (kHfSpqrBits * (2 + i))) & kCode);
                        const float weight = hfSpqrDecode(scale, zero, q);
                        if (!std::isfinite(weight))
                            throw Error(source_, where() + " decodes row " + std::to_string(r) +
                                                     " to a non-finite weight (statistics " +
                                                     "out of fp16's range)");
                        w(r, perm[std::size_t(tj * kTile + i)]) = weight;
                    }
                }
            }
        });
    }

    const SafetensorsFile& file_;
    const SpqrSettings& settings_;
    std::string source_;
    std::string configSource_;
    std::set<std::string>& used_;
};

} // namespace

bool isHfSpqrCheckpoint(const fs::path& directory) {
    const fs::path configPath = directory / "config.json";
    std::error_code error;
    if (!fs::is_regular_file(configPath, error)) return false;
    // Not JSON: not this format; loadHfModel reports the parse error.
    const json config = json::parse(readTextFile(configPath), nullptr, false);
    if (!config.is_object()) return false;
    const auto q = config.find("quantization_config");
    if (q == config.end() || !q->is_object()) return false;
    const auto method = q->find("quant_method");
    return method != q->end() && method->is_string() && method->get<std::string>() == "spqr";
}

std::unique_ptr<Model> loadHfSpqrModel(const fs::path& directory) {
    const fs::path configPath = directory / "config.json";
    if (!fs::exists(configPath))
        throw Error(directory.string(), "no config.json in this directory");
    auto model = std::make_unique<Model>();
    model->format = ModelFormat::HuggingFace;
    model->path = directory;
    model->config = readHfConfig(configPath); // ignores quantization_config
    const ModelConfig& c = model->config;
    const std::string configSource = configPath.string();
    const SpqrSettings settings = readSettings(configPath);

    const fs::path weightsPath = directory / "model.safetensors";
    if (!fs::exists(weightsPath))
        throw Error(directory.string(), "no model.safetensors in this directory");
    auto file = std::make_shared<const SafetensorsFile>(weightsPath, SafetensorsFile::DTypes::Any);
    const std::string source = file->path().string();

    std::set<std::string> used;
    const auto denseTensor = [&](const std::string& name, const std::vector<std::int64_t>& shape) {
        const TensorView& view = requireDenseTensor(*file, name, shape, configSource);
        used.insert(name);
        return view;
    };
    const LayerReader reader(*file, settings, configSource, used);

    // The decoded layers, reserved so that the views' pointers stay valid.
    auto decoded = std::make_shared<std::vector<RowMatrix>>();
    decoded->reserve(static_cast<std::size_t>(c.layerCount) * kLinearLayerCount);
    const std::int64_t dim = c.hiddenSize;
    model->embedding = denseTensor(kEmbeddingTensor, {c.vocabSize, dim});
    for (int b = 0; b < c.layerCount; ++b) {
        BlockWeights w;
        for (const BlockTensorSpec& spec : kBlockTensors) {
            if (!hasBlockTensor(spec, c)) continue;
            const std::string name = blockPrefix(b) + spec.name;
            const std::vector<std::int64_t> shape = blockTensorShape(spec, c);
            if (spec.kind != BlockTensorKind::Weight) {
                w.*spec.weights = denseTensor(name, shape);
                continue;
            }
            const std::string layer = linearLayerPrefix(b, spec.linear);
            if (settings.notConverted.count(layer) ||
                settings.notConverted.count(layer + ".weight")) {
                w.*spec.weights = denseTensor(name, shape);
                continue;
            }
            decoded->push_back(
                reader.decode(layer, static_cast<int>(shape[0]), static_cast<int>(shape[1])));
            TensorView& view = w.*spec.weights;
            view.name = name;
            view.dtype = DType::F32;
            view.shape = shape;
            view.data = reinterpret_cast<const std::byte*>(decoded->back().data());
            view.file = source;
        }
        model->blocks.push_back(std::move(w));
    }
    model->finalNorm = denseTensor(kFinalNormTensor, {dim});
    model->lmHead =
        c.tiedEmbeddings ? model->embedding : denseTensor(kLmHeadTensor, {c.vocabSize, dim});
    // A tensor the config does not account for (a layer stored both ways, a head beside
    // tie_word_embeddings) means the config describes another model. RoPE's inv_freq buffers are
    // recomputed, so ignored.
    for (const RawTensorView& t : file->rawTensors())
        if (!used.count(t.name) && !t.name.ends_with("rotary_emb.inv_freq"))
            throw Error(source, "tensor '" + t.name + "' is not part of a " +
                                    architectureName(c.architecture) + " with this config" +
                                    " (its architecture, tie_word_embeddings and "
                                    "quantization_config.modules_to_not_convert); " +
                                    configSource + " may describe another model");

    model->storedTensors = file->tensors();
    model->storage.push_back(std::move(file));
    model->storage.push_back(std::move(decoded));
    for (const char* name : {"tokenizer.model", "tokenizer.bin"})
        if (model->defaultTokenizer.empty() && fs::exists(directory / name))
            model->defaultTokenizer = directory / name;
    return model;
}

} // namespace quantlens
