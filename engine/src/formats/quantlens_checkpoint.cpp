#include "quantlens/formats/quantlens_checkpoint.h"

#include "model/model_shapes.h"
#include "quantlens/core/error.h"
#include "quantlens/io/atomic_file.h"
#include "quantlens/io/safetensors_writer.h"
#include "quantlens/io/text_file.h"
#include "quantlens/runtime/compressed_linear.h"

#include <nlohmann/json.hpp>

#include <cerrno>
#include <cstring>
#include <fcntl.h>
#include <set>
#include <unistd.h>

namespace quantlens {
namespace {

namespace fs = std::filesystem;
using nlohmann::json;
using nlohmann::ordered_json;

template <class... Ts> struct Overloaded : Ts... { using Ts::operator()...; };
template <class... Ts> Overloaded(Ts...) -> Overloaded<Ts...>;

constexpr const char* kLayerKeyPrefix = "quantlens.layer.";

ordered_json configObject(const QuantConfig& config) {
    ordered_json object{{"method", methodName(config)}};
    std::visit(
        [&](const auto& c) {
            forEachSetting(c, [&](const char* name, const auto& value) { object[name] = value; });
        },
        config);
    return object;
}

// Reads every setting of the method named in `object`; unknown keys other than `allowed` are
// rejected, so a misspelt setting cannot pass for a default. A setting missing from `object` is
// taken from `predating` (settings added after the file's format version), else refused.
QuantConfig configFromObject(const json& object, const std::string& source,
                             const std::vector<std::string>& allowed = {},
                             const json& predating = json::object()) {
    if (!object.is_object()) throw Error(source, "settings are not a JSON object");
    std::set<std::string> used(allowed.begin(), allowed.end());
    used.insert("method");
    const auto get = [&]<typename T>(const char* key, T& value) {
        const json* setting = object.contains(key)      ? &object.at(key)
                              : predating.contains(key) ? &predating.at(key)
                                                        : nullptr;
        if (!setting) throw Error(source, std::string("missing setting '") + key + "'");
        const bool ok = std::is_same_v<T, bool> ? setting->is_boolean()
                        : std::is_integral_v<T> ? setting->is_number_integer()
                                                : setting->is_number();
        if (!ok) throw Error(source, std::string("setting '") + key + "' has the wrong type");
        value = setting->get<T>();
        used.insert(key);
    };
    const auto methodIt = object.find("method");
    if (methodIt == object.end() || !methodIt->is_string())
        throw Error(source, "missing setting 'method'");
    const std::string method = methodIt->get<std::string>();
    std::optional<QuantConfig> config = defaultConfig(method);
    if (!config)
        throw Error(source, "unknown method '" + method + "' (rtn, gptq, spqr or squeezellm)");
    std::visit([&](auto& c) { forEachSetting(c, get); }, *config);
    for (const auto& [key, value] : object.items())
        if (!used.count(key)) throw Error(source, "unknown setting '" + key + "'");
    try {
        validate(*config);
    } catch (const Error& e) {
        throw Error(source, e.message());
    }
    return *config;
}

json parseJson(const std::string& text, const std::string& source) {
    try {
        return json::parse(text);
    } catch (const json::exception& e) {
        throw Error(source, std::string("not valid JSON: ") + e.what());
    }
}

std::string errnoText() {
    return std::strerror(errno);
}

void writeWholeFile(const fs::path& path, const std::string& bytes) {
    AtomicFile file(path);
    file.write(bytes.data(), bytes.size());
    file.commit();
}

// config.json of the output: the source's own, or (llama2.c) one describing the converted model;
// a llama2.c model's Q/K rows stay in their interleaved order, which the metadata records.
std::string configJsonText(const Model& source) {
    if (source.format == ModelFormat::HuggingFace) return readTextFile(source.path / "config.json");
    ModelConfig converted = source.config;
    converted.ropeLayout = RopeLayout::RotateHalf;
    return hfConfigJson(converted, DType::F32);
}

const char* ropeLayoutName(RopeLayout layout) {
    return layout == RopeLayout::Interleaved ? "interleaved" : "rotate-half";
}

} // namespace

std::string quantConfigJson(const QuantConfig& config) {
    return configObject(config).dump();
}

QuantConfig parseQuantConfigJson(const std::string& text, const std::string& source) {
    return configFromObject(parseJson(text, source), source);
}

QuantlensWriter::QuantlensWriter(const Model& source, const fs::path& directory,
                                 const std::map<std::string, std::string>& metadata)
    : source_(source), metadata_(metadata), directory_(directory) {
    if (!source.compressedLayers.empty() && source.compressedLayers.size() != source.blocks.size())
        throw Error(source.path.string(), "inconsistent compressed layers");
    spillPath_ = directory_.path() / ".layers.spill";
    spillFd_ = ::open(spillPath_.c_str(), O_RDWR | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
    if (spillFd_ < 0)
        throw Error(spillPath_.string(), "cannot create the layer spill file: " + errnoText());
}

QuantlensWriter::~QuantlensWriter() {
    if (spillFd_ >= 0) ::close(spillFd_);
}

void QuantlensWriter::spill(const std::vector<std::uint8_t>& bytes) {
    const std::uint8_t* data = bytes.data();
    std::size_t size = bytes.size();
    while (size > 0) {
        const ::ssize_t written = ::write(spillFd_, data, size);
        if (written < 0 && errno == EINTR) continue;
        if (written <= 0) throw Error(directory_.target().string(), "write failed: " + errnoText());
        data += written;
        size -= static_cast<std::size_t>(written);
    }
    spilled_ += bytes.size();
}

void QuantlensWriter::writeLayer(int block, const std::string& name, const QuantizedLayer& layer) {
    const std::size_t next = layers_.size();
    const int expectedBlock = static_cast<int>(next / 7),
              expectedLayer = static_cast<int>(next % 7);
    if (block != expectedBlock || name != kLinearLayers[expectedLayer].name)
        throw Error(directory_.target().string(), "layer " + std::to_string(block) + "." + name +
                                                      " written out of order; expected " +
                                                      std::to_string(expectedBlock) + "." +
                                                      kLinearLayers[expectedLayer].name);
    if (block >= source_.config.layerCount)
        throw Error(directory_.target().string(),
                    "layer " + std::to_string(block) + "." + name + " is past the model's " +
                        std::to_string(source_.config.layerCount) + " blocks");
    const TensorView& original =
        *source_.blocks[static_cast<std::size_t>(block)].linearLayers()[expectedLayer];
    const std::string prefix = linearLayerPrefix(block, expectedLayer);
    if (layer.rows != original.shape[0] || layer.cols != original.shape[1])
        throw Error(directory_.target().string(),
                    "layer " + prefix + " is " + std::to_string(layer.rows) + "×" +
                        std::to_string(layer.cols) + " but the model's is " +
                        original.shapeString());
    // Only layers the reader will accept are written.
    compressedMatrix(layer.config, layer.rows, layer.cols,
                     layerArrays(layer, prefix, directory_.target().string()));
    WrittenLayer written{layer.config, layer.rows, layer.cols, {}};
    for (const auto& [key, tensor] : layer.tensors) {
        written.arrays.push_back({key, tensor.dtype, tensor.shape, spilled_, tensor.bytes.size()});
        spill(tensor.bytes);
    }
    layers_.push_back(std::move(written));
}

void QuantlensWriter::commit() {
    try {
        writeFiles();
    } catch (const Cancelled&) {
        throw;
    } catch (const Error& e) {
        throw directory_.attributed(e);
    }
    directory_.commit();
}

void QuantlensWriter::writeFiles() {
    const std::string target = directory_.target().string();
    const int blocks = source_.config.layerCount;
    if (layers_.size() != static_cast<std::size_t>(blocks) * 7) {
        const std::size_t next = layers_.size();
        throw Error(target, "checkpoint incomplete: layer " +
                                linearLayerPrefix(int(next / 7), int(next % 7)) +
                                " was never written");
    }

    // Tensors in Hugging Face order; each either a view of the source or an array in the spill.
    struct Entry {
        SafetensorsWriter::TensorSpec spec;
        const TensorView* view = nullptr;
        const SpilledArray* array = nullptr;
    };
    std::vector<Entry> entries;
    const auto dense = [&](const std::string& name, const TensorView& view) {
        entries.push_back({{name, std::string(dtypeName(view.dtype)), view.shape}, &view, nullptr});
    };
    const auto linear = [&](int block, int layer) {
        const WrittenLayer& written = layers_[static_cast<std::size_t>(block) * 7 + layer];
        const std::string prefix = linearLayerPrefix(block, layer);
        for (const SpilledArray& array : written.arrays)
            entries.push_back(
                {{prefix + "." + array.key, array.dtype, array.shape}, nullptr, &array});
    };
    forEachModelTensor(source_, dense, linear);

    std::map<std::string, std::string> metadata = metadata_;
    // The dense writer's callers pass the settings text as quantlens.method; here that key names
    // the method, so their text moves to quantlens.settings.
    if (const auto it = metadata.find("quantlens.method"); it != metadata.end())
        metadata.emplace("quantlens.settings", it->second);
    std::set<std::string> methods;
    for (int b = 0; b < blocks; ++b)
        for (int i = 0; i < 7; ++i) {
            const WrittenLayer& written = layers_[static_cast<std::size_t>(b) * 7 + i];
            ordered_json entry = configObject(written.config);
            entry["rows"] = written.rows;
            entry["cols"] = written.cols;
            metadata[kLayerKeyPrefix + linearLayerPrefix(b, i)] = entry.dump();
            methods.insert(methodName(written.config));
        }
    metadata["format"] = kQuantlensFormatName;
    metadata["quantlens.version"] = std::to_string(kQuantlensFormatVersion);
    metadata["quantlens.method"] = methods.size() == 1 ? *methods.begin() : "mixed";
    metadata["quantlens.rope_layout"] = ropeLayoutName(source_.config.ropeLayout);

    std::vector<SafetensorsWriter::TensorSpec> specs;
    for (const Entry& e : entries)
        specs.push_back(e.spec);
    SafetensorsWriter writer(directory_.path() / "model.safetensors", specs, metadata);
    std::vector<std::uint8_t> buffer;
    for (const Entry& e : entries) {
        if (e.view) {
            writer.write(e.spec.name, e.view->data, e.view->byteSize());
            continue;
        }
        buffer.resize(e.array->size);
        std::size_t done = 0;
        while (done < buffer.size()) {
            const ::ssize_t got = ::pread(spillFd_, buffer.data() + done, buffer.size() - done,
                                          static_cast<off_t>(e.array->offset + done));
            if (got < 0 && errno == EINTR) continue;
            if (got <= 0)
                throw Error(spillPath_.string(),
                            "cannot read back the spilled layers: " +
                                (got == 0 ? std::string("short file") : errnoText()));
            done += static_cast<std::size_t>(got);
        }
        writer.write(e.spec.name, buffer.data(), buffer.size());
    }
    writer.commit();
    ::close(spillFd_);
    spillFd_ = -1;
    ::unlink(spillPath_.c_str());

    writeWholeFile(directory_.path() / "config.json", configJsonText(source_));
    if (!source_.defaultTokenizer.empty()) {
        const bool sentencePiece = source_.defaultTokenizer.extension() != ".bin";
        writeWholeFile(directory_.path() / (sentencePiece ? "tokenizer.model" : "tokenizer.bin"),
                       readTextFile(source_.defaultTokenizer));
    }
}

bool isQuantlensCheckpoint(const fs::path& directory) {
    const fs::path file = directory / "model.safetensors";
    std::error_code error;
    if (!fs::is_regular_file(file, error)) return false;
    const SafetensorsFile header(file, SafetensorsFile::DTypes::Any);
    const auto it = header.metadata().find("format");
    return it != header.metadata().end() && it->second == kQuantlensFormatName;
}

std::unique_ptr<Model> loadQuantlensModel(const fs::path& directory, CompressedLayers layers) {
    const fs::path configPath = directory / "config.json";
    if (!fs::exists(configPath))
        throw Error(directory.string(), "no config.json in this directory");
    auto model = std::make_unique<Model>();
    model->format = ModelFormat::HuggingFace;
    model->path = directory;
    model->config = readHfConfig(configPath);
    const ModelConfig& c = model->config;
    const std::string configSource = configPath.string();

    auto file = std::make_shared<const SafetensorsFile>(directory / "model.safetensors",
                                                        SafetensorsFile::DTypes::Any);
    const std::string source = file->path().string();
    const auto& metadata = file->metadata();
    const auto meta = [&](const std::string& key) -> const std::string& {
        const auto it = metadata.find(key);
        if (it == metadata.end())
            throw Error(source,
                        "has no '" + key + "' in its metadata (not a quantlens checkpoint?)");
        return it->second;
    };
    if (meta("format") != kQuantlensFormatName)
        throw Error(source, "metadata format is '" + meta("format") + "', not '" +
                                kQuantlensFormatName + "'");
    const std::string& version = meta("quantlens.version");
    bool known = false;
    for (int v = kOldestQuantlensFormatVersion; v <= kQuantlensFormatVersion; ++v)
        known = known || version == std::to_string(v);
    if (!known)
        throw Error(source, "quantlens format version '" + version +
                                "' is not supported (this build reads versions " +
                                std::to_string(kOldestQuantlensFormatVersion) + " to " +
                                std::to_string(kQuantlensFormatVersion) + ")");
    // Version 1 predates the optimal_kmeans setting: its SqueezeLLM layers ran Lloyd's k-means.
    const json predating = version == "1" ? json{{"optimal_kmeans", false}} : json::object();
    const std::string& rope = meta("quantlens.rope_layout");
    if (rope != "rotate-half" && rope != "interleaved")
        throw Error(source, "quantlens.rope_layout is '" + rope + "' (rotate-half or interleaved)");
    model->config.ropeLayout =
        rope == "interleaved" ? RopeLayout::Interleaved : RopeLayout::RotateHalf;

    // Unquantized tensors by name; every other tensor must belong to a linear layer.
    std::set<std::string> denseNames = {kEmbeddingTensor, kFinalNormTensor};
    if (!c.tiedEmbeddings) denseNames.insert(kLmHeadTensor);
    for (int b = 0; b < c.layerCount; ++b)
        for (const BlockTensorSpec& spec : kBlockTensors)
            if (spec.kind != BlockTensorKind::Weight && hasBlockTensor(spec, c))
                denseNames.insert(blockPrefix(b) + spec.name);
    std::map<std::string, LayerArrays> arraysByLayer;
    for (const RawTensorView& t : file->rawTensors()) {
        if (denseNames.count(t.name)) continue;
        const std::size_t dot = t.name.rfind('.');
        if (dot == std::string::npos)
            throw Error(source, "tensor '" + t.name + "' belongs to no layer of this model");
        arraysByLayer[t.name.substr(0, dot)][t.name.substr(dot + 1)] = t;
    }
    const auto denseTensor = [&](const std::string& name, std::vector<std::int64_t> shape) {
        return requireDenseTensor(*file, name, shape, configSource);
    };

    const std::int64_t dim = c.hiddenSize;
    model->embedding = denseTensor(kEmbeddingTensor, {c.vocabSize, dim});
    std::vector<std::array<std::shared_ptr<const CompressedLinear>, 7>> compressed;
    for (int b = 0; b < c.layerCount; ++b) {
        BlockWeights w;
        for (const BlockTensorSpec& spec : kBlockTensors)
            if (spec.kind != BlockTensorKind::Weight && hasBlockTensor(spec, c))
                w.*spec.weights =
                    denseTensor(blockPrefix(b) + spec.name, blockTensorShape(spec, c));
        std::array<std::shared_ptr<const CompressedLinear>, 7> ops;
        for (int i = 0; i < kLinearLayerCount; ++i) {
            const LinearLayerSpec& spec = kLinearLayers[std::size_t(i)];
            const std::vector<std::int64_t> shape = linearLayerShape(spec, c);
            const std::string prefix = linearLayerPrefix(b, i);
            const auto it = metadata.find(kLayerKeyPrefix + prefix);
            if (it == metadata.end())
                throw Error(source, "no settings for layer '" + prefix + "' in the metadata ('" +
                                        kLayerKeyPrefix + prefix + "')");
            const std::string where = source + ": metadata of layer '" + prefix + "'";
            const json entry = parseJson(it->second, where);
            const auto dimension = [&](const char* key) {
                const auto d = entry.find(key);
                if (d == entry.end() || !d->is_number_integer())
                    throw Error(where, std::string("missing setting '") + key + "'");
                return d->get<std::int64_t>();
            };
            const std::int64_t rows = dimension("rows"), cols = dimension("cols");
            if (rows != shape[0] || cols != shape[1])
                throw Error(source, "layer '" + prefix + "' is " + std::to_string(rows) + "×" +
                                        std::to_string(cols) + " but " + configSource +
                                        " implies " + std::to_string(shape[0]) + "×" +
                                        std::to_string(shape[1]));
            const QuantConfig config = configFromObject(entry, where, {"rows", "cols"}, predating);
            LayerArrays arrays;
            if (auto node = arraysByLayer.extract(prefix)) arrays = std::move(node.mapped());
            if (arrays.empty())
                throw Error(source, "layer '" + prefix + "' has no tensor '" + prefix + ".codes'");
            ops[i] = std::make_shared<const CompressedLinear>(
                config, static_cast<int>(rows), static_cast<int>(cols), std::move(arrays), file);
            TensorView& view = w.*spec.weights;
            view.name = prefix + ".weight";
            view.dtype = DType::F32;
            view.shape = shape;
            view.file = source;
        }
        model->blocks.push_back(std::move(w));
        compressed.push_back(std::move(ops));
    }
    if (!arraysByLayer.empty())
        throw Error(source, "tensor '" + arraysByLayer.begin()->second.begin()->second.name +
                                "' belongs to no layer of this model");
    model->finalNorm = denseTensor(kFinalNormTensor, {dim});
    model->lmHead =
        c.tiedEmbeddings ? model->embedding : denseTensor(kLmHeadTensor, {c.vocabSize, dim});
    model->storedTensors = file->tensors();
    model->storage.push_back(file);
    for (const char* name : {"tokenizer.model", "tokenizer.bin"})
        if (model->defaultTokenizer.empty() && fs::exists(directory / name))
            model->defaultTokenizer = directory / name;

    if (layers == CompressedLayers::Keep) {
        model->compressedLayers = std::move(compressed);
        return model;
    }
    std::vector<std::array<RowMatrix, 7>> dequantized(compressed.size());
    for (std::size_t b = 0; b < compressed.size(); ++b)
        for (int i = 0; i < 7; ++i)
            dequantized[b][static_cast<std::size_t>(i)] =
                compressed[b][static_cast<std::size_t>(i)]->quantizedLayer().dequantize();
    return withLinearLayers(*model, std::move(dequantized));
}

} // namespace quantlens
