// Reproduces the reference figures of shared/data/README.md (independent PyTorch implementation).
#include "safetensors_mutator.h"
#include "test_data.h"

#include "quantlens/core/error.h"
#include "quantlens/formats/model_loading.h"

#include "quantlens/io/text_file.h"
#include "quantlens/io/token_file.h"
#include "quantlens/runtime/base_comparison.h"
#include "quantlens/runtime/perplexity.h"

#include <QTemporaryDir>

#include <algorithm>
#include <cmath>

using namespace quantlens;

namespace {

PerplexityResult evaluate(const std::string& modelPath, const std::string& tokenizerPath,
                          PerplexityProtocol protocol, int context) {
    const auto model = loadModel(test::dataPath(modelPath));
    const auto tokenizer = loadTokenizer(test::dataPath(tokenizerPath));
    const auto stream = tokenizeForProtocol(
        *tokenizer, readTextFile(test::dataPath("text/tinystories-valid-excerpt.txt")), protocol,
        model->config.bosToken, "excerpt");
    return evaluatePerplexity(Transformer(*model), stream, {context, protocol}, JobContext{});
}

void compareRelative(double actual, double expected) {
    QVERIFY2(
        std::abs(actual - expected) <= 1e-5 * std::abs(expected),
        qPrintable(QString("%1 vs reference %2").arg(actual, 0, 'f', 7).arg(expected, 0, 'f', 7)));
}

} // namespace

class TestPerplexity : public QObject {
    Q_OBJECT
private slots:
    void initTestCase() {
        QUANTLENS_REQUIRE_DATA("stories260K-hf");
        QUANTLENS_REQUIRE_DATA("stories260K");
        QUANTLENS_REQUIRE_DATA("stories260K-hf-bf16");
        QUANTLENS_REQUIRE_DATA("text/tinystories-valid-excerpt.txt");
    }

    void referenceFigures_data() {
        QTest::addColumn<QString>("model");
        QTest::addColumn<QString>("tokenizer");
        QTest::addColumn<int>("protocol");
        QTest::addColumn<int>("context");
        QTest::addColumn<qlonglong>("tokens");
        QTest::addColumn<qlonglong>("windows");
        QTest::addColumn<double>("nll");
        QTest::addColumn<double>("ppl");
        const int documents = int(PerplexityProtocol::Documents),
                  gptq = int(PerplexityProtocol::Gptq);
        QTest::newRow("bin f32 ctx256") << "stories260K/stories260K.bin"
                                        << "stories260K/tok512.bin" << documents << 256 << 6851LL
                                        << 27LL << 1.697663 << 5.461168;
        QTest::newRow("hf f32 ctx256") << "stories260K-hf"
                                       << "stories260K-hf/tokenizer.model" << documents << 256
                                       << 6851LL << 27LL << 1.697663 << 5.461168;
        QTest::newRow("hf bf16 ctx256") << "stories260K-hf-bf16"
                                        << "stories260K-hf-bf16/tokenizer.model" << documents << 256
                                        << 6851LL << 27LL << 1.698481 << 5.465639;
        QTest::newRow("hf f32 ctx128") << "stories260K-hf"
                                       << "stories260K-hf/tokenizer.model" << documents << 128
                                       << 6851LL << 54LL << 1.738004 << 5.685983;
        QTest::newRow("bin f32 ctx128") << "stories260K/stories260K.bin"
                                        << "stories260K/tok512.bin" << documents << 128 << 6851LL
                                        << 54LL << 1.738004 << 5.685983;
        QTest::newRow("hf f32 gptq256") << "stories260K-hf"
                                        << "stories260K-hf/tokenizer.model" << gptq << 256 << 6865LL
                                        << 26LL << 1.719482 << 5.581638;
        QTest::newRow("bin f32 gptq256")
            << "stories260K/stories260K.bin"
            << "stories260K/tok512.bin" << gptq << 256 << 6865LL << 26LL << 1.719482 << 5.581638;
    }

    void referenceFigures() {
        QFETCH(QString, model);
        QFETCH(QString, tokenizer);
        QFETCH(int, protocol);
        QFETCH(int, context);
        const PerplexityResult r = evaluate(model.toStdString(), tokenizer.toStdString(),
                                            PerplexityProtocol(protocol), context);
        QFETCH(qlonglong, tokens);
        QFETCH(qlonglong, windows);
        QFETCH(double, nll);
        QFETCH(double, ppl);
        QCOMPARE(r.tokens, tokens);
        QCOMPARE(r.windows, windows);
        compareRelative(r.meanNll, nll);
        compareRelative(r.perplexity, ppl);
    }

