// Damaged and lying checkpoints: each must fail with a quantlens::Error that names the file and the
// problem, never crash or read out of bounds.
#include "safetensors_mutator.h"
#include "test_data.h"

#include "quantlens/core/error.h"
#include "quantlens/formats/model_loading.h"
#include "quantlens/model/model.h"
#include "quantlens/runtime/perplexity.h"
#include "quantlens/tokenizer/tokenizer.h"

#include <QTemporaryDir>

#include <cmath>
#include <cstring>
#include <fstream>
#include <limits>

using namespace quantlens;
namespace fs = std::filesystem;

using quantlens::test::readBytes;
using quantlens::test::writeBytes;

namespace {

// The message of the Error that loading `path` throws, or "" when it loads.
QString loadError(const fs::path& path) {
    try {
        loadModel(path);
    } catch (const Error& e) {
        return QString::fromUtf8(e.what());
    }
    return {};
}

QString evalError(const fs::path& path) {
    try {
        const auto model = loadModel(path);
        const auto tokenizer = loadTokenizer(model->defaultTokenizer);
        const auto stream = tokenizeForProtocol(*tokenizer, "Once upon a time there was a cat.",
                                                PerplexityProtocol::Documents, 1, "inline text");
        evaluatePerplexity(Transformer(*model), stream, {16, PerplexityProtocol::Documents},
                           JobContext{});
    } catch (const Error& e) {
        return QString::fromUtf8(e.what());
    }
    return {};
}

// A safetensors file with a header given as text, for headers nlohmann::json cannot write.
void writeSafetensorsText(const fs::path& file, const std::string& header,
                          const std::string& data) {
    std::string bytes(8, '\0');
    const std::uint64_t length = header.size();
    std::memcpy(bytes.data(), &length, 8);
    writeBytes(file, bytes + header + data);
}

#define QVERIFY_MESSAGE(message, ...)                                                              \
    do {                                                                                           \
        const QString m = (message);                                                               \
        for (const char* part : {__VA_ARGS__})                                                     \
            QVERIFY2(m.contains(QString::fromUtf8(part)),                                          \
                     qPrintable(QString("'%1' not in error: %2").arg(part, m)));                   \
    } while (false)

} // namespace

class TestHostileModels : public QObject {
    Q_OBJECT

    QTemporaryDir temp_;
    fs::path model_;   // a fresh copy of stories260K-hf for each test
    fs::path weights_; // its model.safetensors

private slots:
    void init() {
        QUANTLENS_REQUIRE_DATA("stories260K-hf");
        model_ = fs::path(temp_.path().toStdString()) / QTest::currentTestFunction();
        fs::remove_all(model_);
        test::copyModelDirectory(test::dataPath("stories260K-hf"), model_);
        weights_ = model_ / "model.safetensors";
    }

    void intactCopyLoads() { QCOMPARE(loadError(model_), QString()); }

    void truncatedFileIsRejected() {
        const std::string bytes = readBytes(weights_);
        writeBytes(weights_, bytes.substr(0, bytes.size() / 2));
        QVERIFY_MESSAGE(loadError(model_), "model.safetensors", "past the end of the data");
        writeBytes(weights_, bytes.substr(0, 5));
        QVERIFY_MESSAGE(loadError(model_), "model.safetensors", "too short");
    }

    void headerLengthPastEndIsRejected() {
        const auto parts = test::readSafetensorsParts(weights_);
        test::writeSafetensorsParts(weights_, parts, fs::file_size(weights_) + 1000);
        QVERIFY_MESSAGE(loadError(model_), "model.safetensors", "header length",
                        "runs past the end");
        test::writeSafetensorsParts(weights_, parts, std::numeric_limits<std::uint64_t>::max());
        QVERIFY_MESSAGE(loadError(model_), "model.safetensors", "exceeds the 100 MiB limit");
    }

    void overlappingOffsetsAreRejected() {
        auto parts = test::readSafetensorsParts(weights_);
        // o_proj now claims the same bytes as q_proj (same size, so only the overlap is wrong).
        parts.header["model.layers.1.self_attn.o_proj.weight"]["data_offsets"] =
            parts.header["model.layers.1.self_attn.q_proj.weight"]["data_offsets"];
        test::writeSafetensorsParts(weights_, parts);
        QVERIFY_MESSAGE(loadError(model_), "model.safetensors", "overlap",
                        "model.layers.1.self_attn.q_proj.weight",
                        "model.layers.1.self_attn.o_proj.weight");
    }

