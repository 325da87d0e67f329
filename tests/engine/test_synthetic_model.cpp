#include "test_data.h"

#include "quantlens/core/error.h"
#include "quantlens/core/float_tensor.h"
#include "quantlens/formats/model_loading.h"
#include "quantlens/model/model.h"
#include "quantlens/model/synthetic_model.h"
#include "quantlens/runtime/transformer.h"

#include <QCryptographicHash>
#include <QTemporaryDir>

#include <algorithm>
#include <bit>
#include <cmath>
#include <cstring>
#include <fstream>

using namespace quantlens;
namespace fs = std::filesystem;

using quantlens::test::readBytes;

namespace {

fs::path writeTiny(const QTemporaryDir& dir, const std::string& name, const std::string& dtype,
                   std::uint64_t seed, int layers = 4) {
    SyntheticModelSpec spec = syntheticModelPreset("tiny");
    spec.dtype = dtype;
    spec.seed = seed;
    spec.layers = layers;
    const fs::path out = fs::path(dir.path().toStdString()) / name;
    writeSyntheticModel(spec, out, JobContext{});
    return out;
}

// fp32 → bf16 with round-to-nearest-even, independent of the engine.
std::uint16_t toBf16(float value) {
    const std::uint32_t bits = std::bit_cast<std::uint32_t>(value);
    return static_cast<std::uint16_t>((bits + 0x7fffu + ((bits >> 16) & 1u)) >> 16);
}

double median(std::vector<double> values) {
    std::nth_element(values.begin(), values.begin() + values.size() / 2, values.end());
    return values[values.size() / 2];
}

} // namespace

class TestSyntheticModel : public QObject {
    Q_OBJECT
private:
    QTemporaryDir dir_;
    fs::path f16_, f32_;

private slots:
    void initTestCase() {
        QVERIFY(dir_.isValid());
        f16_ = writeTiny(dir_, "f16", "F16", 1);
        f32_ = writeTiny(dir_, "f32", "F32", 1);
    }

    void tinyPresetLoadsWithItsShapes() {
        const auto model = loadModel(f16_);
        const ModelConfig& c = model->config;
        QCOMPARE(c.hiddenSize, 256);
        QCOMPARE(c.intermediateSize, 688);
        QCOMPARE(c.layerCount, 4);
        QCOMPARE(c.headCount, 4);
        QCOMPARE(c.kvHeadCount, 4);
        QCOMPARE(c.headDim, 64);
        QCOMPARE(c.vocabSize, 512);
        QCOMPARE(c.rmsNormEps, 1e-5f);
        QCOMPARE(c.ropeTheta, 10000.0f);
        QVERIFY(!c.tiedEmbeddings);
        QCOMPARE(model->storedTensors.size(), std::size_t(1 + 9 * 4 + 2));
        QCOMPARE(model->parameterCount(),
                 std::int64_t(2 * 512 * 256 + 256 + 4 * (2 * 256 + 4 * 256 * 256 + 3 * 688 * 256)));
        QCOMPARE(model->blocks[3].down.shape, (std::vector<std::int64_t>{256, 688}));
        QCOMPARE(model->lmHead.shape, (std::vector<std::int64_t>{512, 256}));
        QVERIFY(model->lmHead.data != model->embedding.data);
        for (const TensorView& t : model->storedTensors)
            QCOMPARE(t.dtype, DType::F16);
        const auto seven = syntheticModelPreset("7b");
        QCOMPARE(seven.hiddenSize, 4096);
        QCOMPARE(seven.intermediateSize, 11008);
        QCOMPARE(seven.layers, 32);
        QCOMPARE(seven.heads, 32);
        QCOMPARE(seven.vocab, 32000);
    }

    void sameSeedGivesTheSameBytes() {
        const fs::path again = writeTiny(dir_, "again", "F16", 1);
        QVERIFY(readBytes(again / "model.safetensors") == readBytes(f16_ / "model.safetensors"));
        QVERIFY(readBytes(again / "config.json") == readBytes(f16_ / "config.json"));

        // The bytes are fixed on every platform: this digest changes only if the generator does.
        QCOMPARE(QCryptographicHash::hash(
                     QByteArray::fromStdString(readBytes(f16_ / "model.safetensors")),
                     QCryptographicHash::Sha256)
                     .toHex()
                     .left(16),
                 QByteArray("a968f4b998cb0621"));
    }

