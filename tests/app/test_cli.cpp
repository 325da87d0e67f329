// quantlens-cli end to end: the commands a user types, their output and their exit codes.
#include "cli_run.h"
#include "synthetic_fixtures.h"
#include "test_data.h"

#include <QDeadlineTimer>
#include <QDir>
#include <QProcess>
#include <QRandomGenerator>
#include <QRegularExpression>
#include <QTemporaryDir>
#include <QThread>

#include <nlohmann/json.hpp>

#include <sys/resource.h>

#include <cmath>
#include <csignal>
#include <filesystem>
#include <set>

namespace {

using quantlens::test::CliRun;

CliRun runCli(const QStringList& arguments) {
    return quantlens::test::runCli(arguments, 120000);
}

QString data(const char* relative) {
    return QString::fromStdString(quantlens::test::dataPath(relative).string());
}

nlohmann::json parseJson(const QString& text) {
    return nlohmann::json::parse(text.toStdString());
}

} // namespace

class TestCli : public QObject {
    Q_OBJECT
private slots:
    void initTestCase() {
        QUANTLENS_REQUIRE_DATA("stories260K-hf");
        QUANTLENS_REQUIRE_DATA("stories260K");
        QUANTLENS_REQUIRE_DATA("text/tinystories-valid-excerpt.txt");
    }

    void evalPrintsReferenceJson() {
        const CliRun run = runCli({"eval", data("stories260K-hf"), "--text",
                                   data("text/tinystories-valid-excerpt.txt"), "--json"});
        QCOMPARE(run.exitCode, 0);
        const auto result = parseJson(run.out);
        QCOMPARE(result["tokens"].get<int>(), 6851);
        QVERIFY(std::abs(result["nll"].get<double>() - 1.697663) < 1e-5 * 1.697663);
        QVERIFY(std::abs(result["ppl"].get<double>() - 5.461168) < 1e-5 * 5.461168);
        QVERIFY(run.err.isEmpty()); // no progress bar when stderr is not a terminal
    }

    void evalOfLlama2cNeedsAndFindsTokenizer() {
        const CliRun run = runCli({"eval", data("stories260K/stories260K.bin"), "--tokenizer",
                                   data("stories260K/tok512.bin"), "--text",
                                   data("text/tinystories-valid-excerpt.txt"), "--ctx", "128"});
        QCOMPARE(run.exitCode, 0);
        QVERIFY2(run.out.contains("tokens   6851\n"), qPrintable(run.out));
        QVERIFY2(run.out.contains("ppl      5.68598"), qPrintable(run.out));
    }

    void evalGptqProtocol() {
        const CliRun run =
            runCli({"eval", data("stories260K-hf"), "--text",
                    data("text/tinystories-valid-excerpt.txt"), "--protocol", "gptq", "--json"});
        QCOMPARE(run.exitCode, 0);
        const auto result = parseJson(run.out);
        QCOMPARE(result["tokens"].get<int>(), 6865);
        QCOMPARE(result["windows"].get<int>(), 26);
        QVERIFY(std::abs(result["ppl"].get<double>() - 5.581638) < 1e-5 * 5.581638);
    }

    void tokenizeThenEvalTokens() {
        QTemporaryDir dir;
        const QString ids = dir.filePath("excerpt.u32");
        CliRun run = runCli({"tokenize", data("stories260K-hf"), "--text",
                             data("text/tinystories-valid-excerpt.txt"), "--out", ids});
        QCOMPARE(run.exitCode, 0);
        QCOMPARE(QFileInfo(ids).size(), 6852 * 4);
        run = runCli({"eval", data("stories260K-hf"), "--tokens", ids, "--json"});
        QCOMPARE(run.exitCode, 0);
        QVERIFY(std::abs(parseJson(run.out)["ppl"].get<double>() - 5.461168) < 1e-5 * 5.461168);
    }

    void generateIsGreedy() {
        const CliRun run = runCli({"generate", data("stories260K-hf"), "-n", "40"});
        QCOMPARE(run.exitCode, 0);
        QVERIFY2(
            run.out.startsWith("Once upon a time, there was a little girl named Lily. She loved to "
                               "play outside in the park."),
            qPrintable(run.out));
        const CliRun json = runCli({"generate", data("stories260K-hf"), "--prompt",
                                    "Once upon a time", "-n", "8", "--json"});
        QCOMPARE(json.exitCode, 0);
        const auto result = parseJson(json.out);
        QCOMPARE(result["tokens"].size(), std::size_t(8));
        QVERIFY(
            result["text"].get<std::string>().starts_with("Once upon a time, there was a little"));
        // Decoding speed against what each token reads: all 260,032 fp32 weights (the head is
        // the tied embedding).
        QVERIFY(result["decode_tokens_per_s"].get<double>() > 0.0);
        QCOMPARE(result["bytes_per_token"].get<double>(), 260032.0 * 4);
        QVERIFY(std::abs(result["decode_gb_per_s"].get<double>() -
                         result["decode_tokens_per_s"].get<double>() * 260032.0 * 4 / 1e9) < 1e-9);
        QVERIFY2(run.err.contains("tokens/s decoding, 1.0 MB of weights a token"),
                 qPrintable(run.err));
    }

