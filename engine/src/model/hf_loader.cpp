#include "model/model_shapes.h"
#include "quantlens/core/error.h"
#include "quantlens/io/text_file.h"
#include "quantlens/model/model.h"

#include <nlohmann/json.hpp>

#include <map>
#include <set>

namespace quantlens {
namespace {

namespace fs = std::filesystem;
using nlohmann::json;

// Shard file names from model.safetensors.index.json, each checked to stay inside the directory.
std::vector<std::string> shardNames(const fs::path& indexFile) {
    const std::string source = indexFile.string();
    json index;
    try {
        index = json::parse(readTextFile(indexFile));
    } catch (const json::exception& e) {
        throw Error(source, std::string("not valid JSON: ") + e.what());
    }
    if (!index.is_object() || !index.contains("weight_map") || !index["weight_map"].is_object())
        throw Error(source, "has no \"weight_map\" object");
    std::set<std::string> shards;
    for (const auto& [tensor, shard] : index["weight_map"].items()) {
        if (!shard.is_string())
            throw Error(source, "weight_map entry '" + tensor + "' is not a file name");
        const std::string name = shard.get<std::string>();
        if (name.empty() || name.find('/') != std::string::npos || name == "." || name == "..")
            throw Error(source, "weight_map entry '" + tensor + "' names '" + name +
                                    "', which is not a file in the model directory");
        shards.insert(name);
    }
    if (shards.empty()) throw Error(source, "weight_map is empty");
    return {shards.begin(), shards.end()};
}

} // namespace

std::unique_ptr<Model> loadHfModel(const fs::path& directory) {
    const fs::path configPath = directory / "config.json";
    if (!fs::exists(configPath))
        throw Error(directory.string(), "no config.json in this directory");

    auto model = std::make_unique<Model>();
    model->format = ModelFormat::HuggingFace;
    model->path = directory;
    model->config = readHfConfig(configPath);
    const ModelConfig& c = model->config;
    const std::string configSource = configPath.string();

    std::vector<std::string> files;
    if (fs::exists(directory / "model.safetensors"))
        files = {"model.safetensors"};
    else if (fs::exists(directory / "model.safetensors.index.json"))
        files = shardNames(directory / "model.safetensors.index.json");
    else
        throw Error(directory.string(), "no model.safetensors or model.safetensors.index.json");

    std::map<std::string, const TensorView*> byName;
    for (const std::string& name : files) {
        auto file = std::make_shared<const SafetensorsFile>(directory / name);
        for (const TensorView& t : file->tensors()) {
            if (!byName.emplace(t.name, &t).second)
                throw Error(t.file, "tensor '" + t.name + "' is stored in more than one shard");
            model->storedTensors.push_back(t);
        }
        model->storage.push_back(std::move(file));
    }
    const std::string weightsSource = (directory / files.front()).string();

    std::set<std::string> used;
    const auto tensor = [&](const std::string& name, std::vector<std::int64_t> shape) {
        const auto it = byName.find(name);
        if (it == byName.end()) throw Error(weightsSource, "missing tensor '" + name + "'");
        requireShape(*it->second, shape, configSource);
        used.insert(name);
        return *it->second;
    };

    const std::int64_t dim = c.hiddenSize;
    model->embedding = tensor(kEmbeddingTensor, {c.vocabSize, dim});
    for (int i = 0; i < c.layerCount; ++i) {
        const std::string p = blockPrefix(i);
        BlockWeights b;
        for (const BlockTensorSpec& spec : kBlockTensors)
            if (hasBlockTensor(spec, c))
                b.*spec.weights = tensor(p + spec.name, blockTensorShape(spec, c));
        model->blocks.push_back(std::move(b));
    }
    model->finalNorm = tensor(kFinalNormTensor, {dim});
    model->lmHead = c.tiedEmbeddings ? model->embedding : tensor(kLmHeadTensor, {c.vocabSize, dim});
    // A tensor the config does not account for means the config describes another model (q/k
    // norms in a file whose config says Qwen2, a head stored beside tie_word_embeddings): running
    // without it would be the wrong math. RoPE's inv_freq buffers are recomputed, so ignored.
    for (const auto& [name, view] : byName)
        if (!used.count(name) && !name.ends_with("rotary_emb.inv_freq"))
            throw Error(view->file,
                        "tensor '" + name + "' is not part of a " +
                            architectureName(c.architecture) + " with this config" +
                            (name == kLmHeadTensor ? " (tie_word_embeddings is true)" : "") + "; " +
                            configSource + " may describe another model");

    // tokenizer.bin: a llama2.c tokenizer carried along when Quantlens converted a .bin checkpoint.
    for (const char* name : {"tokenizer.model", "tokenizer.bin"})
        if (model->defaultTokenizer.empty() && fs::exists(directory / name))
            model->defaultTokenizer = directory / name;
    return model;
}

} // namespace quantlens
