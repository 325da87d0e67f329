// The fused compressed kernels against QuantizedLayer::dequantize() — an independent decoder of the
// same arrays — for every method, act-order permutations, partial groups, odd shapes, several
// token counts and every instruction path; their reads against guard pages; and the validation
// of compressed arrays, with exact error messages.
#include "error_text.h"

#include "quantlens/core/dtype.h"
#include "quantlens/encoding/bit_packing.h"
#include "quantlens/model/synthetic_model.h"
#include "quantlens/quantization/layer_quantizer.h"
#include "quantlens/runtime/compressed_kernels.h"
#include "quantlens/runtime/compressed_linear.h"
#include "quantlens/runtime/compressed_matrix.h"

#include <QtTest>

#include <sys/mman.h>
#include <unistd.h>

#include <cmath>
#include <cstring>
#include <random>

using namespace quantlens;
using quantlens::test::errorOf;

Q_DECLARE_METATYPE(quantlens::QuantConfig)

namespace {

// Whether the build targets AVX-512, and what the AVX-512 int8 kernel needs besides
// (kernels/kernel_common.h).
constexpr bool kBuildHasAvx512 =
#if defined(__AVX2__) && defined(__FMA__) && defined(__F16C__) && defined(__AVX512F__)
    true;
#else
    false;
#endif
#if defined(__AVX512BW__) && defined(__AVX512DQ__) && defined(__AVX512VBMI__) &&                   \
    defined(__AVX512VNNI__)
constexpr bool kBuildHasAvx512Vnni = true;
#else
constexpr bool kBuildHasAvx512Vnni = false;
#endif

// H = 2·XᵀX/n of seeded heavy-tailed inputs, and a seeded positive Fisher stand-in.
Eigen::MatrixXf seededHessian(int cols, std::uint32_t seed) {
    std::mt19937 engine(seed);
    std::student_t_distribution<float> heavy(4.0f);
    const int n = 2 * cols + 16;
    Eigen::MatrixXf x(n, cols);
    for (Eigen::Index i = 0; i < x.size(); ++i)
        x.data()[i] = heavy(engine);
    return 2.0f * x.transpose() * x / static_cast<float>(n);
}

RowMatrix seededFisher(int rows, int cols, std::uint32_t seed) {
    std::mt19937 engine(seed);
    std::exponential_distribution<float> spread(1.0f);
    RowMatrix f(rows, cols);
    for (Eigen::Index i = 0; i < f.size(); ++i)
        f.data()[i] = std::pow(spread(engine), 3.0f);
    return f;
}

RowMatrix seededInputs(int tokens, int cols, std::uint32_t seed) {
    std::mt19937 engine(seed);
    std::normal_distribution<float> normal;
    RowMatrix x(tokens, cols);
    for (Eigen::Index i = 0; i < x.size(); ++i)
        x.data()[i] = normal(engine);
    return x;
}

QuantizedLayer quantize(const QuantConfig& config, int rows, int cols) {
    const RowMatrix w = syntheticMatrix(rows, cols, 7, "kernels.weights");
    const Eigen::MatrixXf h = seededHessian(cols, 11);
    const RowMatrix f = seededFisher(rows, cols, 13);
    return quantizeLayer(w, {&h, &f}, config, JobContext{}, "kernels");
}

// Row r's packed codes, for the bit-packer's unpackCode.
std::vector<std::uint32_t> codeWords(const CompressedMatrix& m, int r) {
    std::vector<std::uint32_t> words(m.codeRowBytes / 4);
    std::memcpy(words.data(), m.codes + std::size_t(r) * m.codeRowBytes, m.codeRowBytes);
    return words;
}

// The layer dequantized with every code set to `code`: s_g·(code − z_g) at each weight of a
// min-max grid (outliers keep their values).
RowMatrix withEveryCode(QuantizedLayer layer, int code) {
    StoredTensor& codes = layer.tensors.at("codes");
    const std::vector<std::uint16_t> same(std::size_t(layer.rows) * layer.cols,
                                          std::uint16_t(code));
    const std::vector<std::uint32_t> words =
        packRows(same, std::size_t(layer.cols), weightBits(layer.config));
    std::memcpy(codes.bytes.data(), words.data(), codes.bytes.size());
    return layer.dequantize();
}

// A permuted-order matrix back in original column order.
RowMatrix unpermute(const CompressedMatrix& m, const RowMatrix& permuted) {
    if (!m.permuted()) return permuted;
    RowMatrix original(permuted.rows(), permuted.cols());
    for (int j = 0; j < m.cols; ++j)
        original.col(m.originalColumn(j)) = permuted.col(j);
    return original;
}

// A copy of `size` bytes between unreadable pages, flush against the one after it (atEnd) or the
// one before: a kernel that reads past either end of an array faults.
class GuardedCopy {
public:
    GuardedCopy(const std::byte* bytes, std::size_t size, bool atEnd) {
        const auto page = static_cast<std::size_t>(sysconf(_SC_PAGESIZE));
        const std::size_t span = (size + page - 1) / page * page;
        length_ = span + 2 * page;
        base_ = static_cast<std::byte*>(
            mmap(nullptr, length_, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0));
        if (base_ == MAP_FAILED || mprotect(base_ + page, span, PROT_READ | PROT_WRITE) != 0)
            qFatal("cannot map guarded memory");
        data_ = base_ + page + (atEnd ? span - size : 0);
        std::memcpy(data_, bytes, size);
    }
    GuardedCopy(const GuardedCopy&) = delete;
    GuardedCopy& operator=(const GuardedCopy&) = delete;
    ~GuardedCopy() { munmap(base_, length_); }
    const std::byte* data() const { return data_; }

private:
    std::byte* base_ = nullptr;
    std::byte* data_ = nullptr;
    std::size_t length_ = 0;
};

// Overwrites element `i` of an index array (U8, U16 or I32) in place.
void setIndex(StoredTensor& t, std::size_t i, std::int64_t value) {
    const int width = indexBytes(t.dtype);
    std::memcpy(t.bytes.data() + i * std::size_t(width), &value, std::size_t(width)); // LE
}

QuantizedLayer withoutOutliers(QuantizedLayer layer) {
    for (const char* name : {"outlier_row_ptr", "outlier_cols", "outlier_values"})
        layer.tensors.erase(name);
    return layer;
}

} // namespace

