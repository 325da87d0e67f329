// The architectures beyond LLaMA 1/2 against ../shared/data/archs: each reference.json holds the
// figures of an independent forward pass written from the Hugging Face modeling code.

#include "test_data.h"

#include "quantlens/core/error.h"
#include "quantlens/core/float_tensor.h"
#include "quantlens/formats/model_export.h"
#include "quantlens/formats/model_loading.h"
#include "quantlens/io/safetensors.h"
#include "quantlens/io/text_file.h"
#include "quantlens/model/synthetic_model.h"
#include "quantlens/model/token_streams.h"
#include "quantlens/quantization/layer_calibration.h"
#include "quantlens/quantization/sensitivity.h"
#include "quantlens/runtime/generate.h"
#include "quantlens/runtime/perplexity.h"
#include "quantlens/runtime/transformer.h"
#include "quantlens/tokenizer/tokenizer.h"

#include <nlohmann/json.hpp>

#include <QTemporaryDir>

#include <cmath>
#include <fstream>

using namespace quantlens;
using nlohmann::json;

namespace {

json reference(const std::string& arch) {
    return json::parse(test::readBytes(test::dataPath("archs/" + arch + "/reference.json")));
}

std::vector<std::int32_t> ids(const json& array) {
    return array.get<std::vector<std::int32_t>>();
}

// The largest |a − b| over a row of logits, relative to the reference's spread (max − min).
double logitError(const Eigen::Ref<const Eigen::RowVectorXf>& logits, const json& expected) {
    const std::vector<double> want = expected.get<std::vector<double>>();
    double error = 0.0, low = want.front(), high = want.front();
    for (std::size_t i = 0; i < want.size(); ++i) {
        error = std::max(error, std::abs(double(logits[Eigen::Index(i)]) - want[i]));
        low = std::min(low, want[i]);
        high = std::max(high, want[i]);
    }
    return error / (high - low);
}

QString loadError(const std::filesystem::path& directory) {
    try {
        loadModel(directory);
    } catch (const Error& e) {
        return QString::fromStdString(e.what());
    }
    return "loaded";
}

} // namespace

class TestArchitectures : public QObject {
    Q_OBJECT
private slots:
    void initTestCase() { QUANTLENS_REQUIRE_DATA("archs/llama3/reference.json"); }

    void matchesTheReference_data() {
        QTest::addColumn<QString>("arch");
        QTest::addColumn<QString>("features");
        QTest::newRow("llama3") << "llama3"
                                << "rope llama3 ×8 (low 1, high 4, original context 64)";
        QTest::newRow("mistral") << "mistral"
                                 << "sliding window 32";
        QTest::newRow("qwen2") << "qwen2"
                               << "q/k/v biases";
        QTest::newRow("qwen3") << "qwen3"
                               << "q/k norm, head_dim 32 (q 128 wide)";
    }

    // RoPE frequencies, logits at the first and last prompt positions, the prompt's NLL, greedy
    // decoding through the KV cache, and the excerpt's perplexity, each against the reference.
    void matchesTheReference() {
        QFETCH(QString, arch);
        QFETCH(QString, features);
        const json ref = reference(arch.toStdString());
        const auto model = loadModel(test::dataPath("archs/" + arch.toStdString()));
        QCOMPARE(architectureName(model->config.architecture),
                 ref["architecture"].get<std::string>());
        QCOMPARE(QString::fromStdString(model->config.features()), features);

        const Transformer transformer(*model);
        const Eigen::VectorXf frequencies = transformer.ropeInverseFrequencies();
        const auto expectedFrequencies = ref["rope_inv_freq"].get<std::vector<double>>();
        QCOMPARE(std::size_t(frequencies.size()), expectedFrequencies.size());
        for (std::size_t i = 0; i < expectedFrequencies.size(); ++i)
            QVERIFY2(std::abs(frequencies[Eigen::Index(i)] - expectedFrequencies[i]) <=
                         1e-5 * expectedFrequencies[i],
                     qPrintable(QString("frequency %1").arg(i)));

        const std::vector<std::int32_t> prompt = ids(ref["prompt"]["ids"]);
        KvCache cache(model->config, int(prompt.size()));
        const RowMatrix logits = transformer.forward(prompt, cache);
        const double first = logitError(logits.row(0), ref["logits_pos0"]);
        const double last = logitError(logits.row(logits.rows() - 1), ref["logits_last"]);
        qInfo("%s: logits off by %.2e and %.2e of the spread", qPrintable(arch), first, last);
        QVERIFY(first < 1e-4 && last < 1e-4);

        double nll = 0.0;
        for (Eigen::Index t = 0; t + 1 < logits.rows(); ++t) {
            const Eigen::VectorXd row = logits.row(t).transpose().cast<double>();
            const double top = row.maxCoeff();
            nll +=
                top + std::log((row.array() - top).exp().sum()) - row[prompt[std::size_t(t + 1)]];
        }
        nll /= double(logits.rows() - 1);
        QVERIFY2(std::abs(nll - ref["prompt_nll"]["mean_nll"].get<double>()) < 1e-5,
                 qPrintable(QString::number(nll, 'g', 10)));

        const std::vector<std::int32_t> continuation = generateGreedy(
            transformer, prompt, ref["greedy_continuation"]["steps"].get<int>(), {}, JobContext{});
        QCOMPARE(continuation, ids(ref["greedy_continuation"]["ids"]));

        const json& excerpt = ref["excerpt_ppl"];
        const auto tokenizer = openTokenizer(*model);
        const std::vector<std::int32_t> stream = tokenizeForProtocol(
            *tokenizer, readTextFile(test::dataPath(excerpt["text"].get<std::string>())),
            PerplexityProtocol::Documents, model->config.bosToken, "excerpt");
        QCOMPARE(std::int64_t(stream.size()), excerpt["stream_tokens"].get<std::int64_t>());
        const PerplexityResult scored = evaluatePerplexity(
            transformer, stream, {excerpt["ctx"].get<int>(), PerplexityProtocol::Documents},
            JobContext{});
        const double expectedPpl = excerpt["ppl"].get<double>();
        qInfo("%s: excerpt ppl %.6f (reference %.6f)", qPrintable(arch), scored.perplexity,
              expectedPpl);
        QVERIFY(std::abs(scored.perplexity - expectedPpl) <= 1e-5 * expectedPpl);
        QCOMPARE(scored.scoredTokens, excerpt["predicted_tokens"].get<std::int64_t>());
    }

