#include "commands.h"

#include "quantlens/formats/model_loading.h"
#include "quantlens/model/model.h"

#include <nlohmann/json.hpp>

#include <cstdio>
#include <iostream>

namespace {

struct InspectOptions {
    std::string model;
    bool json = false;
};

nlohmann::json describe(const quantlens::Model& model) {
    const quantlens::ModelConfig& c = model.config;
    nlohmann::json tensors = nlohmann::json::array();
    for (const quantlens::TensorView& t : model.storedTensors)
        tensors.push_back({{"name", t.name},
                           {"dtype", quantlens::dtypeName(t.dtype)},
                           {"shape", t.shape},
                           {"bytes", t.byteSize()},
                           {"file", t.file}});
    return {
        {"path", model.path.string()},
        {"format", model.format == quantlens::ModelFormat::HuggingFace ? "huggingface" : "llama2c"},
        {"architecture", quantlens::architectureName(c.architecture)},
        {"features", c.features()},
        {"sliding_window", c.slidingWindow},
        {"hidden_size", c.hiddenSize},
        {"intermediate_size", c.intermediateSize},
        {"layers", c.layerCount},
        {"heads", c.headCount},
        {"kv_heads", c.kvHeadCount},
        {"head_dim", c.headDim},
        {"vocab_size", c.vocabSize},
        {"max_positions", c.maxPositions},
        {"rms_norm_eps", c.rmsNormEps},
        {"rope_theta", c.ropeTheta},
        {"rope_layout",
         c.ropeLayout == quantlens::RopeLayout::RotateHalf ? "rotate-half" : "interleaved"},
        {"tied_embeddings", c.tiedEmbeddings},
        {"parameters", model.parameterCount()},
        {"bytes", model.storedBytes()},
        {"tokenizer", model.defaultTokenizer.string()},
        {"tensors", tensors}};
}

void printText(const nlohmann::json& d) {
    std::printf("model        %s (%s)\n", d["path"].get<std::string>().c_str(),
                d["format"].get<std::string>().c_str());
    std::printf("architecture %s: dim %d, ffn %d, %d layers, %d heads (%d kv, head dim %d)\n",
                d["architecture"].get<std::string>().c_str(), d["hidden_size"].get<int>(),
                d["intermediate_size"].get<int>(), d["layers"].get<int>(), d["heads"].get<int>(),
                d["kv_heads"].get<int>(), d["head_dim"].get<int>());
    std::printf("vocabulary   %d, context %d, rope %s theta %g, rms eps %g, %s embeddings\n",
                d["vocab_size"].get<int>(), d["max_positions"].get<int>(),
                d["rope_layout"].get<std::string>().c_str(), d["rope_theta"].get<double>(),
                d["rms_norm_eps"].get<double>(),
                d["tied_embeddings"].get<bool>() ? "tied" : "untied");
    if (!d["features"].get<std::string>().empty())
        std::printf("features     %s\n", d["features"].get<std::string>().c_str());
    std::printf("parameters   %lld\n", d["parameters"].get<long long>());
    std::printf("stored bytes %lld\n", d["bytes"].get<long long>());
    const std::string tokenizer = d["tokenizer"];
    std::printf("tokenizer    %s\n",
                tokenizer.empty() ? "(none found; pass --tokenizer)" : tokenizer.c_str());
    std::printf("\n%-48s %-5s %-20s %12s\n", "tensor", "dtype", "shape", "bytes");
    for (const auto& t : d["tensors"]) {
        std::string shape;
        for (const auto& dim : t["shape"]) {
            if (!shape.empty()) shape += 'x';
            shape += std::to_string(dim.get<long long>());
        }
        std::printf("%-48s %-5s %-20s %12lld\n", t["name"].get<std::string>().c_str(),
                    t["dtype"].get<std::string>().c_str(), shape.c_str(),
                    t["bytes"].get<long long>());
    }
}

} // namespace

Command addInspectCommand(CLI::App& app) {
    auto options = std::make_shared<InspectOptions>();
    CLI::App* sub = app.add_subcommand(
        "inspect", "Show a checkpoint's architecture, tensors, dtypes and sizes");
    sub->add_option("model", options->model, "HF model directory or llama2.c .bin")->required();
    sub->add_flag("--json", options->json, "Print one JSON object");
    return {sub, [options](const Session&) {
                const auto model = quantlens::loadModel(options->model);
                const nlohmann::json description = describe(*model);
                if (options->json)
                    std::cout << description.dump(2) << '\n';
                else
                    printText(description);
            }};
}