class TestCompressedKernels : public QObject {
    Q_OBJECT
private slots:
    void kernelsMatchDequantize_data() {
        QTest::addColumn<QuantConfig>("config");
        QTest::addColumn<int>("rows");
        QTest::addColumn<int>("cols");
        QTest::addColumn<bool>("hasOutliers");
        QTest::newRow("rtn w3 g16 172x64") << QuantConfig(RtnConfig{3, 16}) << 172 << 64 << false;
        QTest::newRow("rtn w4 g128 64x172 (one partial group)")
            << QuantConfig(RtnConfig{4, 128}) << 64 << 172 << false;
        QTest::newRow("rtn w8 g32 40x100") << QuantConfig(RtnConfig{8, 32}) << 40 << 100 << false;
        QTest::newRow("gptq w4 g16 act-order 172x64")
            << QuantConfig(GptqConfig{4, 16, 128, 0.01, true}) << 172 << 64 << false;
        QTest::newRow("gptq w3 g0 64x172")
            << QuantConfig(GptqConfig{3, 0, 128, 0.01, false}) << 64 << 172 << false;
        QTest::newRow("gptq w2 g12 act-order 50x100 (groups off the 8-column grid)")
            << QuantConfig(GptqConfig{2, 12, 32, 0.01, true}) << 50 << 100 << false;
        QTest::newRow("rtn w1 g64 40x200 (windows before the array)")
            << QuantConfig(RtnConfig{1, 64}) << 40 << 200 << false;
        QTest::newRow("spqr w3 g16 qq3 b16 act-order 64x172")
            << QuantConfig(SpqrConfig{3, 16, 3, 16, 0.1, 128, 1.0, true}) << 64 << 172 << true;
        QTest::newRow("spqr w3 g32 qq3 b16 act-order 200x300 (the ~3.5-bit setting)")
            << QuantConfig(SpqrConfig{3, 32, 3, 16, 0.1, 128, 1.0, true}) << 200 << 300 << true;
        QTest::newRow("spqr w4 g16 qq2 b24 100x64")
            << QuantConfig(SpqrConfig{4, 16, 2, 24, 0.1, 128, 1.0, false}) << 100 << 64 << true;
        QTest::newRow("spqr w3 g16 qq3 b12 172x64 (rows off the 8-row grid)")
            << QuantConfig(SpqrConfig{3, 16, 3, 12, 0.1, 128, 1.0, false}) << 172 << 64 << true;
        QTest::newRow("spqr w5 g8 qq4 b8 act-order 100x200")
            << QuantConfig(SpqrConfig{5, 8, 4, 8, 0.1, 64, 1.0, true}) << 100 << 200 << true;
        QTest::newRow("squeezellm w3 sparse 0.5% 172x64")
            << QuantConfig(SqueezeConfig{3, 0.45, 0.05, 20}) << 172 << 64 << true;
        QTest::newRow("squeezellm w4 sparse 0.5% 64x172")
            << QuantConfig(SqueezeConfig{4, 0.45, 0.05, 20}) << 64 << 172 << true;
        QTest::newRow("squeezellm w4 sparse 5% 64x300 (many outliers per row)")
            << QuantConfig(SqueezeConfig{4, 5.0, 0.0, 20}) << 64 << 300 << true;
        QTest::newRow("squeezellm w2 dense 50x100")
            << QuantConfig(SqueezeConfig{2, 0, 0, 20}) << 50 << 100 << false;
        QTest::newRow("squeezellm w5 sparse 1% 40x100 (gathered LUT)")
            << QuantConfig(SqueezeConfig{5, 1.0, 0.0, 20}) << 40 << 100 << true;
    }

