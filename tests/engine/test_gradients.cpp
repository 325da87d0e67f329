// The backward pass through the LLaMA forward, checked against finite differences of the loss on
// the real stories260K weights (rotate-half and interleaved RoPE), and the diagonal Fisher it
// feeds.
#include "error_text.h"
#include "test_data.h"

#include "quantlens/core/error.h"
#include "quantlens/formats/model_loading.h"
#include "quantlens/io/text_file.h"
#include "quantlens/quantization/fisher.h"
#include "quantlens/quantization/model_quantizer.h"
#include "quantlens/runtime/gradients.h"
#include "quantlens/runtime/perplexity.h"
#include "quantlens/runtime/transformer.h"
#include "quantlens/tokenizer/tokenizer.h"

#include <QTemporaryDir>

#include <cfloat>
#include <cmath>
#include <fstream>
#include <random>
#include <signal.h>
#include <sys/resource.h>

using namespace quantlens;
namespace fs = std::filesystem;

using quantlens::test::errorOf;

namespace {

using Layers = std::vector<std::array<RowMatrix, 7>>;

// Tokens [offset, offset + count) of the TinyStories excerpt (Documents protocol). Both stories260K
// tokenizers encode it identically.
std::vector<std::int32_t> excerptTokens(std::size_t offset, std::size_t count) {
    const auto tokenizer = loadTokenizer(test::dataPath("stories260K-hf/tokenizer.model"));
    const auto stream = tokenizeForProtocol(
        *tokenizer, readTextFile(test::dataPath("text/tinystories-valid-excerpt.txt")),
        PerplexityProtocol::Documents, 1, "excerpt");
    return {stream.begin() + static_cast<std::ptrdiff_t>(offset),
            stream.begin() + static_cast<std::ptrdiff_t>(offset + count)};
}

Layers linearLayers(const Model& model) {
    Layers layers(model.blocks.size());
    for (std::size_t b = 0; b < model.blocks.size(); ++b)
        for (std::size_t l = 0; l < 7; ++l)
            layers[b][l] = FloatTensor(*model.blocks[b].linearLayers()[l]).matrix();
    return layers;
}

// The mean next-token NLL of `tokens` from Transformer::forward's logits, log-softmax in double.
double referenceLoss(const Model& model, const std::vector<std::int32_t>& tokens) {
    KvCache cache(model.config, static_cast<int>(tokens.size()));
    const RowMatrix logits = Transformer(model).forward(tokens, cache);
    double sum = 0.0;
    for (std::size_t t = 0; t + 1 < tokens.size(); ++t) {
        const Eigen::VectorXd row = logits.row(static_cast<Eigen::Index>(t)).cast<double>();
        const double maxLogit = row.maxCoeff();
        const double logZ = maxLogit + std::log((row.array() - maxLogit).exp().sum());
        sum += logZ - row[tokens[t + 1]];
    }
    return sum / static_cast<double>(tokens.size() - 1);
}

struct Gradients {
    double loss = 0.0;
    Layers layers;
    std::vector<std::pair<int, int>> order; // (block, layer) as the sink saw them
};

Gradients gradientsOf(const Model& model, const std::vector<std::int32_t>& tokens) {
    Gradients result;
    result.layers.resize(model.blocks.size());
    result.loss = lossAndLinearGradients(
        Transformer(model), tokens, [&](int block, int layer, const RowMatrix& gradient) {
            result.layers[static_cast<std::size_t>(block)][static_cast<std::size_t>(layer)] =
                gradient;
            result.order.emplace_back(block, layer);
        });
    return result;
}

// ∂L/∂ε of L(W + εD) at 0 for layer `layer` of `block`, every other weight unchanged: central
// differences at steps ε and 2ε, combined by Richardson extrapolation so the O(ε²) truncation
// cancels. Rounding noise of the float forward, ~FLT_EPSILON·L per loss, enters as ~1.5·noise/ε.
double directionalDerivative(const Model& model, const Layers& weights, int block, int layer,
                             const RowMatrix& direction, float epsilon,
                             const std::vector<std::int32_t>& tokens) {
    const auto lossWith = [&](float step) {
        Layers perturbed = weights;
        perturbed[static_cast<std::size_t>(block)][static_cast<std::size_t>(layer)] +=
            step * direction;
        return referenceLoss(*withLinearLayers(model, std::move(perturbed)), tokens);
    };
    const double narrow = (lossWith(epsilon) - lossWith(-epsilon)) / (2.0 * epsilon);
    const double wide = (lossWith(2 * epsilon) - lossWith(-2 * epsilon)) / (4.0 * epsilon);
    return (4.0 * narrow - wide) / 3.0;
}

// ⟨a, b⟩ in double.
double inner(const RowMatrix& a, const RowMatrix& b) {
    return (a.cast<double>().array() * b.cast<double>().array()).sum();
}

// Sets TMPDIR (where the Fisher accumulators' file goes) for one scope.
class ScopedTmpDir {
public:
    explicit ScopedTmpDir(const QByteArray& directory) : previous_(qgetenv("TMPDIR")) {
        hadPrevious_ = qEnvironmentVariableIsSet("TMPDIR");
        qputenv("TMPDIR", directory);
    }
    ~ScopedTmpDir() {
        if (hadPrevious_)
            qputenv("TMPDIR", previous_);
        else
            qunsetenv("TMPDIR");
    }

private:
    QByteArray previous_;
    bool hadPrevious_ = false;
};

// This process's mappings of Fisher accumulator files in `directory` (lines of /proc/self/maps).
int fisherMappings(const QString& directory) {
    std::ifstream maps("/proc/self/maps");
    const std::string needle =
        (fs::canonical(directory.toStdString()) / "quantlens-fisher-").string();
    int count = 0;
    for (std::string line; std::getline(maps, line);)
        if (line.find(needle) != std::string::npos) ++count;
    return count;
}

bool isEmptyDirectory(const QString& directory) {
    return fs::is_empty(directory.toStdString());
}

std::int64_t linearParameters(const Model& model) {
    std::int64_t count = 0;
    for (const BlockWeights& block : model.blocks)
        for (const TensorView* weight : block.linearLayers())
            count += weight->elementCount();
    return count;
}

// Data rows: one model per RoPE layout, Llama 3's scaled RoPE, Mistral's sliding window (32 keys,
// shorter than the 150 tokens the gradients are taken over), Qwen2's biases and Qwen3's q/k norms
// on heads wider than hidden / heads.
void addModelRows() {
    QTest::addColumn<QString>("path");
    QTest::newRow("rotate-half RoPE (HF)") << "stories260K-hf";
    QTest::newRow("interleaved RoPE (llama2.c)") << "stories260K/stories260K.bin";
    QTest::newRow("llama3 RoPE scaling") << "archs/llama3";
    QTest::newRow("sliding window (Mistral)") << "archs/mistral";
    QTest::newRow("q/k/v biases (Qwen2)") << "archs/qwen2";
    QTest::newRow("q/k norms, 32-wide heads (Qwen3)") << "archs/qwen3";
}

} // namespace