    // A quantized checkpoint keeps the architecture: its compressed layers run with the same RoPE
    // scaling or window as the dense reconstruction, and SqueezeLLM's Fisher (a backward pass
    // through them) quantizes them too.
    void quantizedCheckpointsKeepTheArchitecture_data() { matchesTheReference_data(); }
    void quantizedCheckpointsKeepTheArchitecture() {
        QFETCH(QString, arch);
        QFETCH(QString, features);
        const auto model = loadModel(test::dataPath("archs/" + arch.toStdString()));
        const std::vector<std::int32_t> calibration =
            ids(reference(arch.toStdString())["prompt"]["ids"]);
        QTemporaryDir dir;
        for (const QuantConfig& method :
             {QuantConfig(RtnConfig{}), QuantConfig(GptqConfig{}), QuantConfig(SpqrConfig{}),
              QuantConfig(SqueezeConfig{})}) {
            const std::filesystem::path out =
                std::filesystem::path(dir.path().toStdString()) / methodName(method);
            quantizeToDirectory(*model, calibration, method, {4, 80}, ExportFormat::Quantlens, out,
                                {}, JobContext{});
            const auto compressed = loadModel(out, CompressedLayers::Keep);
            const auto dense = loadModel(out, CompressedLayers::Dequantize);
            QCOMPARE(QString::fromStdString(compressed->config.features()), features);
            // Norms and biases are stored unquantized: reloaded bit for bit.
            for (std::size_t b = 0; b < model->blocks.size(); ++b)
                for (const BlockTensorSpec& spec : kBlockTensors)
                    if (spec.kind != BlockTensorKind::Weight && hasBlockTensor(spec, model->config))
                        QCOMPARE(FloatTensor(compressed->blocks[b].*spec.weights).vector(),
                                 FloatTensor(model->blocks[b].*spec.weights).vector());
            KvCache a(model->config, 80), b(model->config, 80);
            const RowMatrix fused = Transformer(*compressed).forward(calibration, a);
            const RowMatrix reconstructed = Transformer(*dense).forward(calibration, b);
            QVERIFY((fused - reconstructed).cwiseAbs().maxCoeff() < 1e-4f);
        }
    }