    // Decoded rows equal dequantize() bit for bit; products equal x·dequantize()ᵀ (summed in
    // double) within fp32 rounding of a reordered sum: |error| ≤ 1e-5 · Σ_j |w_j·x_j| over the
    // decoded weights before and after outlier replacement (the fused path adds each outlier as
    // (value − decoded)·x).
    void kernelsMatchDequantize() {
        QFETCH(QuantConfig, config);
        QFETCH(int, rows);
        QFETCH(int, cols);
        QFETCH(bool, hasOutliers);
        const QuantizedLayer layer = quantize(config, rows, cols);
        QCOMPARE(layer.outlierCount > 0, hasOutliers);
        const RowMatrix dense = layer.dequantize();
        const RowMatrix base = withoutOutliers(layer).dequantize();
        const auto op = CompressedLinear::fromLayer(std::make_shared<QuantizedLayer>(layer), "l");
        const CompressedMatrix& m = op->matrix();
        QCOMPARE(m.permuted(), std::holds_alternative<GptqConfig>(config)
                                   ? std::get<GptqConfig>(config).actOrder
                                   : std::holds_alternative<SpqrConfig>(config) &&
                                         std::get<SpqrConfig>(config).actOrder);

        for (const KernelIsa isa : {KernelIsa::Auto, KernelIsa::Avx2, KernelIsa::Portable}) {
            RowMatrix decoded(rows, cols);
            decodeCompressedRows(m, 0, rows, decoded.data(), isa);
            const RowMatrix original = unpermute(m, decoded);
            QVERIFY(std::memcmp(original.data(), dense.data(), sizeof(float) * dense.size()) == 0);
            // A block in the middle, decoded on its own.
            RowMatrix middle(std::min(rows - 3, 19), cols);
            decodeCompressedRows(m, 3, static_cast<int>(middle.rows()), middle.data(), isa);
            QVERIFY(middle == decoded.middleRows(3, middle.rows()));
        }

        const Eigen::MatrixXd denseD = dense.cast<double>();
        for (const int tokens : {1, 2, 3, 5, 8, 9, 33}) {
            const RowMatrix x = seededInputs(tokens, cols, 100 + tokens);
            const Eigen::MatrixXd expected = x.cast<double>() * denseD.transpose();
            const Eigen::MatrixXd scale =
                (x.cwiseAbs().cast<double>() *
                 (dense.cwiseAbs() + base.cwiseAbs()).cast<double>().transpose());
            for (const KernelIsa isa : {KernelIsa::Auto, KernelIsa::Avx2, KernelIsa::Portable})
                for (const bool accumulate : {false, true}) {
                    RowMatrix y = RowMatrix::Constant(tokens, rows, accumulate ? 0.5f : 7.0f);
                    multiplyCompressed(m, x.data(), cols, tokens, y.data(), rows, accumulate, isa);
                    const Eigen::MatrixXd got = y.cast<double>().array() - (accumulate ? 0.5 : 0.0);
                    const double worst =
                        ((got - expected).cwiseAbs().array() / (1e-5 * scale.array() + 1e-30))
                            .maxCoeff();
                    QVERIFY2(worst <= 1.0, qPrintable(QString("tokens %1 isa %2 accumulate %3: "
                                                              "error %4 × tolerance")
                                                          .arg(tokens)
                                                          .arg(int(isa))
                                                          .arg(accumulate)
                                                          .arg(worst)));
                }
        }
        // Without its kernel layout (a view compressedMatrix() did not build) the portable code
        // runs, bit for bit.
        {
            CompressedMatrix bare = m;
            bare.kernel.reset();
            const RowMatrix x2 = seededInputs(2, cols, 77);
            RowMatrix viaBare(2, rows), viaPortable(2, rows);
            multiplyCompressed(bare, x2.data(), cols, 2, viaBare.data(), rows, false);
            multiplyCompressed(m, x2.data(), cols, 2, viaPortable.data(), rows, false,
                               KernelIsa::Portable);
            QVERIFY(viaBare == viaPortable);
        }
        // The layout's memory: 32 bits per outlier, plus SpQR's regrouped statistics, or 3- and
        // 4-bit LUTs' fixed-point tables (32 bytes and a unit per row).
        const bool fixedLuts =
            m.grid == CompressedMatrix::Grid::Lut && (m.wbits == 3 || m.wbits == 4);
        if (m.grid != CompressedMatrix::Grid::Spqr)
            QCOMPARE(kernelLayoutBytes(m),
                     std::size_t(4 * layer.outlierCount + (fixedLuts ? 36 * rows : 0)));

        // Through the operator, with a strided caller-owned output.
        const RowMatrix x = seededInputs(3, cols, 5);
        RowMatrix y;
        op->apply(x, y, false);
        QCOMPARE(y.rows(), Eigen::Index(3));
        QVERIFY(((y.cast<double>() - x.cast<double>() * denseD.transpose()).cwiseAbs().array() <=
                 1e-5 * (x.cwiseAbs() * (dense.cwiseAbs() + base.cwiseAbs()).transpose())
                            .cast<double>()
                            .array())
                    .all());
    }

