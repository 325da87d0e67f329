#include "quantlens/model/model_config.h"

#include "quantlens/core/error.h"
#include "quantlens/io/text_file.h"

#include <nlohmann/json.hpp>

#include <algorithm>
#include <cmath>
#include <sstream>

namespace quantlens {
namespace {

using nlohmann::json;

int requiredInt(const json& config, const char* key, const std::string& source) {
    const auto it = config.find(key);
    if (it == config.end()) throw Error(source, std::string("missing \"") + key + "\"");
    if (!it->is_number_integer())
        throw Error(source, std::string("\"") + key + "\" must be an integer");
    const auto value = it->get<std::int64_t>();
    if (value <= 0 || value > (1 << 30))
        throw Error(source,
                    std::string("\"") + key + "\" = " + std::to_string(value) + " is out of range");
    return static_cast<int>(value);
}

template <typename T>
T optionalValue(const json& config, const char* key, T fallback, const std::string& source) {
    const auto it = config.find(key);
    if (it == config.end() || it->is_null()) return fallback;
    try {
        return it->get<T>();
    } catch (const json::exception&) {
        throw Error(source, std::string("\"") + key + "\" has the wrong type");
    }
}

int tokenId(const json& id, const char* key, const std::string& source) {
    if (!id.is_number_integer() || id.get<std::int64_t>() < 0 || id.get<std::int64_t>() > (1 << 30))
        throw Error(source, std::string("\"") + key + "\" must hold token ids");
    return id.get<int>();
}

// A special token id, or (EOS in newer configs) a list of them.
std::vector<int> tokenIds(const json& config, const char* key, int fallback,
                          const std::string& source) {
    const auto it = config.find(key);
    if (it == config.end() || it->is_null()) return {fallback};
    if (!it->is_array()) return {tokenId(*it, key, source)};
    std::vector<int> ids;
    for (const json& id : *it)
        ids.push_back(tokenId(id, key, source));
    if (ids.empty()) throw Error(source, std::string("\"") + key + "\" is an empty list");
    return ids;
}

// The architecture a config names, by its `architectures` list or its `model_type`; throws for the
// ones Quantlens does not read, naming them.
Architecture architectureOf(const json& config, const std::string& source) {
    const auto architectures =
        optionalValue<std::vector<std::string>>(config, "architectures", {}, source);
    const auto modelType = optionalValue<std::string>(config, "model_type", "", source);
    const auto names = [&](const char* cls, const char* type) {
        return modelType == type ||
               std::find(architectures.begin(), architectures.end(), cls) != architectures.end();
    };
    if (names("LlamaForCausalLM", "llama")) return Architecture::Llama;
    if (names("MistralForCausalLM", "mistral")) return Architecture::Mistral;
    if (names("Qwen2ForCausalLM", "qwen2")) return Architecture::Qwen2;
    if (names("Qwen3ForCausalLM", "qwen3")) return Architecture::Qwen3;
    const std::string named = !architectures.empty() ? architectures.front() : modelType;
    throw Error(source, "\"" + named +
                            "\" is not an architecture Quantlens reads (LlamaForCausalLM: Llama "
                            "1/2/3.x; MistralForCausalLM; Qwen2ForCausalLM: Qwen2, Qwen2.5; "
                            "Qwen3ForCausalLM)");
}

// rope_scaling, refused by name where its type would change the math in a way not implemented.
RopeScalingConfig ropeScalingOf(const json& config, const std::string& source) {
    const auto it = config.find("rope_scaling");
    if (it == config.end() || it->is_null()) return {};
    if (!it->is_object()) throw Error(source, "\"rope_scaling\" must be an object");
    const json& scaling = *it;
    // Older configs name the type "type".
    std::string type = optionalValue<std::string>(scaling, "rope_type", "", source);
    if (type.empty()) type = optionalValue<std::string>(scaling, "type", "", source);
    if (type == "default") return {};
    if (scaling.contains("attention_factor"))
        throw Error(source, "rope_scaling \"attention_factor\" is not supported");
    RopeScalingConfig result;
    const auto positive = [&](const char* key, float fallback) {
        const float value = optionalValue<float>(scaling, key, fallback, source);
        if (!(value > 0.0f) || !std::isfinite(value))
            throw Error(source, std::string("rope_scaling \"") + key + "\" must be positive");
        return value;
    };
    if (!scaling.contains("factor")) throw Error(source, "rope_scaling has no \"factor\"");
    result.factor = positive("factor", 1.0f);
    if (type == "linear") {
        result.type = RopeScaling::Linear;
    } else if (type == "llama3") {
        result.type = RopeScaling::Llama3;
        result.lowFreqFactor = positive("low_freq_factor", 1.0f);
        result.highFreqFactor = positive("high_freq_factor", 4.0f);
        result.originalMaxPositions =
            requiredInt(scaling, "original_max_position_embeddings", source);
        if (!(result.highFreqFactor > result.lowFreqFactor))
            throw Error(source, "rope_scaling \"high_freq_factor\" must exceed "
                                "\"low_freq_factor\"");
    } else {
        throw Error(source, "rope_scaling type \"" + type +
                                "\" is not supported (llama3 and linear are; dynamic, yarn and "
                                "longrope change RoPE in ways Quantlens does not implement)");
    }
    return result;
}

} // namespace

std::string architectureName(Architecture architecture) {
    switch (architecture) {
    case Architecture::Mistral:
        return "MistralForCausalLM";
    case Architecture::Qwen2:
        return "Qwen2ForCausalLM";
    case Architecture::Qwen3:
        return "Qwen3ForCausalLM";
    case Architecture::Llama:
        break;
    }
    return "LlamaForCausalLM";
}

std::string ModelConfig::features() const {
    std::ostringstream text;
    const auto separate = [&] {
        if (text.tellp() > 0) text << ", ";
    };
    if (ropeScaling.type == RopeScaling::Linear) text << "rope linear ×" << ropeScaling.factor;
    if (ropeScaling.type == RopeScaling::Llama3)
        text << "rope llama3 ×" << ropeScaling.factor << " (low " << ropeScaling.lowFreqFactor
             << ", high " << ropeScaling.highFreqFactor << ", original context "
             << ropeScaling.originalMaxPositions << ")";
    if (slidingWindow > 0) {
        separate();
        text << "sliding window " << slidingWindow;
    }
    if (attentionBias) {
        separate();
        text << "q/k/v biases";
    }
    if (qkNorm) {
        separate();
        text << "q/k norm";
    }
    if (queryDim() != hiddenSize) {
        separate();
        text << "head_dim " << headDim << " (q " << queryDim() << " wide)";
    }
    return text.str();
}

void ModelConfig::validate(const std::string& source) const {
    // Bounds far above any real LLaMA, low enough that no size derived from them overflows.
    const auto inRange = [&](std::int64_t value, std::int64_t limit, const char* what) {
        if (value <= 0) throw Error(source, std::string(what) + " must be positive");
        if (value > limit)
            throw Error(source, std::string(what) + " " + std::to_string(value) + " exceeds " +
                                    std::to_string(limit) + "; the config is corrupt");
    };
    inRange(hiddenSize, 1 << 20, "hidden size");
    inRange(intermediateSize, 1 << 22, "intermediate size");
    inRange(layerCount, 1 << 14, "layer count");
    inRange(headCount, 1 << 14, "head count");
    inRange(kvHeadCount, 1 << 14, "key/value head count");
    inRange(vocabSize, 1 << 24, "vocabulary size");
    inRange(maxPositions, 1 << 24, "maximum position count");
    inRange(headDim, 1 << 20, "head dimension");
    inRange(static_cast<std::int64_t>(headCount) * headDim, 1 << 22,
            "attention width (heads × head dimension)");
    if (headCount % kvHeadCount != 0)
        throw Error(source, "head count " + std::to_string(headCount) +
                                " is not a multiple of the key/value head count " +
                                std::to_string(kvHeadCount));
    if (headDim % 2 != 0)
        throw Error(source, "head dimension " + std::to_string(headDim) +
                                " must be even (RoPE rotates pairs)");
    if (!(rmsNormEps > 0.0f) || !std::isfinite(rmsNormEps))
        throw Error(source, "rms_norm_eps must be a positive number");
    if (!(ropeTheta > 0.0f) || !std::isfinite(ropeTheta))
        throw Error(source, "rope_theta must be a positive number");
    if (!(ropeScaling.factor > 0.0f) || !std::isfinite(ropeScaling.factor))
        throw Error(source, "the rope_scaling factor must be a positive number");
    if (slidingWindow < 0) throw Error(source, "the sliding window must not be negative");
    if (bosToken < 0 || bosToken >= vocabSize)
        throw Error(source,
                    "BOS token id " + std::to_string(bosToken) + " lies outside the vocabulary");
    for (int eos : eosTokens)
        if (eos < 0 || eos >= vocabSize)
            throw Error(source,
                        "EOS token id " + std::to_string(eos) + " lies outside the vocabulary");
}

int defaultHeadDim(int hiddenSize, int headCount, const std::string& source) {
    if (headCount <= 0) throw Error(source, "head count must be positive");
    if (hiddenSize % headCount != 0)
        throw Error(source, "hidden size " + std::to_string(hiddenSize) +
                                " is not divisible by the head count " + std::to_string(headCount));
    return hiddenSize / headCount;
}

std::string torchDtypeName(DType dtype) {
    return dtype == DType::F32 ? "float32" : dtype == DType::F16 ? "float16" : "bfloat16";
}

std::string hfConfigJson(const ModelConfig& c, DType dtype) {
    if (c.ropeLayout != RopeLayout::RotateHalf)
        throw Error("",
                    "config.json describes rotate-half RoPE; convert interleaved weights first");
    const char* modelType = c.architecture == Architecture::Mistral ? "mistral"
                            : c.architecture == Architecture::Qwen2 ? "qwen2"
                            : c.architecture == Architecture::Qwen3 ? "qwen3"
                                                                    : "llama";
    nlohmann::ordered_json config = {{"architectures", {architectureName(c.architecture)}},
                                     {"model_type", modelType},
                                     {"hidden_size", c.hiddenSize},
                                     {"intermediate_size", c.intermediateSize},
                                     {"num_hidden_layers", c.layerCount},
                                     {"num_attention_heads", c.headCount},
                                     {"num_key_value_heads", c.kvHeadCount},
                                     {"head_dim", c.headDim},
                                     {"vocab_size", c.vocabSize},
                                     {"max_position_embeddings", c.maxPositions},
                                     {"hidden_act", "silu"},
                                     {"rms_norm_eps", c.rmsNormEps},
                                     {"rope_theta", c.ropeTheta},
                                     {"tie_word_embeddings", c.tiedEmbeddings},
                                     {"bos_token_id", c.bosToken},
                                     {"eos_token_id", c.eosTokens},
                                     {"torch_dtype", torchDtypeName(dtype)}};
    if (c.architecture == Architecture::Qwen2 || c.architecture == Architecture::Qwen3)
        config["use_sliding_window"] = false;
    if (c.architecture == Architecture::Mistral)
        config["sliding_window"] = c.slidingWindow > 0 ? nlohmann::ordered_json(c.slidingWindow)
                                                       : nlohmann::ordered_json(nullptr);
    if (c.ropeScaling.type == RopeScaling::Linear)
        config["rope_scaling"] = {{"rope_type", "linear"}, {"factor", c.ropeScaling.factor}};
    if (c.ropeScaling.type == RopeScaling::Llama3)
        config["rope_scaling"] = {
            {"rope_type", "llama3"},
            {"factor", c.ropeScaling.factor},
            {"low_freq_factor", c.ropeScaling.lowFreqFactor},
            {"high_freq_factor", c.ropeScaling.highFreqFactor},
            {"original_max_position_embeddings", c.ropeScaling.originalMaxPositions}};
    return config.dump(2) + "\n";
}

ModelConfig readHfConfig(const std::filesystem::path& configJson) {
    const std::string source = configJson.string();
    json config;
    try {
        config = json::parse(readTextFile(configJson));
    } catch (const json::exception& e) {
        throw Error(source, std::string("not valid JSON: ") + e.what());
    }
    if (!config.is_object()) throw Error(source, "not a JSON object");

    ModelConfig result;
    result.architecture = architectureOf(config, source);
    if (optionalValue<std::string>(config, "hidden_act", "silu", source) != "silu")
        throw Error(source, "hidden_act must be \"silu\" for a LLaMA-family model");
    if (optionalValue<bool>(config, "attention_bias", false, source) ||
        optionalValue<bool>(config, "mlp_bias", false, source))
        throw Error(source, "attention or MLP biases are not supported");
    if (result.architecture == Architecture::Qwen2) {
        // HF's Qwen2 always has q/k/v biases; a Qwen window applies only with use_sliding_window.
        result.attentionBias = true;
    }
    // HF's Qwen3 always normalises each q/k head; it never has q/k/v biases unless
    // attention_bias (refused above) says so.
    if (result.architecture == Architecture::Qwen3) result.qkNorm = true;
    if ((result.architecture == Architecture::Qwen2 ||
         result.architecture == Architecture::Qwen3) &&
        optionalValue<bool>(config, "use_sliding_window", false, source))
        throw Error(source, "a sliding window on Qwen layers (use_sliding_window) is not "
                            "supported");
    result.ropeScaling = ropeScalingOf(config, source);
    // HF's Mistral applies its window to every layer; Llama has none, whatever the config says.
    if (result.architecture == Architecture::Mistral)
        result.slidingWindow =
            config.contains("sliding_window") && !config["sliding_window"].is_null()
                ? requiredInt(config, "sliding_window", source)
                : 0;
    result.hiddenSize = requiredInt(config, "hidden_size", source);
    result.intermediateSize = requiredInt(config, "intermediate_size", source);
    result.layerCount = requiredInt(config, "num_hidden_layers", source);
    result.headCount = requiredInt(config, "num_attention_heads", source);
    result.kvHeadCount = config.contains("num_key_value_heads")
                             ? requiredInt(config, "num_key_value_heads", source)
                             : result.headCount;
    result.vocabSize = requiredInt(config, "vocab_size", source);
    result.maxPositions = config.contains("max_position_embeddings")
                              ? requiredInt(config, "max_position_embeddings", source)
                              : 2048;
    if (config.contains("head_dim") && !config["head_dim"].is_null())
        result.headDim = requiredInt(config, "head_dim", source);
    else
        result.headDim = defaultHeadDim(result.hiddenSize, result.headCount, source);
    // Newer configs list each layer's attention; only full attention is implemented there.
    for (const std::string& type :
         optionalValue<std::vector<std::string>>(config, "layer_types", {}, source))
        if (type != "full_attention")
            throw Error(source, "layer type \"" + type +
                                    "\" in \"layer_types\" is not supported (full_attention is)");
    result.rmsNormEps = optionalValue<float>(config, "rms_norm_eps", 1e-6f, source);
    result.ropeTheta = optionalValue<float>(config, "rope_theta", 10000.0f, source);
    result.tiedEmbeddings = optionalValue<bool>(config, "tie_word_embeddings", false, source);
    const std::vector<int> bos = tokenIds(config, "bos_token_id", 1, source);
    if (bos.size() != 1) throw Error(source, "\"bos_token_id\" must be a single token id");
    result.bosToken = bos.front();
    result.eosTokens = tokenIds(config, "eos_token_id", 2, source);
    result.ropeLayout = RopeLayout::RotateHalf;
    result.validate(source);
    return result;
}

} // namespace quantlens