    void inspectDescribesModel() {
        const CliRun run = runCli({"inspect", data("stories260K/stories260K.bin"), "--json"});
        QCOMPARE(run.exitCode, 0);
        const auto result = parseJson(run.out);
        QCOMPARE(result["format"].get<std::string>(), std::string("llama2c"));
        QCOMPARE(result["parameters"].get<long long>(), 260032LL);
        QCOMPARE(result["rope_layout"].get<std::string>(), std::string("interleaved"));
        QCOMPARE(result["tensors"].size(), std::size_t(13));
        const CliRun text = runCli({"inspect", data("stories260K-hf")});
        QCOMPARE(text.exitCode, 0);
        QVERIFY(text.out.contains("parameters   260032"));
        QVERIFY(text.out.contains("model.layers.4.mlp.down_proj.weight"));
    }

    // The BF16 model against its F32 base: the ratio of the two reference perplexities
    // (shared/data/README.md), every figure present, and a base of another vocabulary refused.
    void evalAgainstABase() {
        const CliRun run =
            runCli({"eval", data("stories260K-hf-bf16"), "--base", data("stories260K-hf"), "--text",
                    data("text/tinystories-valid-excerpt.txt"), "--json"});
        QCOMPARE(run.exitCode, 0);
        const auto result = parseJson(run.out);
        QVERIFY(std::abs(result["base_ppl"].get<double>() - 5.461168) < 1e-5 * 5.461168);
        QVERIFY(std::abs(result["ppl_ratio"].get<double>() - 5.465639 / 5.461168) < 1e-5);
        for (const char* key : {"ppl_ratio_err", "kl_mean", "kl_median", "kl_p99", "kl_max",
                                "top1_agreement", "dp_mean", "dp_p1", "dp_p99"})
            QVERIFY2(result.contains(key) && std::isfinite(result[key].get<double>()), key);
        QVERIFY(result["kl_median"].get<double>() <= result["kl_p99"].get<double>());
        QVERIFY(result["top1_agreement"].get<double>() > 0.95);
        const CliRun text =
            runCli({"eval", data("stories260K-hf-bf16"), "--base", data("stories260K-hf"), "--text",
                    data("text/tinystories-valid-excerpt.txt")});
        QVERIFY2(text.out.contains("ppl ratio 1.000") && text.out.contains("top-1"),
                 qPrintable(text.out));
        QTemporaryDir dir;
        quantlens::test::writeGptqShapedModel(dir.filePath("other").toStdString(), 1); // 128 ids
        const CliRun mismatched =
            runCli({"eval", data("stories260K-hf"), "--base", dir.filePath("other"), "--text",
                    data("text/tinystories-valid-excerpt.txt")});
        QVERIFY(mismatched.exitCode != 0);
        QVERIFY2(mismatched.err.contains("vocabulary"), qPrintable(mismatched.err));
    }