    void kernelsReadOnlyTheirArrays_data() { kernelsMatchDequantize_data(); }

    // Codes against unreadable pages on either side: the kernels' wide loads stay inside the
    // array (a stray read faults) and give what they give elsewhere, bit for bit.
    void kernelsReadOnlyTheirArrays() {
        QFETCH(QuantConfig, config);
        QFETCH(int, rows);
        QFETCH(int, cols);
        const QuantizedLayer layer = quantize(config, rows, cols);
        const auto op = CompressedLinear::fromLayer(std::make_shared<QuantizedLayer>(layer), "l");
        const RowMatrix x = seededInputs(3, cols, 21);
        for (const bool atEnd : {false, true}) {
            LayerArrays arrays = layerArrays(layer, "l", "");
            const GuardedCopy codes(arrays.at("codes").data, arrays.at("codes").size, atEnd);
            arrays.at("codes").data = codes.data();
            const CompressedMatrix guarded = compressedMatrix(layer.config, rows, cols, arrays);
            for (const KernelIsa isa : {KernelIsa::Auto, KernelIsa::Avx2, KernelIsa::Portable}) {
                RowMatrix decoded(rows, cols), expected(rows, cols);
                decodeCompressedRows(guarded, 0, rows, decoded.data(), isa);
                decodeCompressedRows(op->matrix(), 0, rows, expected.data(), isa);
                QVERIFY(decoded == expected);
                for (const int tokens : {1, 3}) {
                    RowMatrix y(tokens, rows), reference(tokens, rows);
                    multiplyCompressed(guarded, x.data(), cols, tokens, y.data(), rows, false, isa);
                    multiplyCompressed(op->matrix(), x.data(), cols, tokens, reference.data(), rows,
                                       false, isa);
                    QVERIFY(y == reference);
                }
                RowMatrix y(1, rows), reference(1, rows); // the int8 kernels too
                multiplyCompressed(guarded, x.data(), cols, 1, y.data(), rows, false, isa,
                                   Activations::Int8);
                multiplyCompressed(op->matrix(), x.data(), cols, 1, reference.data(), rows, false,
                                   isa, Activations::Int8);
                QVERIFY(y == reference);
            }
        }
    }