    // No reference figure exists for F16; its rounding (finer than BF16's) must cost less than
    // BF16's 0.05% and change the result at all.
    void f16CheckpointIsCloseToF32() {
        QTemporaryDir dir;
        const std::string copy = dir.filePath("f16").toStdString();
        test::copyModelAsF16(test::dataPath("stories260K-hf"), copy);
        const PerplexityResult f16 =
            evaluate(copy, "stories260K-hf/tokenizer.model", PerplexityProtocol::Documents, 256);
        const PerplexityResult f32 = evaluate("stories260K-hf", "stories260K-hf/tokenizer.model",
                                              PerplexityProtocol::Documents, 256);
        const double shift = std::abs(f16.meanNll - f32.meanNll) / f32.meanNll;
        QVERIFY2(shift > 0 && shift < 1.698481 / 1.697663 - 1, qPrintable(QString::number(shift)));
    }

    // A pre-tokenised stream scores exactly like the text it came from.
    void tokenFileMatchesText() {
        const auto model = loadModel(test::dataPath("stories260K-hf"));
        const auto tokenizer = loadTokenizer(model->defaultTokenizer);
        const auto stream = tokenizeForProtocol(
            *tokenizer, readTextFile(test::dataPath("text/tinystories-valid-excerpt.txt")),
            PerplexityProtocol::Documents, 1, "excerpt");
        QTemporaryDir dir;
        const std::filesystem::path file = dir.filePath("excerpt.u16").toStdString();
        writeTokenFile(file, TokenWidth::U16, stream);
        const auto reread = readTokenFile(file, TokenWidth::U16);
        QCOMPARE(reread, stream);
        const PerplexityConfig config{256, PerplexityProtocol::Documents};
        const Transformer transformer(*model);
        QCOMPARE(evaluatePerplexity(transformer, reread, config, JobContext{}).meanNll,
                 evaluatePerplexity(transformer, stream, config, JobContext{}).meanNll);
    }

    void progressIsReportedAndCancelStops() {
        const auto model = loadModel(test::dataPath("stories260K-hf"));
        const std::vector<std::int32_t> stream(4000, 7);
        std::vector<double> fractions;
        JobContext job([&](double f, const std::string&) { fractions.push_back(f); });
        evaluatePerplexity(Transformer(*model), stream, {64, PerplexityProtocol::Documents}, job);
        QCOMPARE(fractions.size(), std::size_t(63)); // ceil(3999 / 64) windows
        QCOMPARE(fractions.back(), 1.0);
        QVERIFY(std::is_sorted(fractions.begin(), fractions.end()));

        job.requestCancel();
        QVERIFY_THROWS_EXCEPTION(Cancelled,
                                 evaluatePerplexity(Transformer(*model), stream,
                                                    {64, PerplexityProtocol::Documents}, job));
    }

    void badContextIsRejected() {
        const auto model = loadModel(test::dataPath("stories260K-hf"));
        const std::vector<std::int32_t> stream(100, 7);
        for (const int context : {1, 513}) {
            try {
                evaluatePerplexity(Transformer(*model), stream,
                                   {context, PerplexityProtocol::Documents}, JobContext{});
                QFAIL("accepted a bad context");
            } catch (const Error& e) {
                QVERIFY(QString(e.what()).contains("must lie in [2, 512]"));
            }
        }
        try {
            evaluatePerplexity(Transformer(*model), stream, {256, PerplexityProtocol::Gptq},
                               JobContext{});
            QFAIL("accepted a text shorter than one window");
        } catch (const Error& e) {
            QVERIFY(QString(e.what()).contains(
                "the text has 100 tokens, fewer than one window of 256"));
        }
    }