    // An empty tensor sorted between two overlapping ones must not hide their overlap.
    void overlapBehindAnEmptyTensorIsRejected() {
        auto parts = test::readSafetensorsParts(weights_);
        QVERIFY(parts.header["model.embed_tokens.weight"]["data_offsets"] ==
                nlohmann::json({0, 131072}));
        parts.header["model.empty"] = {
            {"dtype", "F32"}, {"shape", {0}}, {"data_offsets", {1000, 1000}}};
        parts.header["model.norm.weight"]["data_offsets"] = {2000, 2256};
        test::writeSafetensorsParts(weights_, parts);
        QVERIFY_MESSAGE(loadError(model_), "model.safetensors", "overlap",
                        "'model.embed_tokens.weight' and 'model.norm.weight'");
    }

    void outOfRangeOffsetsAreRejected() {
        auto parts = test::readSafetensorsParts(weights_);
        const std::uint64_t end = parts.data.size() + 16384;
        parts.header["model.norm.weight"]["data_offsets"] = {end - 256, end};
        test::writeSafetensorsParts(weights_, parts);
        QVERIFY_MESSAGE(loadError(model_), "model.safetensors", "'model.norm.weight'",
                        "past the end of the data");
    }

    void offsetsDisagreeingWithShapeAreRejected() {
        auto parts = test::readSafetensorsParts(weights_);
        parts.header["model.norm.weight"]["shape"] = {65};
        test::writeSafetensorsParts(weights_, parts);
        QVERIFY_MESSAGE(loadError(model_), "'model.norm.weight'", "260 bytes", "span 256 bytes");
    }

    void unknownDtypeIsRejected() {
        auto parts = test::readSafetensorsParts(weights_);
        parts.header["model.norm.weight"]["dtype"] = "Q7";
        test::writeSafetensorsParts(weights_, parts);
        QVERIFY_MESSAGE(loadError(model_), "model.safetensors", "'model.norm.weight'",
                        "unknown dtype 'Q7'");
        parts.header["model.norm.weight"]["dtype"] = "I32";
        test::writeSafetensorsParts(weights_, parts);
        QVERIFY_MESSAGE(loadError(model_), "dtype I32, which Quantlens does not read");
    }

    void headerThatIsNotJsonIsRejected() {
        std::string bytes = readBytes(weights_);
        bytes[9] = '{';
        writeBytes(weights_, bytes);
        QVERIFY_MESSAGE(loadError(model_), "model.safetensors", "header is not valid JSON");
        bytes[8] = '[';
        writeBytes(weights_, bytes);
        QVERIFY_MESSAGE(loadError(model_), "model.safetensors", "header does not begin with '{'");
    }

    // nlohmann::json builds a node per level: a 100 MiB "[[[[…" header would cost gigabytes.
    void deeplyNestedHeaderIsRejected() {
        const std::string data = test::readSafetensorsParts(weights_).data;
        const std::size_t depth = 2'000'000;
        writeSafetensorsText(weights_, std::string(depth, '[') + std::string(depth, ']'), data);
        QVERIFY_MESSAGE(loadError(model_), "model.safetensors", "header does not begin with '{'");
        writeSafetensorsText(
            weights_, "{\"a\":" + std::string(depth, '[') + std::string(depth, ']') + "}", data);
        QVERIFY_MESSAGE(loadError(model_), "model.safetensors",
                        "header nests deeper than 3 levels");
        writeSafetensorsText(weights_, R"({"a":{"b":{"c":[]}}})", data);
        QVERIFY_MESSAGE(loadError(model_), "model.safetensors",
                        "header nests deeper than 3 levels");
    }

    // nlohmann::json keeps the last of repeated keys; a header must not say two things.
    void duplicateHeaderKeysAreRejected() {
        auto parts = test::readSafetensorsParts(weights_);
        const nlohmann::json norm = parts.header["model.norm.weight"];
        parts.header.erase("model.norm.weight");
        const std::string rest = parts.header.dump().substr(1); // after the opening brace

        nlohmann::json moved = norm;
        moved["data_offsets"] = {0, 256};
        writeSafetensorsText(weights_,
                             "{\"model.norm.weight\":" + moved.dump() +
                                 ",\"model.norm.weight\":" + norm.dump() + "," + rest,
                             parts.data);
        QVERIFY_MESSAGE(loadError(model_), "model.safetensors",
                        "header has duplicate key 'model.norm.weight'");

        const std::string entry = norm.dump(); // {"data_offsets":…,"dtype":"F32","shape":[64]}
        writeSafetensorsText(
            weights_, "{\"model.norm.weight\":{\"dtype\":\"F16\"," + entry.substr(1) + "," + rest,
            parts.data);
        QVERIFY_MESSAGE(loadError(model_), "model.safetensors",
                        "header has duplicate key 'dtype' inside 'model.norm.weight'");
    }