    // Batch-1 products with int8 activations on min-max grids (3 and 4 bits): within the bound
    // the quantized x allows, Σ_j s_g·c_j·d_b/2 per output (d_b = max|x| of block b of 32 permuted
    // columns / 127; the zero point is taken on the exact x, the outliers' corrections are exact),
    // with s_g and c_j read off the layer itself (its codes, and dequantize() with every code set
    // to 0 and to 1); not the exact product; and only for one token.
    void int8GridsStayWithinTheirBound_data() {
        QTest::addColumn<QuantConfig>("config");
        QTest::addColumn<int>("rows");
        QTest::addColumn<int>("cols");
        QTest::newRow("gptq w4 g32 act-order 100x256")
            << QuantConfig(GptqConfig{4, 32, 128, 0.01, true}) << 100 << 256;
        QTest::newRow("rtn w4 g128 64x384") << QuantConfig(RtnConfig{4, 128}) << 64 << 384;
        QTest::newRow("gptq w4 per row 40x160")
            << QuantConfig(GptqConfig{4, 0, 128, 0.01, false}) << 40 << 160;
        QTest::newRow("gptq w4 g128 act-order 37x512 (rows off the 4-row passes)")
            << QuantConfig(GptqConfig{4, 128, 128, 0.01, true}) << 37 << 512;
        QTest::newRow("gptq w4 g256 48x768")
            << QuantConfig(GptqConfig{4, 256, 128, 0.01, false}) << 48 << 768;
        QTest::newRow("spqr w3 g16 qq3 b16 1% act-order 100x256")
            << QuantConfig(SpqrConfig{3, 16, 3, 16, 0.1, 128, 1.0, true}) << 100 << 256;
        QTest::newRow("spqr w3 g32 qq3 b16 act-order 37x192 (rows off the 8-row grid)")
            << QuantConfig(SpqrConfig{3, 32, 3, 16, 0.1, 128, 1.0, true}) << 37 << 192;
        QTest::newRow("gptq w3 g64 act-order 48x320")
            << QuantConfig(GptqConfig{3, 64, 128, 0.01, true}) << 48 << 320;
        QTest::newRow("rtn w3 per row 40x96") << QuantConfig(RtnConfig{3, 0}) << 40 << 96;
    }

    void int8GridsStayWithinTheirBound() {
        QFETCH(QuantConfig, config);
        QFETCH(int, rows);
        QFETCH(int, cols);
        const QuantizedLayer layer = quantize(config, rows, cols);
        const RowMatrix dense = layer.dequantize();
        const RowMatrix zeroCoded = withEveryCode(layer, 0), oneCoded = withEveryCode(layer, 1);
        const auto op = CompressedLinear::fromLayer(std::make_shared<QuantizedLayer>(layer), "l");
        const CompressedMatrix& m = op->matrix();
        if (!int8ActivationsApply(m)) QSKIP("this build's CPU kernels have no AVX2");
        const RowMatrix x = seededInputs(1, cols, 5);
        const auto original = [&](int j) { return m.permuted() ? m.originalColumn(j) : j; };
        std::vector<double> blockScale(std::size_t(cols / 32), 0.0); // d_b
        for (int j = 0; j < cols; ++j) {
            double& d = blockScale[std::size_t(j / 32)];
            d = std::max(d, std::abs(double(x(0, original(j)))) / 127.0);
        }
        // Auto takes the AVX-512 kernels where the build targets VBMI and VNNI, for 3-bit rows of
        // whole 64-column steps and 4-bit groups of whole 128-column steps; Avx2 the AVX2
        // kernels: both stay within the bound.
        const bool avx512Steps = m.wbits == 3 ? cols % 64 == 0 : m.groupsize % 128 == 0;
        QCOMPARE(int8Kernel(m, KernelIsa::Auto) == Int8Kernel::Avx512Vnni,
                 kBuildHasAvx512Vnni && avx512Steps);
        QCOMPARE(int8Kernel(m, KernelIsa::Avx2), Int8Kernel::Avx2);
        RowMatrix y(1, rows), exact(1, rows);
        multiplyCompressed(m, x.data(), cols, 1, exact.data(), rows, false);
        for (const KernelIsa isa : {KernelIsa::Avx2, KernelIsa::Auto}) {
            multiplyCompressed(m, x.data(), cols, 1, y.data(), rows, false, isa, Activations::Int8);
            double worstShare = 0.0;
            for (int r = 0; r < rows; ++r) {
                // s_g: every code 1 minus every code 0 (an outlier, equal in both, gives 0).
                std::vector<double> scale(std::size_t(m.groups), 0.0);
                for (int j = 0; j < cols; ++j) {
                    double& s = scale[std::size_t(j / m.groupsize)];
                    s = std::max(s, double(oneCoded(r, original(j))) - zeroCoded(r, original(j)));
                }
                const std::vector<std::uint32_t> codes = codeWords(m, r);
                double expected = 0.0, bound = 0.0, magnitude = 0.0;
                for (int j = 0; j < cols; ++j) {
                    const double w = dense(r, original(j)), xj = x(0, original(j));
                    const double sc = scale[std::size_t(j / m.groupsize)] *
                                      unpackCode(codes.data(), std::size_t(j), m.wbits);
                    expected += w * xj;
                    bound += sc * blockScale[std::size_t(j / 32)] / 2;
                    magnitude += (std::abs(w) + std::abs(zeroCoded(r, original(j)))) * std::abs(xj);
                }
                const double error = std::abs(double(y(0, r)) - expected);
                QVERIFY2(
                    error <= bound + 1e-5 * magnitude,
                    qPrintable(QString("row %1: error %2, bound %3").arg(r).arg(error).arg(bound)));
                worstShare = std::max(worstShare, error / bound);
            }
            qInfo("%s kernel: worst error %.2f of the bound", int8KernelName(int8Kernel(m, isa)),
                  worstShare);
            QVERIFY(y != exact); // the activations were quantized
        }
        // More tokens than one are always exact.
        const RowMatrix x2 = seededInputs(2, cols, 6);
        RowMatrix y2(2, rows), exact2(2, rows);
        multiplyCompressed(m, x2.data(), cols, 2, y2.data(), rows, false, KernelIsa::Auto,
                           Activations::Int8);
        multiplyCompressed(m, x2.data(), cols, 2, exact2.data(), rows, false);
        QVERIFY(y2 == exact2);
        // Accumulating adds to y.
        RowMatrix accumulated = RowMatrix::Constant(1, rows, 0.5f);
        multiplyCompressed(m, x.data(), cols, 1, accumulated.data(), rows, true, KernelIsa::Auto,
                           Activations::Int8);
        QVERIFY(((accumulated.array() - 0.5f) - y.array()).abs().maxCoeff() < 1e-5f);
    }

