// The quantlens checkpoint: written by QuantlensWriter as quantizeModel's sink, read back array for
// array, sized exactly as the reported bits say, run by the fused kernels with the logits of the
// dense reconstruction; tampered files give exact errors; writes are atomic.
#include "error_text.h"
#include "safetensors_mutator.h"
#include "test_data.h"

#include "quantlens/core/error.h"
#include "quantlens/encoding/stored_tensor.h"
#include "quantlens/formats/model_loading.h"
#include "quantlens/formats/quantlens_checkpoint.h"
#include "quantlens/io/text_file.h"
#include "quantlens/quantization/model_quantizer.h"
#include "quantlens/runtime/compressed_kernels.h"
#include "quantlens/runtime/compressed_linear.h"
#include "quantlens/runtime/kv_cache.h"
#include "quantlens/runtime/perplexity.h"
#include "quantlens/runtime/transformer.h"
#include "quantlens/tokenizer/tokenizer.h"

#include <QTemporaryDir>

#include <cstring>

using namespace quantlens;
using quantlens::test::errorOf;
namespace fs = std::filesystem;

Q_DECLARE_METATYPE(quantlens::QuantConfig)

namespace {

std::vector<std::int32_t> excerptTokens(const Model& model) {
    const auto tokenizer = loadTokenizer(model.defaultTokenizer);
    return tokenizeForProtocol(*tokenizer,
                               readTextFile(test::dataPath("text/tinystories-valid-excerpt.txt")),
                               PerplexityProtocol::Documents, model.config.bosToken, "excerpt");
}

struct Written {
    QuantizeResult result;
    std::vector<QuantizedLayer> layers; // block-major, kLinearLayers order
};

// Quantizes `model` and streams it into a quantlens directory.
Written writeQuantlens(const Model& model, const QuantConfig& config, const fs::path& directory) {
    Written written;
    QuantlensWriter writer(model, directory, {{"quantlens.settings", describe(config)}});
    written.result = quantizeModel(
        model, excerptTokens(model), config, CalibrationConfig{8, 64},
        [&](int block, const std::string& name, const QuantizedLayer& layer, const RowMatrix&) {
            written.layers.push_back(layer);
            writer.writeLayer(block, name, layer);
        },
        JobContext{});
    writer.commit();
    return written;
}

std::size_t denseBytes(const Model& model) {
    std::size_t bytes = model.embedding.byteSize() + model.finalNorm.byteSize();
    if (!model.config.tiedEmbeddings) bytes += model.lmHead.byteSize();
    for (const BlockWeights& b : model.blocks)
        bytes += b.attnNorm.byteSize() + b.ffnNorm.byteSize();
    return bytes;
}

// Logits of a prompt window (the batched kernels) and of tokens fed one by one (the fused
// matrix-vector kernels, with `decoding` activations), as one matrix.
RowMatrix logitsOf(const Model& model, const std::vector<std::int32_t>& tokens,
                   Activations decoding = Activations::Exact) {
    Transformer transformer(model);
    transformer.setDecodeActivations(decoding);
    KvCache window(model.config, 64);
    const RowMatrix batch = transformer.forward({tokens.data(), 40}, window);
    KvCache steps(model.config, 64);
    RowMatrix single(12, model.config.vocabSize);
    for (int t = 0; t < 12; ++t)
        single.row(t) = transformer.forward({tokens.data() + t, 1}, steps).row(0);
    RowMatrix all(batch.rows() + single.rows(), batch.cols());
    all << batch, single;
    return all;
}

QString metadataOf(const fs::path& file, const std::string& key) {
    const SafetensorsFile f(file, SafetensorsFile::DTypes::Any);
    const auto it = f.metadata().find(key);
    return it == f.metadata().end() ? QString("(none)") : QString::fromStdString(it->second);
}

} // namespace

class TestQuantlensFormat : public QObject {
    Q_OBJECT
private slots:
    void initTestCase() {
        QUANTLENS_REQUIRE_DATA("stories260K-hf");
        QUANTLENS_REQUIRE_DATA("text/tinystories-valid-excerpt.txt");
    }

