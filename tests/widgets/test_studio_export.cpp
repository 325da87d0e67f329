#include "error_text.h"
#include "export_dialog.h"
#include "file_size_limit.h"
#include "gguf_reader.h"
#include "model_export.h"
#include "synthetic_fixtures.h"
#include "test_data.h"

#include "quantlens/core/dtype.h"
#include "quantlens/core/error.h"
#include "quantlens/core/float_tensor.h"
#include "quantlens/core/parallel.h"
#include "quantlens/formats/model_export.h"
#include "quantlens/formats/model_loading.h"
#include "quantlens/formats/quantlens_checkpoint.h"
#include "quantlens/io/safetensors.h"

#include <QComboBox>
#include <QDialogButtonBox>
#include <QJsonDocument>
#include <QJsonObject>
#include <QLabel>
#include <QLineEdit>
#include <QPushButton>
#include <QStandardItemModel>
#include <QTemporaryDir>
#include <QtTest>

#include <algorithm>
#include <cstring>

namespace {

namespace fs = std::filesystem;

void writeGptqShapedModel(const fs::path& directory) {
    quantlens::test::writeGptqShapedModel(directory, 9);
}

std::vector<std::int32_t> randomTokens(int count, int vocab) {
    return quantlens::test::randomTokens(count, vocab, 4);
}

template <typename T>
std::vector<T> rawValues(const quantlens::SafetensorsFile& file, const std::string& name) {
    const quantlens::RawTensorView* tensor = file.findRaw(name);
    if (!tensor) return {};
    std::vector<T> values(tensor->size / sizeof(T));
    std::memcpy(values.data(), tensor->data, tensor->size);
    return values;
}

// q_proj [out, in] from its 4-bit GPTQ tensors, decoded as AutoGPTQ does: eight codes per 32-bit
// word, LSB first, along the input dimension in qweight and the output dimension in qzeros;
// weight = scale · (code − zero), zero = qzero + 1 in the v1 ("gptq") layout.
quantlens::RowMatrix decodeGptq4(const quantlens::SafetensorsFile& file, const std::string& prefix,
                                 int out, int in, bool v1) {
    const auto qweight = rawValues<std::uint32_t>(file, prefix + ".qweight");
    const auto qzeros = rawValues<std::uint32_t>(file, prefix + ".qzeros");
    const auto scales = rawValues<std::uint16_t>(file, prefix + ".scales");
    const auto gIdx = rawValues<std::int32_t>(file, prefix + ".g_idx");
    quantlens::RowMatrix w(out, in);
    for (int o = 0; o < out; ++o)
        for (int i = 0; i < in; ++i) {
            const auto g = std::size_t(gIdx[std::size_t(i)]);
            const auto code = (qweight[std::size_t(i / 8) * out + o] >> (4 * (i % 8))) & 15u;
            const auto zero =
                ((qzeros[g * std::size_t(out / 8) + std::size_t(o / 8)] >> (4 * (o % 8))) & 15u) +
                (v1 ? 1u : 0u);
            w(o, i) = quantlens::f16ToFloat(scales[g * out + o]) *
                      (static_cast<float>(code) - static_cast<float>(zero));
        }
    return w;
}

QJsonObject jsonFile(const QString& path) {
    QFile file(path);
    return file.open(QIODevice::ReadOnly) ? QJsonDocument::fromJson(file.readAll()).object()
                                          : QJsonObject();
}

const quantlens::QuantConfig kGptq = quantlens::GptqConfig{4, 32, 128, 0.01, false};

} // namespace

class TestStudioExport : public QObject {
    Q_OBJECT

private slots:
    void initTestCase();
    void offersEveryEngineFormat();
    void dialogOffersGptqOnlyForRtnAndGptqRuns();
    void writesTheChosenFormat_data();
    void writesTheChosenFormat();
    void refusesGptqForOtherMethods();
    void writesGguf();
    void cancelHalfwayLeavesNothing_data();
    void cancelHalfwayLeavesNothing();
    void fullDiskLeavesNothing();

private:
    QTemporaryDir scratch_;
    fs::path model_;
    std::unique_ptr<quantlens::Model> source_;
    std::vector<std::int32_t> calibration_;
    // The GPTQ run's q_proj of each block as the dense F32 export holds it.
    std::vector<quantlens::RowMatrix> reference_;
};