    // The GPTQ layout keeps Qwen2's biases as `bias` tensors and Qwen3's q/k norms beside the
    // packed layers, byte for byte the source's, on synthetic checkpoints of widths the layout
    // packs (multiples of 32); the synthetic checkpoints themselves load with their features.
    void gptqExportKeepsBiasesAndNorms_data() {
        QTest::addColumn<int>("architecture");
        QTest::addColumn<QString>("features");
        QTest::newRow("qwen2") << int(Architecture::Qwen2) << "q/k/v biases";
        QTest::newRow("qwen3") << int(Architecture::Qwen3) << "q/k norm, head_dim 96 (q 384 wide)";
    }
    void gptqExportKeepsBiasesAndNorms() {
        QFETCH(int, architecture);
        QFETCH(QString, features);
        QTemporaryDir dir;
        const std::filesystem::path root = dir.path().toStdString();
        SyntheticModelSpec spec = syntheticModelPreset("tiny");
        spec.architecture = Architecture(architecture);
        spec.layers = 2;
        spec.intermediateSize = 512;
        spec.kvHeads = 2;
        if (spec.architecture == Architecture::Qwen3) spec.headDim = 96;
        writeSyntheticModel(spec, root / "source", JobContext{});
        const auto model = loadModel(root / "source");
        QCOMPARE(QString::fromStdString(model->config.features()), features);
        std::vector<std::int32_t> calibration(256);
        for (std::size_t i = 0; i < calibration.size(); ++i)
            calibration[i] = std::int32_t(1 + (i * 97) % 500);
        quantizeToDirectory(*model, calibration, GptqConfig{}, {2, 128}, ExportFormat::Gptq,
                            root / "gptq", {}, JobContext{});
        const SafetensorsFile written(root / "gptq/model.safetensors",
                                      SafetensorsFile::DTypes::Any);
        int kept = 0;
        for (std::size_t b = 0; b < model->blocks.size(); ++b)
            for (const BlockTensorSpec& tensor : kBlockTensors) {
                if (tensor.kind == BlockTensorKind::Weight ||
                    !hasBlockTensor(tensor, model->config))
                    continue;
                const TensorView& source = model->blocks[b].*tensor.weights;
                const TensorView* copy = written.find(blockPrefix(int(b)) + tensor.name);
                QVERIFY2(copy, tensor.name);
                QCOMPARE(copy->shape, source.shape);
                QVERIFY(std::equal(copy->data, copy->data + copy->byteSize(), source.data));
                kept += tensor.kind != BlockTensorKind::Norm;
            }
        QCOMPARE(kept, spec.architecture == Architecture::Qwen2 ? 6 : 4);
        QVERIFY(written.findRaw("model.layers.1.self_attn.q_proj.qweight"));
    }

    // The single-layer analysis splits Qwen3's 128-row q_proj and 128-column o_proj into its four
    // heads of 32, and its 64-row k_proj into two KV heads, on the block's calibration Hessians.
    void sensitivityMapsSplitQwen3Heads() {
        const auto model = loadModel(test::dataPath("archs/qwen3"));
        const std::vector<std::int32_t> calibration = ids(reference("qwen3")["prompt"]["ids"]);
        const BlockCalibration block =
            calibrateBlock(*model, calibration, {2, 40}, 1, JobContext{});
        const struct {
            const char* layer;
            Eigen::Index rows, cols, heads;
        } expected[] = {{"q_proj", 128, 64, 4}, {"k_proj", 64, 64, 2}, {"o_proj", 64, 128, 4}};
        for (const auto& e : expected) {
            const int index = linearLayerIndex(e.layer);
            const RowMatrix weights =
                FloatTensor(model->blocks[1].*kLinearLayers[std::size_t(index)].weights).matrix();
            QCOMPARE(weights.rows(), e.rows);
            QCOMPARE(weights.cols(), e.cols);
            const SensitivityMap map =
                computeSensitivity(weights, block.hessianOf(e.layer), 3, 16, 0.01,
                                   headSplitOf(model->config, e.layer), e.layer);
            QCOMPARE(map.headTotals.size(), e.heads);
            QVERIFY(std::abs(map.headTotals.sum() - map.total()) <= 1e-9 * map.total());
        }
    }