    // The whole-model map: a row of seven cells per block, the same map again from the cache
    // (without computing it), and a metric that needs evaluation text refused without it.
    void analyseMapsEveryLayer() {
        QTemporaryDir dir;
        const QStringList arguments = {"analyse",    data("stories260K-hf"),
                                       "--calib",    data("text/wikitext2-test.txt"),
                                       "--nsamples", "4",
                                       "--seqlen",   "128",
                                       "--wbits",    "3",
                                       "--cache",    dir.filePath("maps"),
                                       "--json"};
        const CliRun first = runCli(arguments);
        QCOMPARE(first.exitCode, 0);
        const auto map = parseJson(first.out);
        QCOMPARE(map["metric"].get<std::string>(), std::string("obs"));
        QCOMPARE(map["settings"]["wbits"].get<int>(), 3);
        QCOMPARE(map["layers"].size(), std::size_t(7));
        QCOMPARE(map["values"].size(), std::size_t(map["blocks"].get<int>()));
        for (const auto& row : map["values"]) {
            QCOMPARE(row.size(), std::size_t(7));
            for (const auto& cell : row)
                QVERIFY(cell.get<double>() > 0.0);
        }
        // The second run reads the cached file: a cell changed there shows in its output.
        const QStringList cached = QDir(dir.filePath("maps")).entryList(QDir::Files);
        QCOMPARE(cached.size(), 1);
        const std::string file = dir.filePath("maps/" + cached[0]).toStdString();
        auto stored = nlohmann::json::parse(quantlens::test::readBytes(file));
        stored["map"]["values"][0][0] = 12345.0;
        quantlens::test::writeBytes(file, stored.dump());
        const CliRun again = runCli(arguments);
        QCOMPARE(again.exitCode, 0);
        QCOMPARE(parseJson(again.out)["values"][0][0].get<double>(), 12345.0);
        QCOMPARE(parseJson(again.out)["values"][1], map["values"][1]);
        const CliRun table =
            runCli({"analyse", data("stories260K-hf"), "--calib", data("text/wikitext2-test.txt"),
                    "--nsamples", "4", "--seqlen", "128", "--cache", dir.filePath("maps")});
        QCOMPARE(table.exitCode, 0);
        QVERIFY2(table.out.contains("down_proj") && table.out.contains("most sensitive"),
                 qPrintable(table.out));
        const CliRun noText = runCli({"analyse", data("stories260K-hf"), "--calib",
                                      data("text/wikitext2-test.txt"), "--metric", "solo-kl"});
        QVERIFY(noText.exitCode != 0);
        QVERIFY2(noText.err.contains("--text"), qPrintable(noText.err));
    }

    // A budget run: within its target, settings per layer in the output and the checkpoint's
    // metadata; a target below every candidate is refused by name.
    void quantizeToATargetBits() {
        QTemporaryDir dir;
        const QString out = dir.filePath("budget");
        CliRun run = runCli({"quantize", data("stories260K-hf"), "--method", "gptq",
                             "--target-bits", "3.5", "--budget-grid", "wbits=2,3,4:groupsize=32,64",
                             "--calib", data("text/wikitext2-test.txt"), "--nsamples", "4",
                             "--seqlen", "128", "--format", "quantlens", "--out", out, "--json"});
        QCOMPARE(run.exitCode, 0);
        const auto result = parseJson(run.out);
        QCOMPARE(result["target_bits"].get<double>(), 3.5);
        QVERIFY(result["paper_bits_per_param"].get<double>() <= 3.5);
        std::set<std::string> settings;
        for (const auto& layer : result["layers"])
            settings.insert(layer["settings"].get<std::string>());
        QVERIFY(settings.size() > 1);
        const std::string header =
            quantlens::test::readBytes(std::filesystem::path(out.toStdString()) /
                                       "model.safetensors")
                .substr(0, 1 << 16);
        QVERIFY(header.find("quantlens.target_bits") != std::string::npos);
        run = runCli({"quantize", data("stories260K-hf"), "--method", "gptq", "--target-bits",
                      "1.0", "--calib", data("text/wikitext2-test.txt"), "--nsamples", "4",
                      "--seqlen", "128", "--out", dir.filePath("none")});
        QVERIFY(run.exitCode != 0);
        QVERIFY2(run.err.contains("below the cheapest"), qPrintable(run.err));
        QVERIFY(!std::filesystem::exists(dir.filePath("none").toStdString()));
    }

    void quantizeWritesAnEvaluableModel() {
        QTemporaryDir dir;
        const QString out = dir.filePath("gptq");
        CliRun run = runCli({"quantize", data("stories260K-hf"), "--method", "gptq", "--wbits", "4",
                             "--groupsize", "32", "--calib", data("text/wikitext2-test.txt"),
                             "--nsamples", "4", "--seqlen", "128", "--out", out, "--json"});
        QCOMPARE(run.exitCode, 0);
        const auto result = parseJson(run.out);
        for (const char* key :
             {"bits_per_param", "paper_bits_per_param", "outlier_fraction", "seconds"})
            QVERIFY2(result.contains(key), key);
        // Paper count: 4-bit codes + an fp16 scale and zero per group of 32 columns. Per block,
        // 171520/5 parameters have 64 inputs (2 groups); down_proj's 11008 have 172 (6 groups,
        // the last partial).
        const double blockBits = 34304.0 * (4 + 32.0 * 2 / 64) + 11008.0 * (4 + 32.0 * 6 / 172);
        QVERIFY(std::abs(result["paper_bits_per_param"].get<double>() - blockBits / 45312.0) <
                1e-9);
        // Stored: codes padded to whole words per row, scales and zeros as F16.
        const double blockBytes = 2 * (64 * 8 * 4 + 64 * 2 * 4) + 2 * (32 * 8 * 4 + 32 * 2 * 4) +
                                  2 * (172 * 8 * 4 + 172 * 2 * 4) + (64 * 22 * 4 + 64 * 6 * 4);
        QVERIFY(std::abs(result["bits_per_param"].get<double>() - blockBytes * 8 / 45312.0) < 1e-9);
        QCOMPARE(result["layers"].size(), std::size_t(35));
        run = runCli({"eval", out, "--text", data("text/tinystories-valid-excerpt.txt"), "--json"});
        QCOMPARE(run.exitCode, 0);
        const double ppl = parseJson(run.out)["ppl"].get<double>();
        QVERIFY2(ppl > 5.461168 && ppl < 7.0,
                 qPrintable(QString::number(ppl))); // worse than fp32, still sane
    }