void TestStudioExport::initTestCase() {
    QLocale::setDefault(QLocale(QLocale::English, QLocale::UnitedStates));
    model_ = fs::path(scratch_.path().toStdString()) / "synthetic";
    writeGptqShapedModel(model_);
    source_ = quantlens::loadModel(model_);
    calibration_ = randomTokens(256, 128);
    const QString reference = scratch_.filePath("reference");
    exportModel(*source_, calibration_, kGptq, {4, 32}, "dense-f32", reference,
                quantlens::Interruption::Restart, quantlens::JobContext{});
    const auto dense = quantlens::loadModel(reference.toStdString());
    for (const quantlens::BlockWeights& block : dense->blocks)
        reference_.push_back(quantlens::FloatTensor(block.wq).matrix());
    QCOMPARE(reference_.size(), std::size_t(2));
}

// The dialog lists exactly the engine's formats, under the engine's names.
void TestStudioExport::offersEveryEngineFormat() {
    QStringList keys;
    for (const ExportFormat& format : exportFormats()) {
        keys << format.key;
        if (!format.key.startsWith("gguf"))
            QCOMPARE(QString::fromStdString(quantlens::exportFormatName(
                         quantlens::parseExportFormat(format.key.toStdString()))),
                     format.key);
        QVERIFY(!format.label.isEmpty());
    }
    // GGUF is a file: exact, or a type the engine's GGUF writer names (ggml's names).
    QCOMPARE(keys, QStringList({"quantlens", "dense-f16", "dense-bf16", "dense-f32", "gptq",
                                "hf-spqr", "gguf", "gguf-q8_0", "gguf-q5_1", "gguf-q4_1",
                                "gguf-f16", "gguf-bf16", "gguf-f32"}));
}

void TestStudioExport::dialogOffersGptqOnlyForRtnAndGptqRuns() {
    const std::vector<quantlens::QuantConfig> runs{
        quantlens::SpqrConfig{}, kGptq, quantlens::RtnConfig{4, 32}, quantlens::SqueezeConfig{}};
    ExportDialog dialog({"spqr w3 g16", "gptq w4 g32", "rtn w4 g32", "squeezellm w4"},
                        exportFormats(), [&](int run, const QString& format) {
                            return exportUnavailable(runs[std::size_t(run)], format);
                        });
    dialog.resize(640, 220);
    dialog.show();
    QVERIFY(QTest::qWaitForWindowExposed(&dialog));
    auto* ok = dialog.findChild<QDialogButtonBox*>()->button(QDialogButtonBox::Ok);
    auto* formats =
        qobject_cast<QStandardItemModel*>(dialog.findChild<QComboBox*>("exportFormat")->model());
    auto* problem = dialog.findChild<QLabel*>("exportProblem");
    QVERIFY(formats && problem);
    dialog.setDirectory("/tmp/out");
    const QList<ExportFormat> listed = exportFormats();
    const int gptq = int(std::find_if(listed.begin(), listed.end(),
                                      [](const ExportFormat& f) { return f.key == "gptq"; }) -
                         listed.begin());

    dialog.setRun(0);
    dialog.setFormat("gptq");
    QVERIFY(!formats->item(gptq)->isEnabled());
    QVERIFY(!ok->isEnabled());
    QVERIFY(problem->isVisible());
    QCOMPARE(dialog.problem(), QString("The GPTQ checkpoint layout holds RTN and GPTQ runs only; "
                                       "this run is SpQR. Export it as a Quantlens checkpoint or "
                                       "as dense safetensors."));
    QCOMPARE(formats->item(gptq)->toolTip(), dialog.problem());
    QVERIFY(dialog.grab().save(quantlens::test::artifactPath("export_dialog.png")));

    for (const int run : {1, 2}) { // GPTQ and RTN runs fit the layout
        dialog.setRun(run);
        QVERIFY(formats->item(gptq)->isEnabled());
        QVERIFY(ok->isEnabled());
        QVERIFY(!problem->isVisible());
        QCOMPARE(dialog.request().format, QString("gptq"));
    }
    dialog.setRun(3);
    QVERIFY(!ok->isEnabled());
    QVERIFY(dialog.problem().contains("this run is SqueezeLLM"));
    dialog.setFormat("dense-bf16"); // every other format holds every method
    QVERIFY(ok->isEnabled());
    for (int i = 0; i < gptq; ++i)
        QVERIFY(formats->item(i)->isEnabled());
    QCOMPARE(dialog.request().run, 3);
    QCOMPARE(dialog.request().format, QString("dense-bf16"));
}