class TestGradients : public QObject {
    Q_OBJECT
private slots:
    void initTestCase() {
        QUANTLENS_REQUIRE_DATA("stories260K-hf");
        QUANTLENS_REQUIRE_DATA("stories260K/stories260K.bin");
        QUANTLENS_REQUIRE_DATA("text/tinystories-valid-excerpt.txt");
    }

    // The loss is the mean next-token NLL of Transformer::forward's logits; the sink sees every
    // linear layer once, top block first, in the weights' shapes.
    void lossMatchesForwardLogits_data() { addModelRows(); }
    void lossMatchesForwardLogits() {
        QFETCH(QString, path);
        const auto model = loadModel(test::dataPath(path.toStdString()));
        QCOMPARE(model->config.ropeLayout,
                 path.endsWith(".bin") ? RopeLayout::Interleaved : RopeLayout::RotateHalf);
        const auto tokens = excerptTokens(0, 150);
        const Gradients gradients = gradientsOf(*model, tokens);
        const double reference = referenceLoss(*model, tokens);
        QVERIFY2(
            std::abs(gradients.loss - reference) <= 1e-6 * reference,
            qPrintable(
                QString("%1 vs %2").arg(gradients.loss, 0, 'g', 10).arg(reference, 0, 'g', 10)));

        const std::vector<int> backwardOrder = {6, 4, 5, 3, 0, 1, 2};
        const int blocks = model->config.layerCount;
        QCOMPARE(gradients.order.size(), std::size_t(7 * blocks));
        for (std::size_t i = 0; i < gradients.order.size(); ++i) {
            QCOMPARE(gradients.order[i].first, blocks - 1 - static_cast<int>(i / 7));
            QCOMPARE(gradients.order[i].second, backwardOrder[i % 7]);
        }
        for (std::size_t b = 0; b < std::size_t(blocks); ++b)
            for (std::size_t l = 0; l < 7; ++l) {
                const TensorView& weight = *model->blocks[b].linearLayers()[l];
                QCOMPARE(gradients.layers[b][l].rows(), weight.shape[0]);
                QCOMPARE(gradients.layers[b][l].cols(), weight.shape[1]);
                QVERIFY(gradients.layers[b][l].allFinite());
            }
    }