    // The measure of a bit budget: on the sweep, each budget run spends no more than its
    // target and beats every uniform run of the method that spends no more.
    void sweepBudgetsBeatUniformRunsWithinTheirBits() {
        QTemporaryDir dir;
        // Eight runs and a measurement: more than runCli's two minutes on a loaded machine.
        const CliRun run = quantlens::test::runCli(
            {"sweep", data("stories260K-hf"), "--calib", data("text/wikitext2-test.txt"), "--eval",
             data("text/tinystories-valid-excerpt.txt"), "--nsamples", "8", "--seqlen", "128",
             "--grid", "gptq:wbits=2,3,4:groupsize=32,128", "--target-bits", "3.5,4.0", "--out",
             dir.filePath("s.csv"), "--json"},
            600000);
        QCOMPARE(run.exitCode, 0);
        const auto rows = parseJson(run.out);
        QCOMPARE(rows.size(), std::size_t(1 + 6 + 2));
        for (const double target : {3.5, 4.0}) {
            const std::string name =
                "budget " + std::to_string(target).substr(0, 4) + " bits over 6 settings";
            const auto budget = std::find_if(rows.begin(), rows.end(), [&](const auto& r) {
                return r["settings"].template get<std::string>() == name;
            });
            QVERIFY2(budget != rows.end(), name.c_str());
            QVERIFY((*budget)["paper_bits_per_param"].get<double>() <= target);
            QCOMPARE((*budget)["target_bits"].get<double>(), target);
            int rivals = 0;
            for (const auto& r : rows)
                if (r["method"] == "gptq" && r["wbits"].get<int>() > 0 &&
                    r["paper_bits_per_param"].get<double>() <= target) {
                    ++rivals;
                    QVERIFY2((*budget)["ppl"].get<double>() < r["ppl"].get<double>(),
                             r["settings"].get<std::string>().c_str());
                }
            QVERIFY(rivals > 0);
        }
    }

    void quantizeSqueezeLlmCountsLutsAndSparseValues() {
        QTemporaryDir dir;
        const QString out = dir.filePath("squeezellm");
        CliRun run = runCli({"quantize", data("stories260K-hf"), "--method", "squeezellm",
                             "--wbits", "3", "--sparse-percent", "0.40", "--sensitive-percent",
                             "0.05", "--calib", data("text/wikitext2-test.txt"), "--nsamples", "4",
                             "--seqlen", "128", "--out", out, "--json"});
        QCOMPARE(run.exitCode, 0);
        const auto result = parseJson(run.out);
        QCOMPARE(result["method"].get<std::string>(), std::string("squeezellm"));
        // Per block: q 64×64, k 32×64, v 32×64, o 64×64, gate/up 172×64, down 64×172. Each layer
        // stores 3-bit codes padded to whole words per row, an fp16 LUT of 8 per row, and CSR
        // row pointers plus an fp16 value and a column per sparse value (round(0.40% n) +
        // round(0.05% n)), the index arrays in 1 or 2 bytes as their largest value needs.
        const int shapes[7][2] = {{64, 64},  {32, 64},  {32, 64}, {64, 64},
                                  {172, 64}, {172, 64}, {64, 172}};
        double bytes = 0, paperBits = 0, sparse = 0;
        for (const auto& [rows, cols] : shapes) {
            const double n = double(rows) * cols;
            const double nnz = std::llround(0.004 * n) + std::llround(0.0005 * n);
            const auto width = [](double largest) { return largest <= 255 ? 1.0 : 2.0; };
            bytes += rows * std::ceil(cols * 3 / 32.0) * 4 + rows * 8 * 2 +
                     (rows + 1) * width(nnz) + nnz * (2 + width(cols - 1));
            paperBits += n * (3 + 16.0 * 8 / cols) + 32 * nnz;
            sparse += nnz;
        }
        QVERIFY(std::abs(result["bits_per_param"].get<double>() - bytes * 8 / 45312.0) < 1e-9);
        QVERIFY(std::abs(result["paper_bits_per_param"].get<double>() - paperBits / 45312.0) <
                1e-9);
        QVERIFY(std::abs(result["outlier_fraction"].get<double>() - sparse / 45312.0) < 1e-12);
        run = runCli({"eval", out, "--text", data("text/tinystories-valid-excerpt.txt"), "--json"});
        QCOMPARE(run.exitCode, 0);
        const double ppl = parseJson(run.out)["ppl"].get<double>();
        QVERIFY2(ppl > 5.461168 && ppl < 8.0, qPrintable(QString::number(ppl)));
    }