    void roundTrip_data() {
        QTest::addColumn<QuantConfig>("config");
        QTest::newRow("rtn w4 g16") << QuantConfig(RtnConfig{4, 16});
        QTest::newRow("gptq w3 g16 act-order") << QuantConfig(GptqConfig{3, 16, 128, 0.01, true});
        QTest::newRow("spqr paper setting") << QuantConfig(SpqrConfig{});
        QTest::newRow("squeezellm w3 0.45%") << QuantConfig(SqueezeConfig{3, 0.40, 0.05, 50});
        QTest::newRow("squeezellm w4 dense") << QuantConfig(SqueezeConfig{4, 0, 0, 50});
    }

    void roundTrip() {
        QFETCH(QuantConfig, config);
        QTemporaryDir dir;
        const fs::path out = fs::path(dir.path().toStdString()) / "model-q";
        const auto model = loadModel(test::dataPath("stories260K-hf"));
        const Written written = writeQuantlens(*model, config, out);

        // Nothing but the checkpoint, and no staging or spill files anywhere.
        QCOMPARE(test::entries(dir.path().toStdString()), std::vector<std::string>{"model-q"});
        QCOMPARE(test::entries(out),
                 (std::vector<std::string>{"config.json", "model.safetensors", "tokenizer.model"}));
        QCOMPARE(test::readBytes(out / "config.json"),
                 test::readBytes(test::dataPath("stories260K-hf/config.json")));

        // The file holds the reported bytes and the unquantized tensors, plus its header.
        const fs::path file = out / "model.safetensors";
        const std::string bytes = test::readBytes(file);
        std::uint64_t headerLength = 0;
        std::memcpy(&headerLength, bytes.data(), 8);
        QCOMPARE(fs::file_size(file),
                 8 + headerLength + written.result.storedBytes + denseBytes(*model));
        QCOMPARE(double(written.result.storedBytes) * 8 / double(written.result.parameters),
                 written.result.bitsPerParameter);

        QCOMPARE(metadataOf(file, "format"), QString("quantlens"));
        QCOMPARE(metadataOf(file, "quantlens.version"), QString("2"));
        QCOMPARE(metadataOf(file, "quantlens.method"), QString::fromStdString(methodName(config)));
        QCOMPARE(metadataOf(file, "quantlens.rope_layout"), QString("rotate-half"));
        QCOMPARE(metadataOf(file, "quantlens.settings"), QString::fromStdString(describe(config)));
        nlohmann::json layerEntry = nlohmann::json::parse(
            metadataOf(file, "quantlens.layer.model.layers.4.mlp.down_proj").toStdString());
        QCOMPARE(layerEntry["rows"].get<int>(), 64);
        QCOMPARE(layerEntry["cols"].get<int>(), 172);
        layerEntry.erase("rows");
        layerEntry.erase("cols");
        QCOMPARE(layerEntry.dump(), nlohmann::json::parse(quantConfigJson(config)).dump());
        QCOMPARE(QString::fromStdString(
                     quantConfigJson(parseQuantConfigJson(quantConfigJson(config), "settings"))),
                 QString::fromStdString(quantConfigJson(config)));

        // Read back: every array byte for byte, and the dense reconstruction bit for bit.
        const auto compressed = loadModel(out, CompressedLayers::Keep);
        const auto dequantized = loadModel(out);
        QVERIFY(dequantized->compressedLayers.empty());
        QCOMPARE(compressed->compressedLayers.size(), std::size_t(5));
        std::vector<std::array<RowMatrix, 7>> reconstruction(5);
        for (int b = 0; b < 5; ++b)
            for (int i = 0; i < 7; ++i) {
                const QuantizedLayer& original = written.layers[std::size_t(b * 7 + i)];
                const QuantizedLayer read =
                    compressed->compressedLayers[std::size_t(b)][std::size_t(i)]->quantizedLayer();
                QCOMPARE(read.tensors.size(), original.tensors.size());
                for (const auto& [key, tensor] : original.tensors) {
                    QCOMPARE(read.tensors.at(key).dtype, tensor.dtype);
                    QCOMPARE(read.tensors.at(key).shape, tensor.shape);
                    QVERIFY(read.tensors.at(key).bytes == tensor.bytes);
                }
                QCOMPARE(read.outlierCount, original.outlierCount);
                reconstruction[std::size_t(b)][std::size_t(i)] = original.dequantize();
                const TensorView& view = *dequantized->blocks[std::size_t(b)].linearLayers()[i];
                QVERIFY(FloatTensor(view).matrix() ==
                        reconstruction[std::size_t(b)][std::size_t(i)]);
            }

        // The fused kernels give the logits of the dense reconstruction (the in-memory quantized
        // model) up to fp32 rounding of differently ordered sums (the decoded weights are
        // bit-identical): 1e-4 absolute; the measured differences are 1.5e-5 to 4.2e-5.
        const auto inMemory = withLinearLayers(*model, std::move(reconstruction));
        const std::vector<std::int32_t> tokens = excerptTokens(*model);
        const RowMatrix expected = logitsOf(*inMemory, tokens);
        QVERIFY(logitsOf(*dequantized, tokens) == expected);
        const auto largest = [](const RowMatrix& m) { return m.cwiseAbs().maxCoeff(); };
        const float difference = largest(logitsOf(*compressed, tokens) - expected);
        QVERIFY2(difference <= 1e-4f, qPrintable(QString("max |Δlogit| = %1").arg(difference)));
        qInfo("fused kernels: max |Δlogit| %.3g", difference);
        // And so perplexity over the excerpt (batched, exact activations) within 1e-4.
        const PerplexityConfig scoring{128, PerplexityProtocol::Documents};
        const double fusedPpl =
            evaluatePerplexity(Transformer(*compressed), tokens, scoring, JobContext{}).perplexity;
        const double densePpl =
            evaluatePerplexity(Transformer(*inMemory), tokens, scoring, JobContext{}).perplexity;
        QVERIFY2(
            std::abs(fusedPpl - densePpl) <= 1e-4,
            qPrintable(
                QString("ppl %1 against %2").arg(fusedPpl, 0, 'g', 10).arg(densePpl, 0, 'g', 10)));
        qInfo("perplexity %.7f, dense reconstruction %.7f", fusedPpl, densePpl);

        // Decoding with int8 activations, where a layer's kernel has them (3- and 4-bit grids and
        // LUTs; not 4-bit grids of groups under 32), bounded per product in
        // test_compressed_kernels: through this 5-block model the logits of tokens fed one by one
        // move by 1.3–2.7% of their range (measured), which 4% allows; the window stays exact.
        bool int8 = false;
        for (const auto& layers : compressed->compressedLayers)
            for (const auto& layer : layers)
                int8 = int8 || int8ActivationsApply(layer->matrix());
        const RowMatrix decoded = logitsOf(*compressed, tokens, Activations::Int8);
        QVERIFY(largest(decoded.topRows(40) - expected.topRows(40)) <= 1e-4f);
        const float single = largest(decoded.bottomRows(12) - expected.bottomRows(12));
        QVERIFY2(single <= (int8 ? 0.04f * largest(expected) : 1e-4f),
                 qPrintable(QString("int8 decoding: max |Δlogit| = %1").arg(single)));
        qInfo("int8 decoding: max |Δlogit| %.3g of %.3g (%s)", single, largest(expected),
              int8 ? "int8 kernels" : "no int8 kernel applies");
    }