    // After a zero dimension the element count stays 0 however large the rest are; a dimension
    // past INT64_MAX would become a negative shape entry.
    void hugeDimensionsAreRejected() {
        auto parts = test::readSafetensorsParts(weights_);
        for (const std::uint64_t huge :
             {std::uint64_t(1) << 63, std::numeric_limits<std::uint64_t>::max()}) {
            parts.header["model.norm.weight"]["shape"] = {0, huge};
            parts.header["model.norm.weight"]["data_offsets"] = {0, 0};
            test::writeSafetensorsParts(weights_, parts);
            const std::string dimension = "(dimension " + std::to_string(huge) + ")";
            QVERIFY_MESSAGE(loadError(model_), "model.safetensors", "'model.norm.weight'",
                            "has a shape too large to address", dimension.c_str());
        }
    }

    void shapeConfigMismatchIsRejected() {
        test::editJsonFile(model_ / "config.json",
                           [](nlohmann::json& c) { c["intermediate_size"] = 176; });
        QVERIFY_MESSAGE(loadError(model_), "model.safetensors",
                        "'model.layers.0.mlp.gate_proj.weight'", "has shape [172, 64]",
                        "config.json implies [176, 64]");
    }

    void missingTensorIsRejected() {
        auto parts = test::readSafetensorsParts(weights_);
        parts.header.erase("model.layers.2.mlp.up_proj.weight");
        test::writeSafetensorsParts(weights_, parts);
        QVERIFY_MESSAGE(loadError(model_), "model.safetensors",
                        "missing tensor 'model.layers.2.mlp.up_proj.weight'");
    }

    void untiedModelWithoutHeadIsRejected() {
        test::editJsonFile(model_ / "config.json",
                           [](nlohmann::json& c) { c["tie_word_embeddings"] = false; });
        QVERIFY_MESSAGE(loadError(model_), "missing tensor 'lm_head.weight'");
    }

    void hiddenSizeNotDivisibleByHeadsIsRejected() {
        test::editJsonFile(model_ / "config.json",
                           [](nlohmann::json& c) { c["num_attention_heads"] = 7; });
        QVERIFY_MESSAGE(loadError(model_), "config.json",
                        "hidden size 64 is not divisible by the head count 7");
    }

    void badConfigIsRejected() {
        test::editJsonFile(model_ / "config.json",
                           [](nlohmann::json& c) { c.erase("hidden_size"); });
        QVERIFY_MESSAGE(loadError(model_), "config.json", "missing \"hidden_size\"");
        test::editJsonFile(model_ / "config.json", [](nlohmann::json& c) {
            c["hidden_size"] = 64;
            c["model_type"] = "gpt2";
            c["architectures"] = {"GPT2LMHeadModel"};
        });
        QVERIFY_MESSAGE(loadError(model_), "config.json",
                        "\"GPT2LMHeadModel\" is not an architecture Quantlens reads");
        writeBytes(model_ / "config.json", "{\"hidden_size\": ");
        QVERIFY_MESSAGE(loadError(model_), "config.json", "not valid JSON");
        fs::remove(model_ / "config.json");
        QVERIFY_MESSAGE(loadError(model_), "no config.json");
    }

    void shardIndexIsValidated() {
        auto parts = test::readSafetensorsParts(weights_);
        nlohmann::json index{{"weight_map", nlohmann::json::object()}};
        for (const auto& [name, entry] : parts.header.items())
            if (name != "__metadata__")
                index["weight_map"][name] = "model-00001-of-00001.safetensors";
        fs::rename(weights_, model_ / "model-00001-of-00001.safetensors");
        writeBytes(model_ / "model.safetensors.index.json", index.dump());
        QCOMPARE(loadError(model_), QString());

        index["weight_map"]["model.norm.weight"] = "../../etc/passwd";
        writeBytes(model_ / "model.safetensors.index.json", index.dump());
        QVERIFY_MESSAGE(loadError(model_), "model.safetensors.index.json",
                        "not a file in the model directory");

        index["weight_map"]["model.norm.weight"] = "model-00002-of-00002.safetensors";
        writeBytes(model_ / "model.safetensors.index.json", index.dump());
        QVERIFY_MESSAGE(loadError(model_), "model-00002-of-00002.safetensors", "cannot open");
    }