void TestStudioExport::writesTheChosenFormat_data() {
    QTest::addColumn<QString>("format");
    for (const char* format : {"quantlens", "dense-f16", "dense-bf16", "dense-f32", "gptq"})
        QTest::newRow(format) << QString(format);
}

// Each format, reopened: the dtype or layout it names, holding the same quantized weights.
void TestStudioExport::writesTheChosenFormat() {
    QFETCH(QString, format);
    const QString directory = scratch_.filePath(format);
    exportModel(*source_, calibration_, kGptq, {4, 32}, format, directory,
                quantlens::Interruption::Restart, quantlens::JobContext{});
    const fs::path path = directory.toStdString();

    if (format == "gptq") {
        const QJsonObject quantization =
            jsonFile(directory + "/config.json")["quantization_config"].toObject();
        QCOMPARE(quantization["quant_method"].toString(), QString("gptq"));
        QCOMPARE(quantization["bits"].toInt(), 4);
        QCOMPARE(quantization["group_size"].toInt(), 32);
        const QString layout = quantization["checkpoint_format"].toString();
        QVERIFY2(layout == "gptq" || layout == "gptq_v2", qPrintable(layout));
        const quantlens::SafetensorsFile file(path / "model.safetensors",
                                              quantlens::SafetensorsFile::DTypes::Any);
        for (int b = 0; b < 2; ++b) {
            const std::string prefix = "model.layers." + std::to_string(b) + ".self_attn.q_proj";
            QVERIFY(!file.findRaw(prefix + ".weight"));
            QVERIFY(file.findRaw(prefix + ".qweight"));
            QCOMPARE(file.findRaw(prefix + ".qweight")->shape, (std::vector<std::int64_t>{8, 64}));
            QCOMPARE(decodeGptq4(file, prefix, 64, 64, layout == "gptq"),
                     reference_[std::size_t(b)]);
        }
        return;
    }

    const auto model = quantlens::loadModel(path);
    if (format == "quantlens") {
        QVERIFY(quantlens::isQuantlensCheckpoint(path));
        QCOMPARE(
            quantlens::loadModel(path, quantlens::CompressedLayers::Keep)->compressedLayers.size(),
            std::size_t(2));
    } else {
        const quantlens::DType dtype = format == "dense-f16"    ? quantlens::DType::F16
                                       : format == "dense-bf16" ? quantlens::DType::BF16
                                                                : quantlens::DType::F32;
        QVERIFY(model->blocks[0].wq.dtype == dtype);
        QVERIFY(!quantlens::isQuantlensCheckpoint(path));
    }
    // Rounded to the dtype's significand at most: 11 bits (F16), 8 (BF16), exact (F32, quantlens).
    const double tolerance = format == "dense-f16"    ? 0x1p-11
                             : format == "dense-bf16" ? 0x1p-8
                                                      : 0.0;
    for (int b = 0; b < 2; ++b) {
        const quantlens::RowMatrix q =
            quantlens::FloatTensor(model->blocks[std::size_t(b)].wq).matrix();
        const quantlens::RowMatrix& expected = reference_[std::size_t(b)];
        QVERIFY(((q - expected).array().abs() <= tolerance * expected.array().abs()).all());
    }
}

// Refused before any quantizing, with the dialog's sentence, and nothing written.
void TestStudioExport::refusesGptqForOtherMethods() {
    const QString directory = scratch_.filePath("spqr-gptq");
    try {
        exportModel(*source_, calibration_, quantlens::SpqrConfig{}, {4, 32}, "gptq", directory,
                    quantlens::Interruption::Restart, quantlens::JobContext{});
        QFAIL("an SpQR run was written in the GPTQ layout");
    } catch (const quantlens::Error& error) {
        QCOMPARE(QString(error.what()),
                 directory + ": " + exportUnavailable(quantlens::SpqrConfig{}, "gptq"));
    }
    QVERIFY(!QFileInfo::exists(directory));
    try {
        exportModel(*source_, calibration_, kGptq, {4, 32}, "exl2", directory,
                    quantlens::Interruption::Restart, quantlens::JobContext{});
        QFAIL("an unknown format was written");
    } catch (const quantlens::Error& error) {
        QVERIFY2(QString(error.what()).startsWith(directory + ": unknown export format 'exl2'"),
                 error.what());
    }
}