    // Batch-1 products of 3- and 4-bit LUTs with int8 activations: the row's LUT on a fixed point
    // (u = max|LUT|/8128) and x quantized as above, so per output the error is at most
    // Σ_j (u/2)·|x_j| + (|LUT_c_j| + u/2)·d_b/2, computed here from the stored codes and LUTs;
    // the outliers' corrections are exact.
    void int8LutActivationsStayWithinTheirBound_data() {
        QTest::addColumn<QuantConfig>("config");
        QTest::addColumn<int>("rows");
        QTest::addColumn<int>("cols");
        QTest::newRow("squeezellm w4 0.45% sparse 100x256")
            << QuantConfig(SqueezeConfig{4, 0.45, 0.05, 20}) << 100 << 256;
        QTest::newRow("squeezellm w4 5% sparse 37x192")
            << QuantConfig(SqueezeConfig{4, 5.0, 0.0, 20}) << 37 << 192;
        QTest::newRow("squeezellm w4 5% sparse 37x384")
            << QuantConfig(SqueezeConfig{4, 5.0, 0.0, 20}) << 37 << 384;
        QTest::newRow("squeezellm w4 dense 40x128")
            << QuantConfig(SqueezeConfig{4, 0.0, 0.0, 20}) << 40 << 128;
        QTest::newRow("squeezellm w3 0.45% sparse 100x256")
            << QuantConfig(SqueezeConfig{3, 0.45, 0.05, 20}) << 100 << 256;
        QTest::newRow("squeezellm w3 5% sparse 37x96")
            << QuantConfig(SqueezeConfig{3, 5.0, 0.0, 20}) << 37 << 96;
    }