    void differentSeedGivesDifferentWeights() {
        const auto a = loadModel(f16_);
        const auto b = loadModel(writeTiny(dir_, "seed2", "F16", 2));
        for (std::size_t i = 0; i < a->storedTensors.size(); ++i) {
            const TensorView &x = a->storedTensors[i], &y = b->storedTensors[i];
            QCOMPARE(x.name, y.name);
            QVERIFY2(std::memcmp(x.data, y.data, x.byteSize()) != 0, x.name.c_str());
        }
    }

    // A tensor depends only on the seed, its name and its shape: fewer layers give a prefix of the
    // same model.
    void fewerLayersGiveAPrefix() {
        const auto full = loadModel(f16_);
        const auto two = loadModel(writeTiny(dir_, "two", "F16", 1, 2));
        QCOMPARE(two->config.layerCount, 2);
        for (const TensorView& t : two->storedTensors) {
            const auto it = std::find_if(full->storedTensors.begin(), full->storedTensors.end(),
                                         [&](const TensorView& u) { return u.name == t.name; });
            QVERIFY2(it != full->storedTensors.end(), t.name.c_str());
            QVERIFY2(std::memcmp(t.data, it->data, t.byteSize()) == 0, t.name.c_str());
        }
    }

    // F16 and BF16 hold the F32 weights rounded to nearest even.
    void dtypesAreRoundingsOfTheSameWeights() {
        const auto wide = loadModel(f32_);
        const auto half = loadModel(f16_);
        const auto brain = loadModel(writeTiny(dir_, "bf16", "BF16", 1));
        for (std::size_t i = 0; i < wide->storedTensors.size(); ++i) {
            const TensorView& w = wide->storedTensors[i];
            const FloatTensor f(w);
            for (std::int64_t k = 0; k < w.elementCount(); ++k) {
                const _Float16 h = static_cast<_Float16>(f.data()[k]);
                std::uint16_t hBits, bBits;
                std::memcpy(&hBits, &h, 2);
                const std::uint16_t expectedB = toBf16(f.data()[k]);
                std::memcpy(&bBits, brain->storedTensors[i].data + 2 * k, 2);
                QCOMPARE(std::memcmp(half->storedTensors[i].data + 2 * k, &hBits, 2), 0);
                QCOMPARE(bBits, expectedB);
            }
        }
    }

    // Heavy tails, a handful of outlier columns (×10–20) and rows (×4–8), std ≈ 0.02, norms ≈ 1.
    void weightsLookLikeAnLlm() {
        const auto model = loadModel(f32_);
        std::vector<double> pooled; // weights outside outlier rows and columns, every matrix
        for (const BlockWeights& b : model->blocks) {
            for (const TensorView* t : {&b.wq, &b.wk, &b.wv, &b.wo, &b.gate, &b.up, &b.down}) {
                const RowMatrix m = FloatTensor(*t).matrix();
                QVERIFY2(m.allFinite(), t->name.c_str());
                // Outliers by the median magnitude of a column or row, which one extreme weight
                // of the heavy tail cannot move.
                std::vector<double> columns(m.cols()), rows(m.rows()), values;
                for (Eigen::Index c = 0; c < m.cols(); ++c) {
                    values.clear();
                    for (Eigen::Index r = 0; r < m.rows(); ++r)
                        values.push_back(std::abs(m(r, c)));
                    columns[c] = median(values);
                }
                const double typicalColumn = median(columns);
                std::vector<double> sorted = columns;
                std::sort(sorted.rbegin(), sorted.rend());
                // Exactly four columns stand out, each by about its factor of 10 to 20.
                QVERIFY2(sorted[3] > 7 * typicalColumn, t->name.c_str());
                QVERIFY2(sorted[0] < 25 * typicalColumn, t->name.c_str());
                QVERIFY2(sorted[4] < 1.5 * typicalColumn, t->name.c_str());
                const auto plain = [&](Eigen::Index c) { return columns[c] < 2 * typicalColumn; };

                for (Eigen::Index r = 0; r < m.rows(); ++r) {
                    values.clear();
                    for (Eigen::Index c = 0; c < m.cols(); ++c)
                        if (plain(c)) values.push_back(std::abs(m(r, c)));
                    rows[r] = median(values);
                }
                const double typicalRow = median(rows);
                const auto outlierRows = std::count_if(
                    rows.begin(), rows.end(), [&](double n) { return n > 2 * typicalRow; });
                QVERIFY2(outlierRows == 2, t->name.c_str());
                for (Eigen::Index r = 0; r < m.rows(); ++r)
                    for (Eigen::Index c = 0; c < m.cols(); ++c)
                        if (plain(c) && rows[r] < 2 * typicalRow) pooled.push_back(m(r, c));
            }
            for (const TensorView* t : {&b.attnNorm, &b.ffnNorm}) {
                const Eigen::VectorXf v = FloatTensor(*t).vector();
                const double mean = v.cast<double>().mean();
                const double std = std::sqrt((v.cast<double>().array() - mean).square().mean());
                QVERIFY2(std::abs(mean - 1) < 0.005, t->name.c_str());
                QVERIFY2(std > 0.012 && std < 0.025, t->name.c_str());
            }
        }
        double mean = 0, m2 = 0, m4 = 0;
        for (const double w : pooled)
            mean += w;
        mean /= pooled.size();
        for (const double w : pooled) {
            const double d = (w - mean) * (w - mean);
            m2 += d;
            m4 += d * d;
        }
        m2 /= pooled.size();
        m4 /= pooled.size();
        const double kurtosis = m4 / (m2 * m2);
        qInfo("%zu weights: std %.5f, kurtosis %.2f", pooled.size(), std::sqrt(m2), kurtosis);
        QVERIFY(std::abs(mean) < 1e-4);
        QVERIFY(std::sqrt(m2) > 0.018 && std::sqrt(m2) < 0.022);
        QVERIFY2(kurtosis > 6, qPrintable(QString::number(kurtosis))); // a normal has 3
    }