    // What Quantlens does not read yet is refused by name, never run with the wrong math.
    void refusesWhatItDoesNotImplement() {
        QTemporaryDir dir;
        const std::filesystem::path copy = dir.path().toStdString();
        for (const char* file : {"config.json", "model.safetensors", "tokenizer.model"})
            std::filesystem::copy_file(test::dataPath(std::string("archs/llama3/") + file),
                                       copy / file);
        const json original = json::parse(test::readBytes(copy / "config.json"));
        const QString source = QString::fromStdString((copy / "config.json").string()) + ": ";
        const auto withConfig = [&](const json& config) {
            test::writeBytes(copy / "config.json", config.dump());
            return loadError(copy);
        };

        json other = original;
        other["architectures"] = {"Gemma2ForCausalLM"};
        other["model_type"] = "gemma2";
        QCOMPARE(withConfig(other),
                 source + "\"Gemma2ForCausalLM\" is not an architecture Quantlens reads "
                          "(LlamaForCausalLM: Llama 1/2/3.x; MistralForCausalLM; "
                          "Qwen2ForCausalLM: Qwen2, Qwen2.5; Qwen3ForCausalLM)");
        json layerTypes = original;
        layerTypes["layer_types"] = {"full_attention", "sliding_attention", "full_attention"};
        QCOMPARE(withConfig(layerTypes), source + "layer type \"sliding_attention\" in "
                                                  "\"layer_types\" is not supported "
                                                  "(full_attention is)");
        // The file stores a head the config says is tied: the config is not this model's.
        json tied = original;
        tied["tie_word_embeddings"] = true;
        QCOMPARE(withConfig(tied),
                 QString::fromStdString((copy / "model.safetensors").string()) +
                     ": tensor 'lm_head.weight' is not part of a LlamaForCausalLM with this "
                     "config (tie_word_embeddings is true); " +
                     QString::fromStdString((copy / "config.json").string()) +
                     " may describe another model");
        const auto withScaling = [&](const json& scaling) {
            json config = original;
            config["rope_scaling"] = scaling;
            test::writeBytes(copy / "config.json", config.dump());
            return loadError(copy);
        };
        QVERIFY(withScaling({{"rope_type", "dynamic"}, {"factor", 2.0}})
                    .startsWith(source + "rope_scaling type \"dynamic\" is not supported"));
        QVERIFY(withScaling({{"rope_type", "yarn"}, {"factor", 2.0}})
                    .startsWith(source + "rope_scaling type \"yarn\" is not supported"));
        QCOMPARE(withScaling({{"rope_type", "llama3"}, {"factor", 8.0}}),
                 source + "missing \"original_max_position_embeddings\"");
        QCOMPARE(withScaling({{"rope_type", "linear"}, {"factor", -1.0}}),
                 source + "rope_scaling \"factor\" must be positive");
        QCOMPARE(withScaling({{"rope_type", "linear"}, {"factor", 2.0}, {"attention_factor", 2.0}}),
                 source + "rope_scaling \"attention_factor\" is not supported");
        QCOMPARE(withScaling({{"type", "linear"}, {"factor", 2.0}}), QString("loaded"));
        json biased = original;
        biased["attention_bias"] = true;
        test::writeBytes(copy / "config.json", biased.dump());
        QCOMPARE(loadError(copy), source + "attention or MLP biases are not supported");

        // Qwen's window is ignored when off, as HF does, and refused when on.
        json qwen = json::parse(test::readBytes(test::dataPath("archs/qwen2/config.json")));
        QVERIFY(!qwen["use_sliding_window"].get<bool>() && qwen["sliding_window"] == 4096);
        qwen["use_sliding_window"] = true;
        QCOMPARE(withConfig(qwen), source + "a sliding window on Qwen layers (use_sliding_window) "
                                            "is not supported");

        // Qwen3's q/k norms under a Qwen2 config: the stored norms say it is another model.
        for (const char* file : {"config.json", "model.safetensors"})
            std::filesystem::copy_file(test::dataPath(std::string("archs/qwen3/") + file),
                                       copy / file,
                                       std::filesystem::copy_options::overwrite_existing);
        json qwen3 = json::parse(test::readBytes(copy / "config.json"));
        QCOMPARE(withConfig(qwen3), QString("loaded"));
        qwen3["architectures"] = {"LlamaForCausalLM"};
        qwen3["model_type"] = "llama";
        QVERIFY(withConfig(qwen3).contains(
            "tensor 'model.layers.0.self_attn.k_norm.weight' is not part of a LlamaForCausalLM"));
        // Without head_dim the heads are 64 / 4 = 16 wide, which the stored q_proj is not.
        qwen3 = json::parse(test::readBytes(test::dataPath("archs/qwen3/config.json")));
        qwen3.erase("head_dim");
        QVERIFY(withConfig(qwen3).contains("model.layers.0.self_attn.q_proj.weight"));
    }

    // Linear scaling divides every frequency by the factor.
    void linearScalingDividesEveryFrequency() {
        QTemporaryDir dir;
        const std::filesystem::path copy = dir.path().toStdString();
        for (const char* file : {"config.json", "model.safetensors"})
            std::filesystem::copy_file(test::dataPath(std::string("archs/llama3/") + file),
                                       copy / file);
        const auto frequenciesWith = [&](const json& scaling) {
            json config = json::parse(test::readBytes(copy / "config.json"));
            config["rope_scaling"] = scaling;
            test::writeBytes(copy / "config.json", config.dump());
            const auto model = loadModel(copy);
            return Eigen::VectorXf(Transformer(*model).ropeInverseFrequencies());
        };
        const Eigen::VectorXf plain = frequenciesWith(nullptr);
        const Eigen::VectorXf scaled = frequenciesWith({{"rope_type", "linear"}, {"factor", 4.0}});
        QCOMPARE(plain[0], 1.0f);
        QVERIFY(((scaled * 4.0f - plain).array().abs() <= 1e-7f * plain.array()).all());
    }
};

QTEST_APPLESS_MAIN(TestArchitectures)
#include "test_architectures.moc"