    // The comparison SqueezeLLM's paper makes: at the same wbits, Fisher-weighted non-uniform
    // codes with 0.45% sparse beat per-channel RTN and GPTQ.
    void squeezeLlmBeatsPerChannelBaselines() {
        QTemporaryDir dir;
        const CliRun run =
            runCli({"sweep", data("stories260K-hf"), "--calib", data("text/wikitext2-test.txt"),
                    "--eval", data("text/tinystories-valid-excerpt.txt"), "--nsamples", "16",
                    "--seqlen", "256", "--grid", "rtn:wbits=3:groupsize=0 gptq:wbits=3:groupsize=0",
                    "--grid", "squeezellm:wbits=3:sparse-percent=0.40:sensitive-percent=0.05",
                    "--out", dir.filePath("runs.csv"), "--json"});
        QCOMPARE(run.exitCode, 0);
        const auto rows = parseJson(run.out);
        QCOMPARE(rows.size(), std::size_t(4));
        QCOMPARE(rows[3]["method"].get<std::string>(), std::string("squeezellm"));
        const double squeeze = rows[3]["ppl"].get<double>();
        QVERIFY2(squeeze < rows[1]["ppl"].get<double>() && squeeze < rows[2]["ppl"].get<double>(),
                 qPrintable(QString("squeezellm %1, rtn %2, gptq %3")
                                .arg(squeeze)
                                .arg(rows[1]["ppl"].get<double>())
                                .arg(rows[2]["ppl"].get<double>())));
    }

    void sweepWritesOneRowPerRun() {
        QTemporaryDir dir;
        const QString csv = dir.filePath("runs.csv");
        const CliRun run =
            runCli({"sweep", data("stories260K-hf"), "--calib", data("text/wikitext2-test.txt"),
                    "--eval", data("text/tinystories-valid-excerpt.txt"), "--nsamples", "4",
                    "--seqlen", "128", "--grid", "rtn:wbits=3,4", "--grid",
                    "spqr:outlier-threshold=0.2", "--out", csv, "--json"});
        QCOMPARE(run.exitCode, 0);
        const auto rows = parseJson(run.out);
        QCOMPARE(rows.size(), std::size_t(4)); // baseline + 3 runs
        QCOMPARE(rows[0]["method"].get<std::string>(), std::string("none"));
        QVERIFY(std::abs(rows[0]["ppl"].get<double>() - 5.461168) < 1e-5 * 5.461168);
        QVERIFY(rows[1]["ppl"].get<double>() >
                rows[2]["ppl"].get<double>()); // 3-bit RTN worse than 4-bit
        QVERIFY(rows[3]["outlier_fraction"].get<double>() > 0.0);
        // The baseline is not compared with itself; every run is, with llama.cpp's figures.
        QVERIFY(rows[0]["kl_mean"].is_null() && rows[0]["target_bits"].is_null());
        for (std::size_t i = 1; i < rows.size(); ++i) {
            QVERIFY(rows[i]["kl_mean"].get<double>() > 0.0);
            QVERIFY(rows[i]["kl_p99"].get<double>() > rows[i]["kl_median"].get<double>());
            QVERIFY(rows[i]["top1_agreement"].get<double>() > 0.3 &&
                    rows[i]["top1_agreement"].get<double>() < 1.0);
            QVERIFY(std::abs(rows[i]["base_ppl"].get<double>() - rows[0]["ppl"].get<double>()) <
                    1e-9);
        }
        // 4-bit RTN agrees with the unquantized model more often than 3-bit, and moves less.
        QVERIFY(rows[2]["top1_agreement"].get<double>() > rows[1]["top1_agreement"].get<double>());
        QVERIFY(rows[2]["kl_p99"].get<double>() < rows[1]["kl_p99"].get<double>());
        QFile file(csv);
        QVERIFY(file.open(QIODevice::ReadOnly));
        const QStringList lines = QString::fromUtf8(file.readAll()).trimmed().split('\n');
        QCOMPARE(lines.size(), 5);
        QCOMPARE(lines[0], QString("method,settings,wbits,bits_per_param,paper_bits_per_param,"
                                   "outlier_fraction,ppl,base_ppl,ppl_ratio,ppl_ratio_err,kl_mean,"
                                   "kl_median,kl_p99,kl_max,top1_agreement,dp_mean,dp_p1,dp_p99,"
                                   "target_bits,seconds,run"));
        // Unmeasured figures are empty fields, not "nan".
        QVERIFY(lines[1].startsWith("none,\"unquantized\",0,"));
        QVERIFY(!lines[1].contains("nan") && lines[1].contains(",,,,"));
    }

