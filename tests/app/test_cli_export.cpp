// quantlens-cli on quantlens checkpoints: eval and generate run them compressed with the results
// of their dense export, export converts them (and refuses what a format cannot hold, leaving no
// output), and bench gemv prints its table.
#include "cli_run.h"
#include "test_data.h"

#include "quantlens/formats/model_loading.h"
#include "quantlens/formats/quantlens_checkpoint.h"
#include "quantlens/io/text_file.h"
#include "quantlens/quantization/model_quantizer.h"
#include "quantlens/runtime/perplexity.h"
#include "quantlens/tokenizer/tokenizer.h"

#include <QTemporaryDir>

#include <nlohmann/json.hpp>

namespace {

using namespace quantlens;
namespace fs = std::filesystem;

using test::CliRun;
using test::runCli;

QString data(const char* relative) {
    return QString::fromStdString(test::dataPath(relative).string());
}

// stories260K-hf quantized with SpQR into a quantlens checkpoint, through the engine's writer.
void writeSpqrCheckpoint(const fs::path& out) {
    const auto model = loadModel(test::dataPath("stories260K-hf"));
    const auto tokenizer = loadTokenizer(model->defaultTokenizer);
    const auto tokens = tokenizeForProtocol(
        *tokenizer, readTextFile(test::dataPath("text/tinystories-valid-excerpt.txt")),
        PerplexityProtocol::Documents, model->config.bosToken, "excerpt");
    QuantlensWriter writer(*model, out);
    quantizeModel(
        *model, tokens, SpqrConfig{}, CalibrationConfig{8, 64},
        [&](int block, const std::string& name, const QuantizedLayer& layer, const RowMatrix&) {
            writer.writeLayer(block, name, layer);
        },
        JobContext{});
    writer.commit();
}

} // namespace

class TestCliExport : public QObject {
    Q_OBJECT
private slots:
    void initTestCase() {
        QUANTLENS_REQUIRE_DATA("stories260K-hf");
        QUANTLENS_REQUIRE_DATA("text/tinystories-valid-excerpt.txt");
    }

    void compressedRunsLikeItsDenseExport() {
        QTemporaryDir dir;
        const QString compressed = dir.filePath("spqr"), dense = dir.filePath("dense");
        writeSpqrCheckpoint(compressed.toStdString());

        CliRun run =
            runCli({"export", compressed, "--format", "dense-f32", "--out", dense, "--json"});
        QCOMPARE(run.exitCode, 0);
        const auto exported = nlohmann::json::parse(run.out.toStdString());
        QCOMPARE(exported["layers"].get<int>(), 35);

        // Perplexity: the fused kernels against the dense reconstruction.
        const CliRun fused = runCli(
            {"eval", compressed, "--text", data("text/tinystories-valid-excerpt.txt"), "--json"});
        const CliRun reference =
            runCli({"eval", dense, "--text", data("text/tinystories-valid-excerpt.txt"), "--json"});
        QCOMPARE(fused.exitCode, 0);
        QCOMPARE(reference.exitCode, 0);
        const auto a = nlohmann::json::parse(fused.out.toStdString());
        const auto b = nlohmann::json::parse(reference.out.toStdString());
        QCOMPARE(a["tokens"].get<int>(), 6851);
        QVERIFY2(std::abs(a["nll"].get<double>() - b["nll"].get<double>()) < 1e-5,
                 qPrintable(fused.out + reference.out));
        QVERIFY(a["nll"].get<double>() > 1.697663); // quantization costs something

        // Greedy generation with exact activations: the same tokens. With int8 ones (the
        // default) the compressed layers' products move within their bound, and the tokens may
        // part ways.
        const CliRun g1 = runCli({"generate", compressed, "-n", "30", "--exact", "--json"});
        const CliRun g2 = runCli({"generate", dense, "-n", "30", "--json"});
        QCOMPARE(g1.exitCode, 0);
        const auto exact = nlohmann::json::parse(g1.out.toStdString());
        QCOMPARE(exact["activations"].get<std::string>(), std::string("exact"));
        QCOMPARE(exact["int8_layers"].get<int>(), 0);
        QCOMPARE(exact["tokens"], nlohmann::json::parse(g2.out.toStdString())["tokens"]);
        const CliRun g3 = runCli({"generate", compressed, "-n", "30", "--json"});
        QCOMPARE(g3.exitCode, 0);
        const auto int8 = nlohmann::json::parse(g3.out.toStdString());
        QCOMPARE(int8["activations"].get<std::string>(), std::string("int8"));
        // SpQR w3 on stories260K: the 6 layers of each block with 64 columns take an int8 kernel
        // (AVX2 or AVX-512), the down projections' 172 columns (not whole blocks of 32) none.
        const int int8Layers = int8["int8_layers"].get<int>();
        QVERIFY2(int8Layers == 30 || int8Layers == 0, g3.out.toUtf8().constData());
        QCOMPARE(int8["tokens"].size(), std::size_t(30));
    }