    // Python's universal newlines: CRLF, lone CR and LF end lines alike, in both protocols.
    void lineEndingsGiveTheSameStream() {
        const auto tokenizer = loadTokenizer(test::dataPath("stories260K-hf/tokenizer.model"));
        const auto text = [](const std::string& eol) {
            return "Once upon a time" + eol + eol + "there was a cat." + eol + "It sat." + eol;
        };
        for (const auto protocol : {PerplexityProtocol::Documents, PerplexityProtocol::Gptq}) {
            const auto lf = tokenizeForProtocol(*tokenizer, text("\n"), protocol, 1, "lf");
            QCOMPARE(tokenizeForProtocol(*tokenizer, text("\r\n"), protocol, 1, "crlf"), lf);
            QCOMPARE(tokenizeForProtocol(*tokenizer, text("\r"), protocol, 1, "cr"), lf);
            // Documents: one BOS per non-blank line; Gptq: one for the whole text.
            QCOMPARE(std::count(lf.begin(), lf.end(), 1),
                     std::ptrdiff_t(protocol == PerplexityProtocol::Documents ? 3 : 1));
        }
    }

    // Documents windows hold ctx + 1 tokens at stride ctx, the last one partial.
    void documentsWindowEdges() {
        const auto model = loadModel(test::dataPath("stories260K-hf"));
        const Transformer transformer(*model);
        const int ctx = 16;
        const auto stream = [](std::size_t length) {
            std::vector<std::int32_t> ids(length);
            for (std::size_t i = 0; i < length; ++i)
                ids[i] = std::int32_t(1 + (i * 37) % 511);
            return ids;
        };
        const PerplexityConfig config{ctx, PerplexityProtocol::Documents};
        const PerplexityResult one =
            evaluatePerplexity(transformer, stream(ctx + 1), config, JobContext{});
        QCOMPARE(one.windows, std::int64_t(1));
        QCOMPARE(one.scoredTokens, std::int64_t(ctx));
        const PerplexityResult two =
            evaluatePerplexity(transformer, stream(ctx + 2), config, JobContext{});
        QCOMPARE(two.windows, std::int64_t(2));
        QCOMPARE(two.scoredTokens, std::int64_t(ctx + 1));
        QCOMPARE(two.tokens, two.scoredTokens);
    }

    // Gptq: floor(n / ctx) whole windows of ctx tokens, each scoring ctx - 1.
    void gptqWindowEdges() {
        const auto model = loadModel(test::dataPath("stories260K-hf"));
        const Transformer transformer(*model);
        const int ctx = 16;
        const PerplexityConfig config{ctx, PerplexityProtocol::Gptq};
        const std::vector<std::int32_t> exact(ctx, 7);
        const PerplexityResult one = evaluatePerplexity(transformer, exact, config, JobContext{});
        QCOMPARE(one.windows, std::int64_t(1));
        QCOMPARE(one.scoredTokens, std::int64_t(ctx - 1));
        QCOMPARE(one.tokens, std::int64_t(ctx));
        const std::vector<std::int32_t> almostTwo(2 * ctx - 1, 7);
        QCOMPARE(evaluatePerplexity(transformer, almostTwo, config, JobContext{}).windows,
                 std::int64_t(1));
        try {
            evaluatePerplexity(transformer, std::vector<std::int32_t>(ctx - 1, 7), config,
                               JobContext{});
            QFAIL("accepted a text shorter than one window");
        } catch (const Error& e) {
            QVERIFY2(
                QString(e.what()).contains("the text has 15 tokens, fewer than one window of 16"),
                e.what());
        }
    }

    // The ratio of two reference figures (shared/data/README.md, both from the independent
    // implementation) is what comparing the BF16 model with its F32 base must give.
    void comparisonWithTheBaseMatchesTheReferenceRatio() {
        const auto model = loadModel(test::dataPath("stories260K-hf-bf16"));
        const auto base = loadModel(test::dataPath("stories260K-hf"));
        const auto tokenizer = loadTokenizer(test::dataPath("stories260K-hf/tokenizer.model"));
        const auto stream = tokenizeForProtocol(
            *tokenizer, readTextFile(test::dataPath("text/tinystories-valid-excerpt.txt")),
            PerplexityProtocol::Documents, model->config.bosToken, "excerpt");
        const Transformer baseTransformer(*base);
        const PerplexityResult result =
            evaluatePerplexity(Transformer(*model), stream, {256, PerplexityProtocol::Documents},
                               JobContext{}, &baseTransformer);
        QVERIFY(result.comparison.has_value());
        const BaseComparison& c = *result.comparison;
        compareRelative(result.perplexity, 5.465639);
        compareRelative(c.basePerplexity, 5.461168);
        compareRelative(c.perplexityRatio, 5.465639 / 5.461168);
        QCOMPARE(c.positions, std::int64_t{6851});
        // BF16 rounding moves the distributions a little: small, ordered figures.
        QVERIFY(c.perplexityRatioError > 0.0 && c.perplexityRatioError < 1e-3);
        QVERIFY(c.klMean > 0.0 && c.klMean < 1e-2);
        QVERIFY(c.klMedian <= c.klP99 && c.klP99 <= c.klMax);
        QVERIFY(c.top1Agreement > 0.95 && c.top1Agreement < 1.0);
        QVERIFY(c.deltaPP1 <= c.deltaPMean && c.deltaPMean <= c.deltaPP99);
    }