    // A sweep in two shards, merged: the rows of the whole sweep in its order, each as the whole
    // sweep computed it (only the seconds differ).
    void shardedSweepMergesIntoTheWholeSweep() {
        QTemporaryDir dir;
        const QStringList common = {"sweep",      data("stories260K-hf"),
                                    "--calib",    data("text/wikitext2-test.txt"),
                                    "--eval",     data("text/tinystories-valid-excerpt.txt"),
                                    "--nsamples", "4",
                                    "--seqlen",   "128",
                                    "--grid",     "rtn:wbits=2,3,4 gptq:wbits=3"};
        for (const QString part : {"whole", "1/2", "2/2"}) {
            QStringList arguments = common;
            if (part != "whole") arguments << "--shard" << part;
            arguments << "--out" << dir.filePath(QString(part).replace('/', '-') + ".csv");
            QCOMPARE(runCli(arguments).exitCode, 0);
        }
        const CliRun merge = runCli({"sweep-merge", dir.filePath("2-2.csv"),
                                     dir.filePath("1-2.csv"), "--out", dir.filePath("merged.csv")});
        QCOMPARE(merge.exitCode, 0);
        QVERIFY2(merge.out.contains("(5 rows)"), qPrintable(merge.out));
        const auto withoutSeconds = [&](const QString& name) {
            QFile file(dir.filePath(name));
            if (!file.open(QIODevice::ReadOnly)) return QStringList{"unreadable " + name};
            QStringList lines = QString::fromUtf8(file.readAll()).trimmed().split('\n');
            for (QString& line : lines) {
                QStringList fields = line.split(',');
                fields.removeAt(fields.size() - 2); // seconds
                line = fields.join(',');
            }
            return lines;
        };
        const QStringList whole = withoutSeconds("whole.csv");
        QCOMPARE(whole.size(), 6);
        QVERIFY(whole[0].endsWith(",run"));
        QCOMPARE(withoutSeconds("merged.csv"), whole);
        // Shard 1 holds the baseline and runs 1 and 3; shard 2 runs 2 and 4.
        QCOMPARE(withoutSeconds("1-2.csv").size(), 4);
        QCOMPARE(withoutSeconds("2-2.csv").size(), 3);

        const CliRun twice = runCli({"sweep-merge", dir.filePath("1-2.csv"),
                                     dir.filePath("1-2.csv"), "--out", dir.filePath("bad.csv")});
        QCOMPARE(twice.exitCode, 1);
        QVERIFY2(twice.err.contains(": run 0 is also in "), qPrintable(twice.err));
        const CliRun missing =
            runCli({"sweep-merge", dir.filePath("2-2.csv"), "--out", dir.filePath("bad.csv")});
        QCOMPARE(missing.exitCode, 1);
        QVERIFY2(missing.err.contains("run 0 is in none of the files"), qPrintable(missing.err));
        QVERIFY(!QFile::exists(dir.filePath("bad.csv")));
        QCOMPARE(
            runCli({"sweep", data("stories260K-hf"), "--calib", data("text/wikitext2-test.txt"),
                    "--eval", data("text/tinystories-valid-excerpt.txt"), "--grid", "rtn",
                    "--shard", "3/2", "--out", dir.filePath("bad.csv")})
                .exitCode,
            1);
    }