    // ⟨∂L/∂W, D⟩ against the derivative of the loss along D, for every layer type in the last and
    // the first block (whose gradients have come back through every block), with D a seeded random
    // direction, the largest gradient entry, and the gradient's own direction (where any wrong
    // gradient shows: the numeric derivative along it is ⟨G_true, G⟩/‖G‖, not ‖G‖). 150 tokens span
    // three query chunks of the attention.
    void gradientsMatchFiniteDifferences_data() { addModelRows(); }
    void gradientsMatchFiniteDifferences() {
        QFETCH(QString, path);
        const auto model = loadModel(test::dataPath(path.toStdString()));
        const auto tokens = excerptTokens(0, 150);
        const Gradients gradients = gradientsOf(*model, tokens);
        const Layers weights = linearLayers(*model);
        // ε = 1e-2 on unit-norm directions: truncation after extrapolation stays below 1e-3
        // relative (measured ≤ 3e-4), rounding noise below the absolute term (measured ≤ 2e-5).
        constexpr float kEpsilon = 1e-2f;
        const double noise = 1.5 * 2.0 * FLT_EPSILON * gradients.loss / kEpsilon;
        std::mt19937 rng(20240611);
        std::normal_distribution<float> normal;
        // In backward order, so that the first failure points at the step that broke.
        for (const int block : {model->config.layerCount - 1, 0})
            for (const int layer : {6, 4, 5, 3, 0, 1, 2}) {
                const RowMatrix& g =
                    gradients
                        .layers[static_cast<std::size_t>(block)][static_cast<std::size_t>(layer)];
                RowMatrix random =
                    RowMatrix::NullaryExpr(g.rows(), g.cols(), [&] { return normal(rng); });
                random /= random.norm();
                Eigen::Index row = 0, col = 0;
                g.cwiseAbs().maxCoeff(&row, &col);
                RowMatrix largest = RowMatrix::Zero(g.rows(), g.cols());
                largest(row, col) = 1.0f;
                const RowMatrix along = g / g.norm();
                const std::array<std::pair<const char*, const RowMatrix*>, 3> directions = {
                    {{"random", &random},
                     {"largest entry", &largest},
                     {"along the gradient", &along}}};
                for (const auto& [name, direction] : directions) {
                    const double analytic = inner(g, *direction);
                    const double numeric = directionalDerivative(*model, weights, block, layer,
                                                                 *direction, kEpsilon, tokens);
                    QVERIFY2(std::abs(numeric - analytic) <= 2e-3 * std::abs(analytic) + noise,
                             qPrintable(QString("block %1 %2, %3: analytic %4, numeric %5")
                                            .arg(block)
                                            .arg(kLinearLayers[layer].name)
                                            .arg(name)
                                            .arg(analytic, 0, 'g', 8)
                                            .arg(numeric, 0, 'g', 8)));
                }
            }
    }

    // The llama2.c checkpoint is the HF one with Q/K rows permuted from interleaved pairs (2i,
    // 2i + 1) to halves (i, i + headDim/2): the same function, so the same gradients, with q/k's
    // rows permuted alike.
    void ropeLayoutsGiveTheSameGradients() {
        const auto tokens = excerptTokens(200, 150);
        const auto hfModel = loadModel(test::dataPath("stories260K-hf"));
        const auto binModel = loadModel(test::dataPath("stories260K/stories260K.bin"));
        const Gradients hf = gradientsOf(*hfModel, tokens), bin = gradientsOf(*binModel, tokens);
        const int headDim = hfModel->config.headDim, half = headDim / 2;
        for (std::size_t b = 0; b < 5; ++b)
            for (std::size_t l = 0; l < 7; ++l) {
                const RowMatrix& x = hf.layers[b][l];
                RowMatrix y = bin.layers[b][l];
                if (l < 2)
                    for (Eigen::Index r = 0; r < y.rows(); ++r) {
                        const Eigen::Index head = r / headDim, i = r % headDim;
                        const Eigen::Index pair = i < half ? 2 * i : 2 * (i - half) + 1;
                        y.row(r) = bin.layers[b][l].row(head * headDim + pair);
                    }
                const float difference = (x - y).cwiseAbs().maxCoeff();
                QVERIFY2(difference <= 1e-4f * x.cwiseAbs().maxCoeff(),
                         qPrintable(QString("block %1 %2: %3")
                                        .arg(b)
                                        .arg(kLinearLayers[l].name)
                                        .arg(difference)));
            }
    }