    void int8LutActivationsStayWithinTheirBound() {
        QFETCH(QuantConfig, config);
        QFETCH(int, rows);
        QFETCH(int, cols);
        const QuantizedLayer layer = quantize(config, rows, cols);
        const RowMatrix dense = layer.dequantize();
        const auto op = CompressedLinear::fromLayer(std::make_shared<QuantizedLayer>(layer), "l");
        const CompressedMatrix& m = op->matrix();
        // Where the build has AVX-512 VNNI, Auto takes its kernel for 4-bit rows of whole
        // 128-column steps; elsewhere where the build has AVX-512 it keeps LUTs on the exact
        // 16-lane kernels.
        const bool avx512Int8 = kBuildHasAvx512Vnni && m.wbits == 4 && cols % 128 == 0;
        QCOMPARE(int8Kernel(m, KernelIsa::Auto), avx512Int8 ? Int8Kernel::Avx512Vnni
                                                 : kBuildHasAvx512
                                                     ? Int8Kernel::None
                                                     : int8Kernel(m, KernelIsa::Avx2));
        if (!int8ActivationsApply(m, KernelIsa::Avx2))
            QSKIP("this build's CPU kernels have no AVX2");
        const RowMatrix x = seededInputs(1, cols, 7);
        std::vector<double> blockScale(std::size_t(cols / 32), 0.0); // d_b
        for (int j = 0; j < cols; ++j)
            blockScale[std::size_t(j / 32)] =
                std::max(blockScale[std::size_t(j / 32)], std::abs(double(x(0, j))) / 127.0);
        std::vector<KernelIsa> quantizedIsas{KernelIsa::Avx2};
        if (avx512Int8) quantizedIsas.push_back(KernelIsa::Auto);
        for (const KernelIsa isa : quantizedIsas) {
            RowMatrix y(1, rows);
            multiplyCompressed(m, x.data(), cols, 1, y.data(), rows, false, isa, Activations::Int8);
            double worstShare = 0.0;
            for (int r = 0; r < rows; ++r) {
                const int levels = 1 << m.wbits;
                double lut[16], peak = 0.0;
                for (int c = 0; c < levels; ++c) {
                    lut[c] =
                        f16ToFloat(loadStored<std::uint16_t>(m.lut, std::size_t(r) * levels + c));
                    peak = std::max(peak, std::abs(lut[c]));
                }
                const double unit = peak / 8128;
                const std::vector<std::uint32_t> codes = codeWords(m, r);
                double expected = 0.0, bound = 0.0;
                for (int j = 0; j < cols; ++j) {
                    const double w = lut[unpackCode(codes.data(), std::size_t(j), m.wbits)];
                    expected += double(dense(r, j)) * x(0, j);
                    bound += unit / 2 * std::abs(x(0, j)) +
                             (std::abs(w) + unit / 2) * blockScale[std::size_t(j / 32)] / 2;
                }
                const double error = std::abs(double(y(0, r)) - expected);
                QVERIFY2(
                    error <= bound * (1 + 1e-5),
                    qPrintable(QString("row %1: error %2, bound %3").arg(r).arg(error).arg(bound)));
                worstShare = std::max(worstShare, error / bound);
            }
            qInfo("%s kernel: worst error %.2f of the bound", int8KernelName(int8Kernel(m, isa)),
                  worstShare);
            // Accumulating adds to y.
            RowMatrix accumulated = RowMatrix::Constant(1, rows, 0.5f);
            multiplyCompressed(m, x.data(), cols, 1, accumulated.data(), rows, true, isa,
                               Activations::Int8);
            QVERIFY(((accumulated.array() - 0.5f) - y.array()).abs().maxCoeff() < 1e-5f);
        }
        if (kBuildHasAvx512 && !avx512Int8) { // Auto's "int8" product is then the exact one
            RowMatrix autoY(1, rows), exact(1, rows);
            multiplyCompressed(m, x.data(), cols, 1, autoY.data(), rows, false, KernelIsa::Auto,
                               Activations::Int8);
            multiplyCompressed(m, x.data(), cols, 1, exact.data(), rows, false);
            QVERIFY(autoY == exact);
        }
    }

    // The fused path must add outliers: a huge replaced value shows up in the product exactly.
    void outliersReplaceTheirPosition() {
        QuantizedLayer layer = quantize(SpqrConfig{3, 16, 3, 16, 0.1, 128, 1.0, false}, 32, 64);
        QVERIFY(layer.outlierCount > 0);
        StoredTensor& values = layer.tensors.at("outlier_values");
        const std::uint16_t big = floatToF16(1000.0f);
        std::memcpy(values.bytes.data(), &big, 2);
        const int row = [&] {
            const StoredTensor& ptr = layer.tensors.at("outlier_row_ptr");
            for (int r = 0;; ++r)
                if (ptr.indexAt(std::size_t(r) + 1) > 0) return r;
        }();
        const int column = int(layer.tensors.at("outlier_cols").indexAt(0));
        const auto op = CompressedLinear::fromLayer(std::make_shared<QuantizedLayer>(layer), "l");
        RowMatrix x = RowMatrix::Zero(1, 64);
        x(0, column) = 1.0f;
        for (const KernelIsa isa : {KernelIsa::Auto, KernelIsa::Avx2, KernelIsa::Portable}) {
            RowMatrix y(1, 32);
            multiplyCompressed(op->matrix(), x.data(), 64, 1, y.data(), 32, false, isa);
            QCOMPARE(y(0, row), 1000.0f);
        }
    }