    // quantize --resume killed with SIGKILL at a random block (no chance to clean up), then run
    // again: the checkpoint is byte for byte an uninterrupted run's, and neither the journal nor
    // the killed process's staging directory is left.
    void killedQuantizeResumesToTheSameBytes() {
        QTemporaryDir dir;
        const QStringList arguments = {"quantize",   data("stories260K-hf"),
                                       "--method",   "spqr",
                                       "--calib",    data("text/wikitext2-test.txt"),
                                       "--nsamples", "16",
                                       "--seqlen",   "256",
                                       "--format",   "quantlens"};
        QCOMPARE(runCli(QStringList(arguments) << "--out" << dir.filePath("full")).exitCode, 0);

        const int killAt = QRandomGenerator::global()->bounded(1, 4); // blocks 1–3 of 5
        qInfo("SIGKILL once block %d is journaled", killAt);
        const QString journaled =
            dir.filePath(QString("out.resume/block-%1.safetensors").arg(killAt, 5, 10, QChar('0')));
        QProcess process;
        process.start(QString::fromStdString(quantlens::test::cliPath().string()),
                      QStringList(arguments) << "--out" << dir.filePath("out") << "--resume");
        QVERIFY(process.waitForStarted());
        QDeadlineTimer deadline(120000);
        while (!QFile::exists(journaled) && !deadline.hasExpired() &&
               process.state() == QProcess::Running)
            QThread::msleep(2);
        QVERIFY2(QFile::exists(journaled), "the run never journaled the block");
        ::kill(static_cast<pid_t>(process.processId()), SIGKILL);
        QVERIFY(process.waitForFinished(30000));
        QCOMPARE(process.exitStatus(), QProcess::CrashExit);
        QVERIFY(!QFile::exists(dir.filePath("out")));

        const CliRun resumed =
            runCli(QStringList(arguments) << "--out" << dir.filePath("out") << "--resume");
        QCOMPARE(resumed.exitCode, 0);
        for (const char* file : {"model.safetensors", "config.json"}) {
            QFile a(dir.filePath(QString("out/") + file)), b(dir.filePath(QString("full/") + file));
            QVERIFY(a.open(QIODevice::ReadOnly) && b.open(QIODevice::ReadOnly));
            QVERIFY2(a.readAll() == b.readAll(), file);
        }
        QCOMPARE(QDir(dir.path()).entryList(QDir::AllEntries | QDir::Hidden | QDir::NoDotAndDotDot),
                 (QStringList{"full", "out"}));

        // Settings other than the journal's are refused, naming the journal and the reason.
        process.start(QString::fromStdString(quantlens::test::cliPath().string()),
                      QStringList(arguments) << "--out" << dir.filePath("again") << "--resume");
        QVERIFY(process.waitForStarted());
        deadline = QDeadlineTimer(120000);
        const QString first = dir.filePath("again.resume/block-00001.safetensors");
        while (!QFile::exists(first) && !deadline.hasExpired() &&
               process.state() == QProcess::Running)
            QThread::msleep(2);
        ::kill(static_cast<pid_t>(process.processId()), SIGKILL);
        QVERIFY(process.waitForFinished(30000));
        const CliRun other =
            runCli(QStringList(arguments) << "--wbits"
                                          << "4"
                                          << "--out" << dir.filePath("again") << "--resume");
        QCOMPARE(other.exitCode, 1);
        QVERIFY2(other.err.contains("again.resume: cannot resume: it quantized with other "
                                    "settings"),
                 qPrintable(other.err));
    }

    // SIGTERM (as Ctrl-C's SIGINT) cancels the running job: the sweep stops with status 130, its
    // CSV holds only whole rows of the runs that finished, and no temporary file is left.
    void terminatedSweepKeepsFinishedRows() {
        QTemporaryDir dir;
        const QString csv = dir.filePath("runs.csv");
        QProcess process;
        process.start(QString::fromStdString(quantlens::test::cliPath().string()),
                      {"sweep", data("stories260K-hf"), "--calib", data("text/wikitext2-test.txt"),
                       "--eval", data("text/tinystories-valid-excerpt.txt"), "--nsamples", "8",
                       "--seqlen", "128", "--grid",
                       "spqr:outlier-threshold=0.1,0.2,0.3,0.4,0.5,0.6,0.7,0.8,0.9,1,2,3,4,5,6,7",
                       "--out", csv});
        QVERIFY(process.waitForStarted());
        QDeadlineTimer deadline(60000);
        while (!QFile::exists(csv) && !deadline.hasExpired())
            QThread::msleep(20);
        QVERIFY2(QFile::exists(csv), "the sweep never wrote its first rows");
        process.terminate();
        QVERIFY(process.waitForFinished(30000));
        QCOMPARE(process.exitStatus(), QProcess::NormalExit);
        QCOMPARE(process.exitCode(), 130);
        QCOMPARE(QString::fromUtf8(process.readAllStandardError()).trimmed().split('\n').last(),
                 QString("quantlens-cli: cancelled"));
        QFile file(csv);
        QVERIFY(file.open(QIODevice::ReadOnly));
        const QStringList lines = QString::fromUtf8(file.readAll()).trimmed().split('\n');
        QVERIFY(lines.size() >= 2 && lines.size() < 18); // header, baseline, finished runs
        for (const QString& line : lines.mid(1))
            QCOMPARE(line.count(QChar(',')), lines[0].count(QChar(',')));
        QCOMPARE(QDir(dir.path()).entryList(QDir::Files | QDir::Hidden), QStringList{"runs.csv"});
    }