    // llama2.c sources keep their interleaved Q/K rows; the metadata says so and the loader
    // runs them with that RoPE layout.
    void llama2cSource() {
        QUANTLENS_REQUIRE_DATA("stories260K/stories260K.bin");
        QTemporaryDir dir;
        const fs::path out = fs::path(dir.path().toStdString()) / "q";
        auto model = loadModel(test::dataPath("stories260K/stories260K.bin"));
        model->defaultTokenizer = test::dataPath("stories260K/tok512.model");
        const Written written = writeQuantlens(*model, RtnConfig{4, 16}, out);
        QCOMPARE(metadataOf(out / "model.safetensors", "quantlens.rope_layout"),
                 QString("interleaved"));
        const auto compressed = loadModel(out, CompressedLayers::Keep);
        QCOMPARE(compressed->config.ropeLayout, RopeLayout::Interleaved);
        std::vector<std::array<RowMatrix, 7>> reconstruction(5);
        for (int b = 0; b < 5; ++b)
            for (int i = 0; i < 7; ++i)
                reconstruction[std::size_t(b)][std::size_t(i)] =
                    written.layers[std::size_t(b * 7 + i)].dequantize();
        const auto inMemory = withLinearLayers(*model, std::move(reconstruction));
        const std::vector<std::int32_t> tokens = excerptTokens(*compressed);
        QVERIFY(
            (logitsOf(*compressed, tokens) - logitsOf(*inMemory, tokens)).cwiseAbs().maxCoeff() <=
            1e-4f);
    }