    void exportRefusesAndLeavesNothing() {
        QTemporaryDir dir;
        const QString compressed = dir.filePath("spqr"), out = dir.filePath("gptq");
        writeSpqrCheckpoint(compressed.toStdString());
        CliRun run = runCli({"export", compressed, "--format", "gptq", "--out", out});
        QCOMPARE(run.exitCode, 1);
        QCOMPARE(run.err, QString("quantlens-cli: model.layers.0.self_attn.q_proj: is quantized "
                                  "with spqr; the GPTQ layout holds only rtn and gptq layers "
                                  "(export spqr as quantlens or dense)\n"));
        QVERIFY(!fs::exists(out.toStdString()));
        QCOMPARE(QDir(dir.path()).entryList(QDir::AllEntries | QDir::Hidden | QDir::NoDotAndDotDot),
                 QStringList{"spqr"});

        run = runCli({"export", data("stories260K-hf"), "--format", "dense-f16", "--out", out});
        QCOMPARE(run.exitCode, 1);
        QCOMPARE(run.err, "quantlens-cli: " + data("stories260K-hf") +
                              ": is not a quantlens checkpoint (export reads the directories "
                              "`quantize --format quantlens` writes)\n");
        run = runCli({"export", compressed, "--format", "dense-f8", "--out", out});
        QCOMPARE(run.exitCode, 105); // CLI11's validation error
    }

    void benchGemvPrintsItsTable() {
        const CliRun run = runCli({"--threads", "2", "--device", "cpu", "bench", "gemv", "--shape",
                                   "64x256", "--repeat", "3", "--stack-mib", "1", "--json"});
        QCOMPARE(run.exitCode, 0);
        const auto result = nlohmann::json::parse(run.out.toStdString());
        QCOMPARE(result["stack_bytes"].get<std::size_t>(), std::size_t(1) << 20);
        QVERIFY(result["read_gb_per_s"].get<double>() > 0.0);
        // Seven rows, and a compressed method again with int8 activations, named by the kernel,
        // where the build has one for it (AVX2: all five; AVX-512 keeps the two LUTs exact, and
        // with VNNI the 3-bit one).
        const auto& results = result["results"];
        std::size_t int8Rows = 0;
        for (std::size_t i = 1; i < results.size(); ++i) {
            const auto method = results[i]["method"].get<std::string>();
            const std::size_t at = method.find(", int8 x ");
            if (at == std::string::npos) continue;
            ++int8Rows;
            QCOMPARE(method.substr(0, at), results[i - 1]["method"].get<std::string>());
            const std::string kernel = method.substr(at + 9);
            QVERIFY2(kernel == "avx2" || kernel == "avx512-vnni", method.c_str());
        }
        QVERIFY(int8Rows == 0 || int8Rows == 3 || int8Rows == 4 || int8Rows == 5);
        QCOMPARE(results.size(), 7 + int8Rows);
        for (const auto& row : result["results"]) {
            // Each run streams distinct copies that together fill the stack.
            const double streamed = row["stack"].get<double>() * row["bytes_read"].get<double>();
            QVERIFY2(streamed >= double(1 << 20) && row["stack"].get<int>() > 1,
                     row.dump().c_str());
            QVERIFY(row["share_of_read_bandwidth"].get<double>() > 0.0);
        }
        const CliRun table = runCli({"--threads", "2", "--device", "cpu", "bench", "gemv",
                                     "--shape", "64x256", "--repeat", "3", "--cached"});
        QCOMPARE(table.exitCode, 0);
        const QStringList lines = table.out.split('\n', Qt::SkipEmptyParts);
        QVERIFY2(lines.size() == 4 + qsizetype(results.size()),
                 qPrintable(table.out)); // title, header
        QVERIFY2(lines[0].startsWith("gemv on cpu: batch-1 y = W·x, 2 threads, 3 runs"),
                 qPrintable(lines[0]));
        QVERIFY(lines[1].startsWith("one matrix timed again and again (--cached)"));
        QVERIFY(lines[2].startsWith("read bandwidth measured in this run: "));
        for (const char* method : {"fp32 eigen, one call", "spqr w3 g32", "spqr w3 g16",
                                   "squeezellm w3", "squeezellm w4", "gptq w4 g128"})
            QVERIFY2(table.out.contains(QString("64x256      ") + method), method);
    }
};

QTEST_APPLESS_MAIN(TestCliExport)
#include "test_cli_export.moc"