    void unusableSequencesAreRejected() {
        const auto model = loadModel(test::dataPath("stories260K-hf"));
        const Transformer transformer(*model);
        const auto sink = [](int, int, const RowMatrix&) {};
        const std::string source = model->path.string();
        QCOMPARE(test::errorOf([&] {
                     lossAndLinearGradients(transformer, std::vector<std::int32_t>{1}, sink);
                 }),
                 QString::fromStdString(source +
                                        ": a sequence of 1 token(s) has no next token to predict"));
        QCOMPARE(test::errorOf([&] {
                     lossAndLinearGradients(transformer, std::vector<std::int32_t>(513, 5), sink);
                 }),
                 QString::fromStdString(
                     source + ": position 512 is past the model's maximum of 512 positions"));
        JobContext cancelled;
        cancelled.requestCancel();
        QVERIFY_THROWS_EXCEPTION(
            Cancelled, lossAndLinearGradients(transformer, excerptTokens(0, 8), sink, &cancelled));
    }

    // F = Σ_s (∂L_s/∂W)², against the squares of lossAndLinearGradients summed here in double;
    // progress once per sequence.
    void fisherIsTheSumOfSquaredGradients() {
        const auto model = loadModel(test::dataPath("stories260K-hf"));
        const std::vector<std::vector<std::int32_t>> sequences = {
            excerptTokens(0, 64), excerptTokens(64, 64), excerptTokens(128, 64)};
        std::vector<std::array<Eigen::MatrixXd, 7>> expected(5);
        for (const auto& sequence : sequences)
            lossAndLinearGradients(
                Transformer(*model), sequence,
                [&](int block, int layer, const RowMatrix& gradient) {
                    Eigen::MatrixXd& sum =
                        expected[static_cast<std::size_t>(block)][static_cast<std::size_t>(layer)];
                    const Eigen::MatrixXd squared = gradient.cast<double>().array().square();
                    sum = sum.size() == 0 ? squared : Eigen::MatrixXd(sum + squared);
                });

        std::vector<double> fractions;
        const JobContext job(
            [&](double fraction, const std::string&) { fractions.push_back(fraction); });
        const FisherInformation fisher = accumulateFisher(*model, sequences, job);
        QCOMPARE(fisher.sequences(), 3);
        QCOMPARE(fisher.blocks(), 5);
        QCOMPARE(fractions, (std::vector<double>{1.0 / 3.0, 2.0 / 3.0, 1.0}));
        for (int b = 0; b < 5; ++b)
            for (int l = 0; l < 7; ++l) {
                const Eigen::MatrixXd& reference =
                    expected[static_cast<std::size_t>(b)][static_cast<std::size_t>(l)];
                const ConstRowMatrixMap f = fisher.layer(b, l);
                QCOMPARE(f.rows(), reference.rows());
                QCOMPARE(f.cols(), reference.cols());
                const double difference = (f.cast<double>() - reference).cwiseAbs().maxCoeff();
                QVERIFY2(difference <= 1e-5 * reference.maxCoeff(),
                         qPrintable(QString("block %1 %2: %3 of %4")
                                        .arg(b)
                                        .arg(kLinearLayers[l].name)
                                        .arg(difference)
                                        .arg(reference.maxCoeff())));
                QVERIFY(reference.minCoeff() >= 0.0);
            }
        QCOMPARE(test::errorOf([&] { fisher.layer(5, 0); }),
                 QString("no Fisher information for block 5, layer 0 of a 5-block model"));
    }

