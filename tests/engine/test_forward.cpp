#include "test_data.h"

#include "quantlens/core/error.h"
#include "quantlens/formats/model_loading.h"

#include "quantlens/io/text_file.h"
#include "quantlens/runtime/generate.h"
#include "quantlens/runtime/perplexity.h"
#include "quantlens/runtime/transformer.h"
#include "quantlens/tokenizer/tokenizer.h"

using namespace quantlens;

namespace {

std::vector<std::int32_t> excerptTokens(std::size_t count) {
    const auto tokenizer = loadTokenizer(test::dataPath("stories260K-hf/tokenizer.model"));
    auto stream = tokenizeForProtocol(
        *tokenizer, readTextFile(test::dataPath("text/tinystories-valid-excerpt.txt")),
        PerplexityProtocol::Documents, 1, "excerpt");
    stream.resize(count);
    return stream;
}

RowMatrix logitsOf(const Model& model, const std::vector<std::int32_t>& tokens) {
    KvCache cache(model.config, static_cast<int>(tokens.size()));
    return Transformer(model).forward(tokens, cache);
}

} // namespace

class TestForward : public QObject {
    Q_OBJECT
private slots:
    void initTestCase() {
        QUANTLENS_REQUIRE_DATA("stories260K-hf");
        QUANTLENS_REQUIRE_DATA("stories260K/stories260K.bin");
        QUANTLENS_REQUIRE_DATA("text/tinystories-valid-excerpt.txt");
    }

    // Interleaved RoPE on the llama2.c layout and rotate-half RoPE on HF's permuted Q/K rows are
    // the same function: the logits agree up to float summation order.
    void llama2cAndHfLogitsAgree() {
        const auto tokens = excerptTokens(300);
        const RowMatrix bin =
            logitsOf(*loadModel(test::dataPath("stories260K/stories260K.bin")), tokens);
        const RowMatrix hf = logitsOf(*loadModel(test::dataPath("stories260K-hf")), tokens);
        QCOMPARE(bin.rows(), Eigen::Index(300));
        QCOMPARE(bin.cols(), Eigen::Index(512));
        // A wrong pairing would move logits by O(1); float reordering moves them by ~1e-5.
        const float maxDifference = (bin - hf).cwiseAbs().maxCoeff();
        QVERIFY2(maxDifference < 1e-4f, qPrintable(QString::number(maxDifference)));
    }

    // Feeding a sequence in pieces through the KV cache gives the logits of the whole-sequence
    // pass.
    void cachedDecodingMatchesFullPass() {
        const auto model = loadModel(test::dataPath("stories260K-hf"));
        const Transformer transformer(*model);
        const auto tokens = excerptTokens(64);
        const RowMatrix full = logitsOf(*model, tokens);
        KvCache cache(model->config, 64);
        const RowMatrix head = transformer.forward(std::span(tokens).first(40), cache);
        QVERIFY((head - full.topRows(40)).cwiseAbs().maxCoeff() < 1e-4f);
        for (std::size_t t = 40; t < tokens.size(); ++t) {
            const RowMatrix step = transformer.forward(std::span(tokens).subspan(t, 1), cache);
            const float difference =
                (step.row(0) - full.row(static_cast<Eigen::Index>(t))).cwiseAbs().maxCoeff();
            QVERIFY2(difference < 1e-4f,
                     qPrintable(QString("position %1: %2").arg(t).arg(difference)));
        }
        QCOMPARE(cache.length, 64);
    }

    void greedyGenerationMatchesReference() {
        for (const char* path : {"stories260K-hf", "stories260K/stories260K.bin"}) {
            const auto model = loadModel(test::dataPath(path));
            const auto tokenizer = loadTokenizer(model->defaultTokenizer);
            const auto generated = generateGreedy(Transformer(*model), {1}, 40, {}, JobContext{});
            const std::string text = tokenizer->decode(generated);
            QVERIFY2(
                text.starts_with("Once upon a time, there was a little girl named Lily. She loved "
                                 "to play outside in the park."),
                text.c_str());
        }
    }

    void cancelledGenerationStops() {
        const auto model = loadModel(test::dataPath("stories260K-hf"));
        JobContext job;
        int seen = 0;
        try {
            generateGreedy(
                Transformer(*model), {1}, 40,
                [&](std::int32_t) {
                    if (++seen == 5) job.requestCancel();
                },
                job);
            QFAIL("generation ignored the cancel request");
        } catch (const Cancelled&) {
        }
        QCOMPARE(seen, 5);
    }

    void positionsPastTheModelAreRejected() {
        const auto model = loadModel(test::dataPath("stories260K-hf"));
        KvCache cache(model->config, 600);
        const std::vector<std::int32_t> tokens(513, 5);
        try {
            Transformer(*model).forward(tokens, cache);
            QFAIL("ran 513 positions on a 512-position model");
        } catch (const Error& e) {
            QVERIFY(QString(e.what()).contains("position 512 is past the model's maximum of 512"));
        }
        try {
            Transformer(*model).forward(std::vector<std::int32_t>{1, 512}, cache);
            QFAIL("accepted an id outside the vocabulary");
        } catch (const Error& e) {
            QVERIFY(QString(e.what()).contains("token id 512 is outside the vocabulary of 512"));
        }
    }
};

QTEST_APPLESS_MAIN(TestForward)
#include "test_forward.moc"