    // Damaged checkpoints: each error names the file and the problem.
    void tamperedFiles() {
        QTemporaryDir dir;
        const fs::path good = fs::path(dir.path().toStdString()) / "good";
        const auto model = loadModel(test::dataPath("stories260K-hf"));
        writeQuantlens(*model, SpqrConfig{}, good);
        const auto tampered = [&](const std::string& name,
                                  const std::function<void(test::SafetensorsParts&)>& edit) {
            const fs::path copy = fs::path(dir.path().toStdString()) / name;
            test::copyModelDirectory(good, copy);
            test::SafetensorsParts parts = test::readSafetensorsParts(copy / "model.safetensors");
            edit(parts);
            test::writeSafetensorsParts(copy / "model.safetensors", parts);
            return copy;
        };
        const auto loadError = [](const fs::path& directory) {
            return errorOf([&] { loadModel(directory, CompressedLayers::Keep); });
        };
        const auto at = [](test::SafetensorsParts& parts, const std::string& tensor) {
            return parts.data.data() + parts.header[tensor]["data_offsets"][0].get<std::size_t>();
        };
        QCOMPARE(loadError(good), QString("no error"));

        // Truncated: the last tensor runs past the end of the file.
        {
            const fs::path copy = fs::path(dir.path().toStdString()) / "truncated";
            test::copyModelDirectory(good, copy);
            const std::string bytes = test::readBytes(copy / "model.safetensors");
            test::writeBytes(copy / "model.safetensors", bytes.substr(0, bytes.size() - 100));
            const test::SafetensorsParts parts =
                test::readSafetensorsParts(good / "model.safetensors");
            const auto& norm = parts.header["model.norm.weight"]["data_offsets"];
            QCOMPARE(
                loadError(copy),
                QString("%1: tensor 'model.norm.weight' has data_offsets [%2, %3) past the end "
                        "of the data (%4 bytes)")
                    .arg(QString::fromStdString((copy / "model.safetensors").string()))
                    .arg(norm[0].get<std::size_t>())
                    .arg(norm[1].get<std::size_t>())
                    .arg(parts.data.size() - 100));
        }
        const auto fileOf = [](const fs::path& directory) {
            return QString::fromStdString((directory / "model.safetensors").string());
        };
        fs::path copy = tampered("version", [](test::SafetensorsParts& parts) {
            parts.header["__metadata__"]["quantlens.version"] = "3";
        });
        QCOMPARE(loadError(copy), fileOf(copy) + ": quantlens format version '3' is not supported "
                                                 "(this build reads versions 1 to 2)");
        copy = tampered("no-settings", [](test::SafetensorsParts& parts) {
            parts.header["__metadata__"].erase("quantlens.layer.model.layers.2.mlp.up_proj");
        });
        QCOMPARE(loadError(copy), fileOf(copy) +
                                      ": no settings for layer 'model.layers.2.mlp.up_proj' in the "
                                      "metadata ('quantlens.layer.model.layers.2.mlp.up_proj')");
        copy = tampered("wbits", [](test::SafetensorsParts& parts) {
            auto entry = nlohmann::json::parse(
                parts.header["__metadata__"]["quantlens.layer.model.layers.1.self_attn.k_proj"]
                    .get<std::string>());
            entry["wbits"] = 4;
            parts.header["__metadata__"]["quantlens.layer.model.layers.1.self_attn.k_proj"] =
                entry.dump();
        });
        QCOMPARE(loadError(copy), fileOf(copy) +
                                      ": tensor 'model.layers.1.self_attn.k_proj.codes' has shape "
                                      "[32, 6] but must be [32, 8] for a spqr layer of 32×64");
        // down_proj: 172 3-bit codes use 516 of 544 bits per row; the rest must be clear.
        copy = tampered("codes", [&](test::SafetensorsParts& parts) {
            at(parts, "model.layers.3.mlp.down_proj.codes")[4 * 16 + 3] |= 0x40;
        });
        QCOMPARE(loadError(copy), fileOf(copy) +
                                      ": tensor 'model.layers.3.mlp.down_proj.codes' has codes out "
                                      "of range: row 0 has bits set past its 172 3-bit codes");

        const test::SafetensorsParts original =
            test::readSafetensorsParts(good / "model.safetensors");
        const std::string csr = "model.layers.0.self_attn.q_proj.outlier_";
        // Row pointers are stored as narrow as nnz allows (docs/FORMAT.md).
        const std::size_t width =
            std::size_t(indexBytes(original.header[csr + "row_ptr"]["dtype"].get<std::string>()));
        QVERIFY(width > 0);
        const auto rowPointer = [&](int row) {
            std::int64_t value = 0;
            std::memcpy(&value,
                        original.data.data() +
                            original.header[csr + "row_ptr"]["data_offsets"][0].get<std::size_t>() +
                            width * std::size_t(row),
                        width);
            return value;
        };
        int busy = 0; // the first row that begins after an outlier
        while (rowPointer(busy) == 0)
            ++busy;
        const std::int64_t first = rowPointer(busy);
        copy = tampered("row-pointers", [&](test::SafetensorsParts& parts) {
            const std::int64_t early = first - 1; // row `busy` ends before it begins
            std::memcpy(at(parts, csr + "row_ptr") + width * std::size_t(busy + 1), &early, width);
        });
        QCOMPARE(loadError(copy), fileOf(copy) + QString(": tensor '%1row_ptr' row pointers are "
                                                         "not monotone: row %2 ends at %3, before "
                                                         "it begins at %4")
                                                     .arg(QString::fromStdString(csr))
                                                     .arg(busy)
                                                     .arg(first - 1)
                                                     .arg(first));
        int owner = busy; // the row holding entry `first`
        while (rowPointer(owner + 1) <= first)
            ++owner;
        const std::size_t columnWidth =
            std::size_t(indexBytes(original.header[csr + "cols"]["dtype"].get<std::string>()));
        copy = tampered("columns", [&](test::SafetensorsParts& parts) {
            const std::int64_t outside = 64;
            std::memcpy(at(parts, csr + "cols") + columnWidth * std::size_t(first), &outside,
                        columnWidth);
        });
        QCOMPARE(loadError(copy), fileOf(copy) + QString(": tensor '%1cols' has column index 64 "
                                                         "(entry %2, row %3) outside [0, 64)")
                                                     .arg(QString::fromStdString(csr))
                                                     .arg(first)
                                                     .arg(owner));
        const auto addTensor = [](test::SafetensorsParts& parts, const std::string& name) {
            const std::size_t offset = parts.data.size();
            parts.data.append(4, '\0');
            parts.header[name] = {
                {"dtype", "U32"}, {"shape", {1}}, {"data_offsets", {offset, offset + 4}}};
        };
        copy = tampered("stray", [&](test::SafetensorsParts& parts) {
            addTensor(parts, "model.layers.9.mlp.up_proj.codes");
        });
        QCOMPARE(loadError(copy), fileOf(copy) + ": tensor 'model.layers.9.mlp.up_proj.codes' "
                                                 "belongs to no layer of this model");
        copy = tampered("extra", [&](test::SafetensorsParts& parts) {
            addTensor(parts, "model.layers.0.self_attn.q_proj.scales");
        });
        QCOMPARE(loadError(copy), fileOf(copy) +
                                      ": tensor 'model.layers.0.self_attn.q_proj.scales' "
                                      "is not part of a spqr layer");
    }