    void tensorInTwoShardsIsRejected() {
        auto parts = test::readSafetensorsParts(weights_);
        nlohmann::json index{{"weight_map", nlohmann::json::object()}};
        for (const auto& [name, entry] : parts.header.items())
            if (name != "__metadata__")
                index["weight_map"][name] = "model-00001-of-00002.safetensors";
        index["weight_map"]["model.norm.weight"] = "model-00002-of-00002.safetensors";
        fs::rename(weights_, model_ / "model-00001-of-00002.safetensors");
        writeBytes(model_ / "model.safetensors.index.json", index.dump());

        // The second shard holds model.norm.weight again, which the first one still holds too.
        const auto& norm = parts.header["model.norm.weight"];
        const std::size_t begin = norm["data_offsets"][0].get<std::size_t>();
        test::SafetensorsParts second;
        second.header["model.norm.weight"] = norm;
        second.header["model.norm.weight"]["data_offsets"] = {0, 256};
        second.data = parts.data.substr(begin, 256);
        test::writeSafetensorsParts(model_ / "model-00002-of-00002.safetensors", second);
        QVERIFY_MESSAGE(loadError(model_), "model-00002-of-00002.safetensors",
                        "tensor 'model.norm.weight' is stored in more than one shard");
    }

    void nanWeightIsNamedWhenEvaluated() {
        auto parts = test::readSafetensorsParts(weights_);
        const auto& entry = parts.header["model.layers.3.mlp.up_proj.weight"];
        const std::size_t begin = entry["data_offsets"][0].get<std::size_t>();
        const float nan = std::numeric_limits<float>::quiet_NaN();
        std::memcpy(parts.data.data() + begin + (5 * 64 + 7) * sizeof(float), &nan, sizeof(float));
        test::writeSafetensorsParts(weights_, parts);
        QCOMPARE(loadError(model_), QString()); // loading stays cheap: no full scan
        QVERIFY_MESSAGE(evalError(model_), "model.safetensors",
                        "tensor 'model.layers.3.mlp.up_proj.weight' contains NaN at [5, 7]");
    }

    void infEmbeddingIsNamedWhenEvaluated() {
        auto parts = test::readSafetensorsParts(weights_);
        const float inf = std::numeric_limits<float>::infinity();
        // Token 1 (BOS) starts every document, so its embedding row is always read.
        std::memcpy(parts.data.data() + (1 * 64 + 3) * sizeof(float), &inf, sizeof(float));
        test::writeSafetensorsParts(weights_, parts);
        QVERIFY_MESSAGE(evalError(model_),
                        "tensor 'model.embed_tokens.weight' contains Inf at [1, 3]");
    }

    void emptyTextIsRejected() {
        const auto tokenizer = loadTokenizer(model_ / "tokenizer.model");
        for (const char* text : {"", "\n\n  \n\t\n"}) {
            for (const auto protocol : {PerplexityProtocol::Documents, PerplexityProtocol::Gptq}) {
                try {
                    tokenizeForProtocol(*tokenizer, text, protocol, 1, "empty.txt");
                    QFAIL("empty text was accepted");
                } catch (const Error& e) {
                    QVERIFY_MESSAGE(QString::fromUtf8(e.what()), "empty.txt",
                                    "no text to evaluate");
                }
            }
        }
    }

    void damagedLlama2cCheckpointsAreRejected() {
        QUANTLENS_REQUIRE_DATA("stories260K/stories260K.bin");
        const std::string bytes = readBytes(test::dataPath("stories260K/stories260K.bin"));
        const fs::path bin = model_ / "damaged.bin";

        writeBytes(bin, bytes.substr(0, bytes.size() - 100));
        QVERIFY_MESSAGE(loadError(bin), "damaged.bin", "truncated: tensor 'freq_cis_imag'");

        writeBytes(bin, bytes + std::string(64, '\0'));
        QVERIFY_MESSAGE(loadError(bin), "damaged.bin", "implies 1056540");

        writeBytes(bin, bytes.substr(0, 20));
        QVERIFY_MESSAGE(loadError(bin), "damaged.bin", "too short for the 28-byte llama2.c header");

        std::string header = bytes;
        const std::int32_t heads = 7;
        std::memcpy(header.data() + 12, &heads, 4);
        writeBytes(bin, header);
        QVERIFY_MESSAGE(loadError(bin), "damaged.bin",
                        "hidden size 64 is not divisible by the head count 7");

        std::string huge = bytes;
        const std::int32_t absurd = 1 << 30;
        std::memcpy(huge.data() + 0, &absurd, 4);
        writeBytes(bin, huge);
        QVERIFY_MESSAGE(loadError(bin), "damaged.bin", "hidden size 1073741824 exceeds 1048576");

        // Plausible but enormous: a 2 GiB embedding that the file does not hold.
        const std::int32_t wide = 1 << 20;
        std::memcpy(huge.data() + 0, &wide, 4);
        writeBytes(bin, huge);
        QVERIFY_MESSAGE(loadError(bin), "damaged.bin", "truncated: tensor 'token_embedding_table'");
    }
};

QTEST_APPLESS_MAIN(TestHostileModels)
#include "test_hostile_models.moc"