    void forwardPassIsFinite() {
        const auto model = loadModel(f16_);
        std::vector<std::int32_t> tokens(64);
        for (std::size_t i = 0; i < tokens.size(); ++i)
            tokens[i] = static_cast<std::int32_t>((i * 37 + 1) % 512);
        KvCache cache(model->config, 64);
        const RowMatrix logits = Transformer(*model).forward(tokens, cache);
        QCOMPARE(logits.rows(), Eigen::Index(64));
        QCOMPARE(logits.cols(), Eigen::Index(512));
        QVERIFY(logits.allFinite());
        QVERIFY(logits.row(0).maxCoeff() > logits.row(0).minCoeff());
    }

    void cancelLeavesNothing() {
        const fs::path out = fs::path(dir_.path().toStdString()) / "cancelled";
        std::vector<double> fractions;
        JobContext* self = nullptr;
        JobContext job([&](double fraction, const std::string&) {
            fractions.push_back(fraction);
            if (fractions.size() == 5) self->requestCancel(); // mid-way through layer 0
        });
        self = &job;
        QVERIFY_THROWS_EXCEPTION(Cancelled,
                                 writeSyntheticModel(syntheticModelPreset("tiny"), out, job));
        QVERIFY(!fs::exists(out));

        // Uncancelled: progress rises to 1.
        fractions.clear();
        const JobContext watched([&](double f, const std::string&) { fractions.push_back(f); });
        writeSyntheticModel(syntheticModelPreset("tiny"), out, watched);
        QCOMPARE(fractions.size(), std::size_t(1 + 9 * 4 + 2 + 1));
        QVERIFY(std::is_sorted(fractions.begin(), fractions.end()));
        QCOMPARE(fractions.back(), 1.0);
    }

    void badSpecsAreRejected() {
        try {
            syntheticModelPreset("13b");
            QFAIL("accepted an unknown preset");
        } catch (const Error& e) {
            QCOMPARE(QString(e.what()),
                     QString("synthetic model: unknown preset '13b' (7b or tiny)"));
        }
        SyntheticModelSpec spec = syntheticModelPreset("tiny");
        spec.dtype = "F8_E4M3";
        const fs::path out = fs::path(dir_.path().toStdString()) / "bad";
        try {
            writeSyntheticModel(spec, out, JobContext{});
            QFAIL("accepted F8");
        } catch (const Error& e) {
            QCOMPARE(QString(e.what()),
                     QString("synthetic model: dtype 'F8_E4M3' is not F16, BF16 or F32"));
        }
        spec = syntheticModelPreset("tiny");
        spec.heads = 3;
        try {
            writeSyntheticModel(spec, out, JobContext{});
            QFAIL("accepted 256 dims over 3 heads");
        } catch (const Error& e) {
            QCOMPARE(
                QString(e.what()),
                QString("synthetic model: hidden size 256 is not divisible by the head count 3"));
        }
        QVERIFY(!fs::exists(out));
    }
};

QTEST_APPLESS_MAIN(TestSyntheticModel)
#include "test_synthetic_model.moc"