    // Writes appear whole or not at all.
    // A version 1 checkpoint (I32 row pointers, U16 outlier columns and permutations) still loads
    // and runs exactly as the version 2 checkpoint it is converted from.
    void versionOneStillLoads() {
        QTemporaryDir dir;
        const fs::path v2 = fs::path(dir.path().toStdString()) / "v2";
        const fs::path v1 = fs::path(dir.path().toStdString()) / "v1";
        const auto model = loadModel(test::dataPath("stories260K-hf"));
        writeQuantlens(*model, SpqrConfig{}, v2);
        test::copyModelDirectory(v2, v1);
        test::SafetensorsParts parts = test::readSafetensorsParts(v1 / "model.safetensors");
        int widened = 0;
        test::convertTensors(parts, [&](const std::string& name, const std::string& dtype,
                                        const std::string& bytes) {
            const bool rowPointers = name.ends_with(".outlier_row_ptr");
            if (!rowPointers && !name.ends_with(".outlier_cols") && !name.ends_with(".perm"))
                return std::pair{dtype, bytes};
            const std::size_t from = dtype == "U8" ? 1 : dtype == "U16" ? 2 : 4;
            const std::size_t to = rowPointers ? 4 : 2;
            std::string wide;
            for (std::size_t at = 0; at < bytes.size(); at += from) {
                std::uint32_t value = 0;
                std::memcpy(&value, bytes.data() + at, from);
                wide.append(reinterpret_cast<const char*>(&value), to);
            }
            widened += dtype == (rowPointers ? "I32" : "U16") ? 0 : 1;
            return std::pair{std::string(rowPointers ? "I32" : "U16"), wide};
        });
        parts.header["__metadata__"]["quantlens.version"] = "1";
        test::writeSafetensorsParts(v1 / "model.safetensors", parts);
        QVERIFY(widened > 0);
        QVERIFY(fs::file_size(v1 / "model.safetensors") > fs::file_size(v2 / "model.safetensors"));

        const auto old = loadModel(v1, CompressedLayers::Keep);
        const auto current = loadModel(v2, CompressedLayers::Keep);
        const std::vector<std::int32_t> tokens = excerptTokens(*current);
        QCOMPARE((logitsOf(*old, tokens) - logitsOf(*current, tokens)).cwiseAbs().maxCoeff(), 0.0f);
    }