    // A file-size limit (as a full disk) stops quantize's dense writer: a clear error naming the
    // file, status 1, and no output directory left behind.
    void fileSizeLimitLeavesNoOutput() {
        QTemporaryDir dir;
        const QString out = dir.filePath("limited");
        QProcess process;
        process.setChildProcessModifier([] {
            const rlimit limit{64 * 1024, 64 * 1024};
            ::setrlimit(RLIMIT_FSIZE, &limit);
            ::signal(SIGXFSZ, SIG_IGN); // write() then fails with EFBIG instead of a signal
        });
        process.start(QString::fromStdString(quantlens::test::cliPath().string()),
                      {"quantize", data("stories260K-hf"), "--method", "rtn", "--out", out});
        QVERIFY(process.waitForFinished(60000));
        QCOMPARE(process.exitCode(), 1);
        const QString error = QString::fromUtf8(process.readAllStandardError());
        QVERIFY2(error.startsWith("quantlens-cli: " + out) && error.contains("File too large"),
                 qPrintable(error));
        QVERIFY(!QFileInfo::exists(out));
        QCOMPARE(QDir(dir.path()).entryList(QDir::AllEntries | QDir::Hidden | QDir::NoDotAndDotDot),
                 QStringList{});
    }

    void errorsAreReadable() {
        CliRun run = runCli(
            {"eval", "/nonexistent/model", "--text", data("text/tinystories-valid-excerpt.txt")});
        QCOMPARE(run.exitCode, 1);
        QCOMPARE(run.err,
                 QString("quantlens-cli: /nonexistent/model: no such file or directory\n"));

        QTemporaryDir dir;
        QFile bin(dir.filePath("lonely.bin"));
        QFile source(data("stories260K/stories260K.bin"));
        QVERIFY(source.copy(bin.fileName()));
        run =
            runCli({"eval", bin.fileName(), "--text", data("text/tinystories-valid-excerpt.txt")});
        QCOMPARE(run.exitCode, 1);
        QVERIFY2(run.err.contains(
                     "lonely.bin: no tokenizer found beside the checkpoint; pass --tokenizer"),
                 qPrintable(run.err));

        run = runCli({"eval", data("stories260K-hf")});
        QVERIFY(run.exitCode != 0);
        QVERIFY(run.err.contains("--text or --tokens"));
    }

    // --device picks the backend; cuda without a usable GPU (CI) or a CUDA build is an error that
    // says which, never a silent fall-back.
    void deviceSelection() {
        CliRun run = runCli({"--device", "cpu", "devices"});
        QCOMPARE(run.exitCode, 0);
        QVERIFY2(run.out.endsWith("--device: cpu\n"), qPrintable(run.out));

        const bool gpuPresent =
            runCli({"devices"})
                .out.contains(QRegularExpression("^cuda:0 ", QRegularExpression::MultilineOption));
        run = runCli({"--device", "cuda", "devices"});
        if (gpuPresent) {
            QCOMPARE(run.exitCode, 0);
            QVERIFY2(run.out.contains("--device: cuda:0 "), qPrintable(run.out));
        } else {
            QCOMPARE(run.exitCode, 1);
            QVERIFY2(run.err.startsWith("quantlens-cli: device cuda: no usable cuda device: "),
                     qPrintable(run.err));
        }
        run = runCli({"--device", "tpu", "devices"});
        QCOMPARE(run.exitCode, 1);
        QCOMPARE(run.err, QString("quantlens-cli: device tpu: unknown device; choose auto, cpu, "
                                  "cuda, cuda:N\n"));
    }
};

QTEST_GUILESS_MAIN(TestCli)
#include "test_cli.moc"