    // Damaged arrays are refused with the tensor and the problem named.
    void validationErrors() {
        const QuantizedLayer gptq = quantize(GptqConfig{3, 16, 128, 0.01, true}, 20, 70);
        const QuantizedLayer spqr =
            quantize(SpqrConfig{3, 16, 3, 16, 0.1, 128, 1.0, false}, 20, 70);
        const auto errorFor = [](QuantizedLayer layer,
                                 const std::function<void(QuantizedLayer&)>& damage) {
            damage(layer);
            return errorOf([&] {
                compressedMatrix(layer.config, layer.rows, layer.cols,
                                 layerArrays(layer, "blk.q", "file.safetensors"));
            });
        };
        QCOMPARE(errorFor(gptq, [](QuantizedLayer&) {}), QString("no error"));
        QCOMPARE(errorFor(spqr, [](QuantizedLayer&) {}), QString("no error"));
        QCOMPARE(errorFor(gptq, [](QuantizedLayer& l) { l.tensors.erase("scales"); }),
                 QString("file.safetensors: layer 'blk.q' (gptq) has no tensor 'blk.q.scales'"));
        QCOMPARE(errorFor(gptq, [](QuantizedLayer& l) { l.tensors.at("codes").dtype = "I32"; }),
                 QString("file.safetensors: tensor 'blk.q.codes' has dtype I32 but must be U32"));
        QCOMPARE(errorFor(gptq,
                          [](QuantizedLayer& l) {
                              l.tensors.at("codes").shape = {20, 6};
                          }),
                 QString("file.safetensors: tensor 'blk.q.codes' has shape [20, 6] but must be "
                         "[20, 7] for a gptq layer of 20×70"));
        // 70 3-bit codes fill 210 of 224 bits: the last 14 must be clear.
        QCOMPARE(errorFor(gptq,
                          [](QuantizedLayer& l) {
                              l.tensors.at("codes").bytes[4 * 7 * 3 + 27] |= 0x80;
                          }),
                 QString("file.safetensors: tensor 'blk.q.codes' has codes out of range: row 3 has "
                         "bits set past its 70 3-bit codes"));
        QCOMPARE(errorFor(gptq,
                          [](QuantizedLayer& l) {
                              const std::uint16_t z = floatToF16(8.0f);
                              std::memcpy(l.tensors.at("zeros").bytes.data() + 2 * 9, &z, 2);
                          }),
                 QString("file.safetensors: tensor 'blk.q.zeros' holds zero point 8.000000 at "
                         "element 9, not an integer code in [0, 7]"));
        QCOMPARE(errorFor(gptq,
                          [](QuantizedLayer& l) {
                              const std::uint16_t inf = 0x7c00;
                              std::memcpy(l.tensors.at("scales").bytes.data() + 2 * 5, &inf, 2);
                          }),
                 QString("file.safetensors: tensor 'blk.q.scales' holds a non-finite value at "
                         "element 5"));
        QCOMPARE(errorFor(gptq,
                          [](QuantizedLayer& l) {
                              StoredTensor& perm = l.tensors.at("perm");
                              setIndex(perm, 1, perm.indexAt(0)); // entry 1 = entry 0
                          }),
                 QString("file.safetensors: tensor 'blk.q.perm' is not a permutation: column %1 "
                         "appears twice")
                     .arg(gptq.tensors.at("perm").indexAt(0)));
        QCOMPARE(
            errorFor(gptq, [](QuantizedLayer& l) { l.tensors["lut"] = l.tensors.at("zeros"); }),
            QString("file.safetensors: tensor 'blk.q.lut' is not part of a gptq layer"));
        QVERIFY(spqr.outlierCount >= 2);
        const auto& rowPtr = spqr.tensors.at("outlier_row_ptr");
        int late = 0; // the first row that begins after an outlier
        while (rowPtr.indexAt(std::size_t(late)) == 0)
            ++late;
        const std::int64_t begins = rowPtr.indexAt(std::size_t(late));
        QCOMPARE(errorFor(spqr,
                          [&](QuantizedLayer& l) { // row `late` ends before it begins
                              setIndex(l.tensors.at("outlier_row_ptr"), std::size_t(late) + 1,
                                       begins - 1);
                          }),
                 QString("file.safetensors: tensor 'blk.q.outlier_row_ptr' row pointers are not "
                         "monotone: row %1 ends at %2, before it begins at %3")
                     .arg(late)
                     .arg(begins - 1)
                     .arg(begins));
        int busy = 0; // a row with an outlier
        while (rowPtr.indexAt(std::size_t(busy) + 1) == rowPtr.indexAt(std::size_t(busy)))
            ++busy;
        const std::int64_t first = rowPtr.indexAt(std::size_t(busy));
        QCOMPARE(errorFor(spqr,
                          [&](QuantizedLayer& l) {
                              setIndex(l.tensors.at("outlier_cols"), std::size_t(first), 70);
                          }),
                 QString("file.safetensors: tensor 'blk.q.outlier_cols' has column index 70 "
                         "(entry %1, row %2) outside [0, 70)")
                     .arg(first)
                     .arg(busy));
    }
};

QTEST_APPLESS_MAIN(TestCompressedKernels)
#include "test_compressed_kernels.moc"
