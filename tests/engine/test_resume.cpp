// Resumable quantization (issue 20): a run interrupted at a random block and continued from its
// journal writes the bytes an uninterrupted run writes, without replaying the blocks it kept;
// another run's journal is refused with the reason; what killed writers leave is swept up. The
// SIGKILL of a real process is test_cli's.
#include "error_text.h"
#include "test_data.h"

#include "quantlens/core/error.h"
#include "quantlens/formats/model_export.h"
#include "quantlens/formats/model_loading.h"
#include "quantlens/formats/run_journal.h"
#include "quantlens/io/atomic_file.h"
#include "quantlens/io/text_file.h"
#include "quantlens/model/token_streams.h"
#include "quantlens/tokenizer/tokenizer.h"

#include <QTemporaryDir>
#include <QtTest>

#include <random>
#include <sys/wait.h>
#include <unistd.h>

using namespace quantlens;
using quantlens::test::errorOf;
namespace fs = std::filesystem;

Q_DECLARE_METATYPE(quantlens::QuantConfig)
Q_DECLARE_METATYPE(quantlens::ExportFormat)

namespace {

const CalibrationConfig kCalibration{6, 64};

std::vector<std::int32_t> calibrationStream(const Model& model) {
    return tokenizeForProtocol(*openTokenizer(model),
                               readTextFile(test::dataPath("text/tinystories-valid-excerpt.txt")),
                               PerplexityProtocol::Documents, model.config.bosToken, "excerpt");
}

// A job that records every stage it reports and cancels itself when it reaches `cancelAt`.
struct RecordingJob {
    explicit RecordingJob(std::string cancelAt = "")
        : job([this, cancelAt](double, const std::string& stage) {
              stages.push_back(stage);
              if (stage == cancelAt) job.requestCancel();
          }) {}
    std::vector<std::string> stages;
    JobContext job;
};

// A pid no process has: a child that has exited and been reaped.
pid_t deadPid() {
    const pid_t child = ::fork();
    if (child == 0) ::_exit(0);
    ::waitpid(child, nullptr, 0);
    return child;
}

} // namespace

class TestResume : public QObject {
    Q_OBJECT
private slots:
    void initTestCase() { QUANTLENS_REQUIRE_DATA("stories260K-hf"); }

    void resumedRunWritesTheSameBytes_data() {
        QTest::addColumn<QuantConfig>("method");
        QTest::addColumn<ExportFormat>("format");
        QTest::addColumn<bool>("calibrated");
        GptqConfig gptq;
        gptq.actOrder = true;
        QTest::newRow("gptq act-order, quantlens")
            << QuantConfig(gptq) << ExportFormat::Quantlens << true;
        QTest::newRow("spqr, quantlens")
            << QuantConfig(SpqrConfig{}) << ExportFormat::Quantlens << true;
        QTest::newRow("squeezellm, quantlens")
            << QuantConfig(SqueezeConfig{}) << ExportFormat::Quantlens << true;
        QTest::newRow("rtn without calibration, dense f16")
            << QuantConfig(RtnConfig{}) << ExportFormat::DenseF16 << false;
        QTest::newRow("gptq, dense bf16")
            << QuantConfig(GptqConfig{}) << ExportFormat::DenseBf16 << true;
    }

    // Cancelled at a random block, then resumed: the journal kept exactly the blocks before it,
    // the resumed run starts there (no earlier block is quantized again), and the checkpoint and
    // the layer reports equal an uninterrupted run's.
    void resumedRunWritesTheSameBytes() {
        QFETCH(QuantConfig, method);
        QFETCH(ExportFormat, format);
        QFETCH(bool, calibrated);
        const auto model = loadModel(test::dataPath("stories260K-hf"));
        const std::vector<std::int32_t> stream =
            calibrated ? calibrationStream(*model) : std::vector<std::int32_t>{};
        QTemporaryDir dir;
        const fs::path root = dir.path().toStdString();
        const QuantizeResult uninterrupted = quantizeToDirectory(
            *model, stream, method, kCalibration, format, root / "full", {}, JobContext{});

        const int blocks = model->config.layerCount;
        std::random_device seed;
        const int interruptedAt = std::uniform_int_distribution<int>(1, blocks - 1)(seed);
        qInfo("interrupted at block %d of %d", interruptedAt, blocks);
        RecordingJob cancelling("block " + std::to_string(interruptedAt) + " v_proj");
        QCOMPARE(errorOf([&] {
                     quantizeToDirectory(*model, stream, method, kCalibration, format, root / "out",
                                         {}, cancelling.job, Interruption::Resume);
                 }),
                 QString("cancelled"));
        QVERIFY(!fs::exists(root / "out"));
        const auto interrupted = RunJournal::interruptedRun(root / "out");
        QVERIFY(interrupted);
        QCOMPARE(interrupted->completedBlocks, interruptedAt);
        QCOMPARE(interrupted->blocks, blocks);

        RecordingJob resuming;
        const QuantizeResult resumed =
            quantizeToDirectory(*model, stream, method, kCalibration, format, root / "out", {},
                                resuming.job, Interruption::Resume);
        const auto firstLayer =
            std::find_if(resuming.stages.begin(), resuming.stages.end(),
                         [](const std::string& stage) { return stage.starts_with("block "); });
        QVERIFY(firstLayer != resuming.stages.end());
        QCOMPARE(*firstLayer, "block " + std::to_string(interruptedAt) + " q_proj");

        for (const char* file : {"model.safetensors", "config.json"})
            QVERIFY2(test::readBytes(root / "out" / file) == test::readBytes(root / "full" / file),
                     file);
        QCOMPARE(resumed.layers.size(), uninterrupted.layers.size());
        for (std::size_t i = 0; i < resumed.layers.size(); ++i) {
            const LayerReport &a = resumed.layers[i], &b = uninterrupted.layers[i];
            QCOMPARE(a.storedBytes, b.storedBytes);
            QCOMPARE(a.outliers, b.outliers);
            QVERIFY(a.relativeOutputError == b.relativeOutputError ||
                    (std::isnan(a.relativeOutputError) && std::isnan(b.relativeOutputError)));
        }
        QCOMPARE(resumed.paperBitsPerParameter, uninterrupted.paperBitsPerParameter);
        // The journal has served its purpose; nothing else is left beside the outputs.
        QCOMPARE(test::entries(root), (std::vector<std::string>{"full", "out"}));
    }