    void atomicWrites() {
        QTemporaryDir dir;
        const fs::path root = dir.path().toStdString();
        const fs::path out = root / "out";
        const auto model = loadModel(test::dataPath("stories260K-hf"));
        const Written first = writeQuantlens(*model, RtnConfig{4, 16}, out);
        const std::string firstBytes = test::readBytes(out / "model.safetensors");

        // Abandoned part-way (an error, a cancel): nothing appears, the old output stays.
        {
            QuantlensWriter writer(*model, out);
            writer.writeLayer(0, "q_proj", first.layers[0]);
            QCOMPARE(errorOf([&] { writer.writeLayer(0, "v_proj", first.layers[2]); }),
                     QString::fromStdString(out.string()) +
                         ": layer 0.v_proj written out of order; expected 0.k_proj");
            QCOMPARE(errorOf([&] { writer.commit(); }),
                     QString::fromStdString(out.string()) +
                         ": checkpoint incomplete: layer model.layers.0.self_attn.k_proj was never "
                         "written");
        }
        QCOMPARE(test::entries(root), std::vector<std::string>{"out"});
        QVERIFY(test::readBytes(out / "model.safetensors") == firstBytes);

        // A complete write replaces the old checkpoint in one swap.
        writeQuantlens(*model, RtnConfig{3, 16}, out);
        QCOMPARE(test::entries(root), std::vector<std::string>{"out"});
        QCOMPARE(metadataOf(out / "model.safetensors", "quantlens.settings"),
                 QString::fromStdString(describe(RtnConfig{3, 16})));

        // A directory that is not a checkpoint is never replaced.
        const fs::path notes = root / "notes";
        fs::create_directories(notes);
        test::writeBytes(notes / "todo.txt", "keep me");
        QCOMPARE(errorOf([&] { QuantlensWriter writer(*model, notes); }),
                 QString::fromStdString(notes.string()) +
                     ": exists and holds no config.json (not a model checkpoint); refusing to "
                     "replace it");
        QCOMPARE(test::readBytes(notes / "todo.txt"), std::string("keep me"));
    }
};

QTEST_APPLESS_MAIN(TestQuantlensFormat)
#include "test_quantlens_format.moc"