    void comparisonWithItselfIsExact() {
        const auto model = loadModel(test::dataPath("stories260K/stories260K.bin"));
        const auto tokenizer = loadTokenizer(test::dataPath("stories260K/tok512.bin"));
        const auto stream = tokenizeForProtocol(
            *tokenizer, readTextFile(test::dataPath("text/tinystories-valid-excerpt.txt")),
            PerplexityProtocol::Gptq, model->config.bosToken, "excerpt");
        const Transformer transformer(*model);
        const PerplexityResult result = evaluatePerplexity(
            transformer, stream, {128, PerplexityProtocol::Gptq}, JobContext{}, &transformer);
        const BaseComparison& c = result.comparison.value();
        QCOMPARE(c.basePerplexity, result.perplexity);
        QCOMPARE(c.perplexityRatio, 1.0);
        QCOMPARE(c.perplexityRatioError, 0.0);
        QVERIFY(std::abs(c.klMax) < 1e-12);
        QCOMPARE(c.top1Agreement, 1.0);
        QCOMPARE(c.deltaPP1, 0.0);
        QCOMPARE(c.deltaPP99, 0.0);
        QVERIFY(!evaluatePerplexity(transformer, stream, {128, PerplexityProtocol::Gptq}, {})
                     .comparison);
    }

    // Figures worked out by hand from four positions in two windows.
    void summaryFiguresByHand() {
        const double ln2 = std::log(2.0), ln4 = std::log(4.0);
        const std::vector<TokenComparison> tokens{{ln2, ln2, 0.0, true},
                                                  {ln4, ln2, 0.4, false},
                                                  {ln2, ln4, 0.1, true},
                                                  {ln4, ln4, 0.2, true}};
        const std::vector<std::int64_t> windows{2, 4};
        const BaseComparison documents =
            summariseComparison(tokens, windows, PerplexityProtocol::Documents);
        // NLL differences 0, ln2, −ln2, 0: mean 0, sample variance 2·ln²2/3.
        QCOMPARE(documents.perplexityRatio, 1.0);
        QVERIFY(std::abs(documents.perplexityRatioError - std::sqrt(2.0 * ln2 * ln2 / 3.0 / 4.0)) <
                1e-15);
        QVERIFY(std::abs(documents.basePerplexity - std::exp((2 * ln2 + 2 * ln4) / 4)) < 1e-12);
        QVERIFY(std::abs(documents.klMean - 0.175) < 1e-15);
        QVERIFY(std::abs(documents.klMedian - 0.15) < 1e-15); // between 0.1 and 0.2
        QVERIFY(std::abs(documents.klP99 - (0.2 + 0.97 * 0.2)) < 1e-12);
        QCOMPARE(documents.klMax, 0.4);
        QCOMPARE(documents.top1Agreement, 0.75);
        // Δp: 0, 1/4 − 1/2, 1/2 − 1/4, 0.
        QVERIFY(std::abs(documents.deltaPMean) < 1e-15);
        QVERIFY(std::abs(documents.deltaPP1 - (-0.25 + 0.03 * 0.25)) < 1e-12);
        // Per window: mean differences ln2/2 and −ln2/2.
        const BaseComparison gptq = summariseComparison(tokens, windows, PerplexityProtocol::Gptq);
        QCOMPARE(gptq.perplexityRatio, 1.0);
        QVERIFY(std::abs(gptq.perplexityRatioError - ln2 / 2.0) < 1e-15);
        QVERIFY_THROWS_EXCEPTION(Error, summariseComparison(tokens, std::vector<std::int64_t>{3},
                                                            PerplexityProtocol::Documents));
    }
};

QTEST_APPLESS_MAIN(TestPerplexity)
#include "test_perplexity.moc"