    // A journal is continued only by the same quantization; anything else is refused, says why,
    // and leaves the journal for the run it belongs to.
    void resumeRefusesAnotherRun() {
        QTemporaryDir dir;
        const fs::path root = dir.path().toStdString();
        fs::copy(test::dataPath("stories260K-hf"), root / "model");
        const auto model = loadModel(root / "model");
        const std::vector<std::int32_t> stream = calibrationStream(*model);
        const fs::path out = root / "out";
        RecordingJob cancelling("block 2 q_proj");
        QCOMPARE(errorOf([&] {
                     quantizeToDirectory(*model, stream, GptqConfig{}, kCalibration,
                                         ExportFormat::Quantlens, out, {}, cancelling.job,
                                         Interruption::Resume);
                 }),
                 QString("cancelled"));
        const QString journal = QString::fromStdString(RunJournal::directoryFor(out).string());
        const auto resume = [&](const QuantConfig& method, std::span<const std::int32_t> text,
                                const CalibrationConfig& calibration, ExportFormat format) {
            return errorOf([&] {
                quantizeToDirectory(*model, text, method, calibration, format, out, {},
                                    JobContext{}, Interruption::Resume);
            });
        };
        GptqConfig other;
        other.wbits = 3;
        QVERIFY(resume(other, stream, kCalibration, ExportFormat::Quantlens)
                    .startsWith(journal + ": cannot resume: it quantized with other settings ("));
        QCOMPARE(resume(GptqConfig{}, std::span(stream).subspan(1), kCalibration,
                        ExportFormat::Quantlens),
                 journal + ": cannot resume: its calibration text was different; remove this "
                           "directory to start over");
        QVERIFY(resume(GptqConfig{}, stream, {8, 64}, ExportFormat::Quantlens)
                    .startsWith(journal + ": cannot resume: it calibrated on other sequences"));
        QCOMPARE(resume(GptqConfig{}, stream, kCalibration, ExportFormat::DenseF32),
                 journal + ": cannot resume: it was writing \"quantlens\", not \"dense-f32\"; "
                           "remove this directory to start over");
        fs::last_write_time(root / "model/config.json",
                            fs::last_write_time(root / "model/config.json") +
                                std::chrono::seconds(5));
        QCOMPARE(resume(GptqConfig{}, stream, kCalibration, ExportFormat::Quantlens),
                 journal + ": cannot resume: the model's files have changed since (sizes or "
                           "modification times); remove this directory to start over");
        QCOMPARE(RunJournal::interruptedRun(out)->completedBlocks, 2);
        QVERIFY(!fs::exists(out));
    }

    // A damaged block file is an error naming it, never a silently different checkpoint.
    void damagedJournalIsAnError() {
        const auto model = loadModel(test::dataPath("stories260K-hf"));
        const std::vector<std::int32_t> stream = calibrationStream(*model);
        QTemporaryDir dir;
        const fs::path out = fs::path(dir.path().toStdString()) / "out";
        RecordingJob cancelling("block 3 q_proj");
        errorOf([&] {
            quantizeToDirectory(*model, stream, SpqrConfig{}, kCalibration, ExportFormat::Quantlens,
                                out, {}, cancelling.job, Interruption::Resume);
        });
        const fs::path block = RunJournal::directoryFor(out) / "block-00001.safetensors";
        const std::string bytes = test::readBytes(block);
        test::writeBytes(block, bytes.substr(0, bytes.size() - 100));
        const QString error = errorOf([&] {
            quantizeToDirectory(*model, stream, SpqrConfig{}, kCalibration, ExportFormat::Quantlens,
                                out, {}, JobContext{}, Interruption::Resume);
        });
        QVERIFY2(error.startsWith(QString::fromStdString(block.string()) + ": "),
                 qPrintable(error));
        QVERIFY(!fs::exists(out));
    }

    // What a killed writer staged beside its target is removed by the next writer of that target;
    // a live process's staging is left alone.
    void abandonedStagingIsSweptUp() {
        QTemporaryDir dir;
        const fs::path root = dir.path().toStdString();
        const std::string dead = std::to_string(deadPid());
        const std::string live = std::to_string(::getpid());
        fs::create_directory(root / (".out.tmp." + dead + ".0"));
        test::writeBytes(root / (".out.tmp." + dead + ".0") / "model.safetensors", "partial");
        test::writeBytes(root / (".out.tmp." + live + ".7"), "someone else's");
        test::writeBytes(root / (".other.tmp." + dead + ".1"), "another target's");
        AtomicFile file(root / "out");
        file.write("x", 1);
        file.commit();
        QCOMPARE(test::entries(root), (std::vector<std::string>{".other.tmp." + dead + ".1",
                                                                ".out.tmp." + live + ".7", "out"}));
    }
};

QTEST_APPLESS_MAIN(TestResume)
#include "test_resume.moc"