// Names in the scratch directory that mention `stem`: a finished output, or a staging directory
// (".stem.tmp.…") left behind.
QStringList traces(const QString& scratch, const QString& stem) {
    return QDir(scratch)
        .entryList(QDir::AllEntries | QDir::Hidden | QDir::NoDotAndDotDot)
        .filter(stem);
}

void TestStudioExport::cancelHalfwayLeavesNothing_data() {
    writesTheChosenFormat_data();
}

// Cancelled once the quantization is half done: the job stops, and neither the output nor a
// staging directory is left.
void TestStudioExport::cancelHalfwayLeavesNothing() {
    QFETCH(QString, format);
    const QString stem = "cancelled-" + format;
    double reached = 0.0;
    quantlens::JobContext* running = nullptr;
    quantlens::JobContext job([&](double fraction, const std::string&) {
        reached = std::max(reached, fraction);
        if (fraction >= 0.5) running->requestCancel();
    });
    running = &job;
    bool cancelled = false;
    try {
        exportModel(*source_, calibration_, kGptq, {4, 32}, format, scratch_.filePath(stem),
                    quantlens::Interruption::Restart, job);
    } catch (const quantlens::Cancelled&) {
        cancelled = true;
    }
    QVERIFY(cancelled);
    QVERIFY2(reached >= 0.5 && reached < 1.0, qPrintable(QString::number(reached)));
    QCOMPARE(traces(scratch_.path(), stem), QStringList{});
}

// A full disk (a file-size limit in a child process) fails the dense export with the file the
// user named, and leaves nothing.
void TestStudioExport::fullDiskLeavesNothing() {
    const QString directory = scratch_.filePath("full-disk");
    const std::string message = quantlens::test::inChildWithFileSizeLimit(32 * 1024, [&] {
        quantlens::setThreadCount(1); // no OpenMP pool in a forked child
        return quantlens::test::errorOf([&] {
                   exportModel(*source_, calibration_, kGptq, {4, 32}, "dense-f32", directory,
                               quantlens::Interruption::Restart, quantlens::JobContext{});
               })
            .toStdString();
    });
    const std::string expected =
        directory.toStdString() + "/model.safetensors: write failed: File too large";
    QVERIFY2(message.compare(0, expected.size(), expected) == 0, message.c_str());
    QCOMPARE(traces(scratch_.path(), "full-disk"), QStringList{});
}

// GGUF from the studio: one file for llama.cpp. An exact GGUF is greyed out for runs whose
// layers are no block type; GGUF Q8_0 is offered for any run and holds the run's weights within
// Q8_0's rounding (rows of 172, not whole blocks, fall back to F16 as llama.cpp's do).
void TestStudioExport::writesGguf() {
    QUANTLENS_REQUIRE_DATA("stories260K-hf");
    QVERIFY(exportUnavailable(quantlens::SpqrConfig{}, "gguf")
                .startsWith("An exact GGUF holds RTN and GPTQ grids only; this run is SpQR"));
    QVERIFY(exportUnavailable(quantlens::SpqrConfig{}, "gguf-q8_0").isEmpty());
    const auto model = quantlens::loadModel(quantlens::test::dataPath("stories260K-hf"));
    const QString file = scratch_.filePath("stories.gguf");
    const quantlens::RtnConfig rtn{8, 32};
    exportModel(*model, {}, rtn, {4, 32}, "gguf-q8_0", file, quantlens::Interruption::Restart,
                quantlens::JobContext{});
    const quantlens::test::GgufFile gguf(file.toStdString());
    QCOMPARE(gguf.tensor("blk.0.attn_v.weight").type,
             std::uint32_t(quantlens::test::GgmlType::Q8_0));
    QCOMPARE(gguf.tensor("blk.0.ffn_down.weight").type,
             std::uint32_t(quantlens::test::GgmlType::F16));
    const std::vector<float> written = gguf.values("blk.0.attn_v.weight");
    const quantlens::RowMatrix original = quantlens::FloatTensor(model->blocks[0].wv).matrix();
    const float scale = original.cwiseAbs().maxCoeff();
    for (Eigen::Index i = 0; i < original.size(); ++i)
        QVERIFY(std::abs(written[std::size_t(i)] - original.data()[i]) <= scale / 64);
    QCOMPARE(traces(scratch_.path(), "stories.gguf"), QStringList{"stories.gguf"});
}

QTEST_MAIN(TestStudioExport)
#include "test_studio_export.moc"