    // The accumulators live in an unlinked file in TMPDIR, mapped while the job runs; a cancel
    // (before the first sequence or between two) throws Cancelled and unmaps it.
    void cancelledFisherLeavesNoTemporaryFile() {
        const auto model = loadModel(test::dataPath("stories260K-hf"));
        const std::vector<std::vector<std::int32_t>> sequences = {
            excerptTokens(0, 32), excerptTokens(32, 32), excerptTokens(64, 32)};
        QTemporaryDir directory;
        QVERIFY(directory.isValid());
        const ScopedTmpDir tmp(directory.path().toLocal8Bit());

        JobContext* running = nullptr;
        int mappedWhileRunning = -1;
        bool emptyWhileRunning = false;
        JobContext job([&](double, const std::string&) {
            mappedWhileRunning = fisherMappings(directory.path());
            emptyWhileRunning = isEmptyDirectory(directory.path());
            running->requestCancel();
        });
        running = &job;
        QVERIFY_THROWS_EXCEPTION(Cancelled, accumulateFisher(*model, sequences, job));
        QCOMPARE(mappedWhileRunning, 1);
        QVERIFY(emptyWhileRunning);
        QCOMPARE(fisherMappings(directory.path()), 0);
        QVERIFY(isEmptyDirectory(directory.path()));

        // Cancelled before it starts.
        QVERIFY_THROWS_EXCEPTION(Cancelled, accumulateFisher(*model, sequences, job));
        QCOMPARE(fisherMappings(directory.path()), 0);
        QVERIFY(isEmptyDirectory(directory.path()));
    }

    void fisherErrors() {
        const auto model = loadModel(test::dataPath("stories260K-hf"));
        const std::vector<std::vector<std::int32_t>> sequences = {excerptTokens(0, 32),
                                                                  excerptTokens(32, 32)};
        QTemporaryDir directory;
        QVERIFY(directory.isValid());
        const ScopedTmpDir tmp(directory.path().toLocal8Bit());
        const std::string fileStart = directory.path().toStdString() + "/quantlens-fisher-";

        QCOMPARE(test::errorOf([&] { accumulateFisher(*model, {}, JobContext{}); }),
                 QString::fromStdString(model->path.string() +
                                        ": no calibration sequences for the Fisher information"));

        // A file size limit fails the reservation as a full disk would, naming the file.
        {
            const auto previous = ::signal(SIGXFSZ, SIG_IGN);
            rlimit limit{};
            ::getrlimit(RLIMIT_FSIZE, &limit);
            const rlimit small{65536, limit.rlim_max};
            ::setrlimit(RLIMIT_FSIZE, &small);
            const QString error =
                test::errorOf([&] { accumulateFisher(*model, sequences, JobContext{}); });
            ::setrlimit(RLIMIT_FSIZE, &limit);
            ::signal(SIGXFSZ, previous);
            QVERIFY2(error.startsWith(QString::fromStdString(fileStart)), qPrintable(error));
            QVERIFY2(error.endsWith(QString(": cannot reserve %1 bytes for the Fisher "
                                            "accumulators: File too large")
                                        .arg(linearParameters(*model) * 4)),
                     qPrintable(error));
            QVERIFY(isEmptyDirectory(directory.path()));
        }

        // Block 2's up_proj scaled by 1e-25 and down_proj by 1e25: the same function, but
        // ∂L/∂up_proj grows by 1e25 and its square overflows fp32.
        {
            Layers layers = linearLayers(*model);
            layers[2][5] *= 1e-25f;
            layers[2][6] *= 1e25f;
            const auto scaled = withLinearLayers(*model, std::move(layers));
            QCOMPARE(test::errorOf([&] { accumulateFisher(*scaled, sequences, JobContext{}); }),
                     QString::fromStdString(model->path.string() +
                                            ": the gradient of block 2 up_proj on calibration "
                                            "sequence 1 of 2 is not finite, or its square "
                                            "overflows fp32"));
            QCOMPARE(fisherMappings(directory.path()), 0);
        }

        const ScopedTmpDir missing(directory.filePath("missing").toLocal8Bit());
        QVERIFY2(test::errorOf([&] {
                     accumulateFisher(*model, sequences, JobContext{});
                 }).startsWith("no temporary directory for the Fisher accumulators: "),
                 "a missing TMPDIR is reported");
    }
};

QTEST_APPLESS_MAIN(TestGradients)
#include "test_gradients.moc"
