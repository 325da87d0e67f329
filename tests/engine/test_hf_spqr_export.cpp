// Hugging Face SpQR export (docs/HF_SPQR.md), read back by this file's own decoder of the published
// layout — the safetensors bytes read by hand, each tile word's fields and the second-level bytes
// unpacked here, fp16 arithmetic through the compiler's _Float16, never a call into the writer —
// and compared weight by weight with the quantlens checkpoint's dequantize() within the documented
// fp16 bounds, its stored fields with the checkpoint's arrays bit for bit; config.json's
// quantization_config against the file; the fp16 tensors against the source; refusals and
// cancels leave nothing.
#include "error_text.h"
#include "safetensors_mutator.h"
#include "synthetic_fixtures.h"
#include "test_data.h"

#include "quantlens/core/error.h"
#include "quantlens/formats/model_export.h"
#include "quantlens/formats/model_loading.h"
#include "quantlens/runtime/compressed_linear.h"

#include <QTemporaryDir>

#include <nlohmann/json.hpp>

#include <algorithm>
#include <bit>
#include <cmath>
#include <cstring>
#include <set>
#include <stdexcept>

using namespace quantlens;
using quantlens::test::errorOf;
namespace fs = std::filesystem;

namespace {

// stories260K: 5 blocks; q/o_proj 64×64, k/v_proj 32×64 (4 KV heads of 8), gate/up_proj 172×64,
// down_proj 64×172.
constexpr int kBlocks = 5;
constexpr int kHeadDim = 8;
const char* const kPaths[] = {"self_attn.q_proj", "self_attn.k_proj", "self_attn.v_proj",
                              "self_attn.o_proj", "mlp.gate_proj",    "mlp.up_proj",
                              "mlp.down_proj"};

std::string layerName(int block, int layer) {
    return "model.layers." + std::to_string(block) + "." + kPaths[layer];
}

// The run the format holds (β1 = groupsize, β2 = stats_groupsize), with a threshold low enough
// that stories260K's attention layers have outliers.
SpqrConfig holdable() {
    SpqrConfig spqr;
    spqr.wbits = 3;
    spqr.groupsize = 16;
    spqr.qqBits = 3;
    spqr.statsGroupsize = 16;
    spqr.outlierThreshold = 0.1;
    return spqr;
}

std::vector<std::int32_t> calibration() {
    return test::randomTokens(512, 512, 3);
}

void quantize(const fs::path& model, const QuantConfig& config, ExportFormat format,
              const fs::path& out) {
    quantizeToDirectory(*loadModel(model), calibration(), config, CalibrationConfig{4, 32}, format,
                        out, {}, JobContext{});
}

float half(std::uint16_t bits) {
    return static_cast<float>(std::bit_cast<_Float16>(bits));
}

// One fp16 operation: the operands are fp16 values, the result rounded to fp16 by the compiler.
float h(float x) {
    return static_cast<float>(static_cast<_Float16>(x));
}

std::uint16_t halfBits(float x) {
    return std::bit_cast<std::uint16_t>(static_cast<_Float16>(x));
}

// Code i of a row of `bits`-bit codes packed LSB-first into 32-bit words (docs/FORMAT.md), read
// from a quantlens array: row `row` starts on word row·ceil(length·bits/32).
int packedCode(const StoredTensor& t, std::size_t length, int bits, std::size_t row,
               std::size_t i) {
    const std::size_t stride = (length * std::size_t(bits) + 31) / 32;
    const auto* words = reinterpret_cast<const std::uint32_t*>(t.bytes.data());
    const std::size_t bit = i * std::size_t(bits), word = row * stride + bit / 32;
    std::uint64_t window = words[word] >> (bit % 32);
    if (bit % 32 + std::size_t(bits) > 32)
        window |= std::uint64_t(words[word + 1]) << (32 - bit % 32);
    return static_cast<int>(window & ((1u << bits) - 1));
}

// A converted layer decoded from docs/HF_SPQR.md alone, as spqr_quant's kernels compute it.
struct Decoded {
    int rows = 0, cols = 0;
    // Per output row and permuted column: the 3-bit fields and the weight decoded in fp16.
    std::vector<int> codes, scaleCodes,
        zeroCodes;                          // codes [rows, cols]; first-level [rows, cols/16]
    std::vector<std::uint16_t> secondLevel; // [rows/16, cols/16, 4]: ss.x, ss.y, zz.x, zz.y
    std::vector<float> weights;             // dense part, [rows, cols]
    std::vector<double> bounds;             // the bound of each dense weight
    std::vector<std::int32_t> rowOffsets;
    std::vector<int> outlierColumns;
    std::vector<float> outlierValues;
    std::vector<int> perm; // in_perm
    std::vector<std::string> problems;
};

Decoded decode(const test::RawFile& file, const std::string& prefix, int rows, int cols) {
    Decoded d;
    d.rows = rows;
    d.cols = cols;
    const auto words = file.values<std::uint64_t>(prefix + ".dense_weights");
    d.rowOffsets = file.values<std::int32_t>(prefix + ".row_offsets");
    const auto colVals = file.values<std::uint32_t>(prefix + ".col_vals");
    const auto inPerm = file.values<std::uint32_t>(prefix + ".in_perm");
    if (words.size() != std::size_t(rows) * cols / 16) d.problems.push_back("dense_weights size");
    if (d.rowOffsets.size() != std::size_t(rows) + 1) d.problems.push_back("row_offsets size");
    if (inPerm.size() != std::size_t(cols) / 2) d.problems.push_back("in_perm size");
    if (!d.problems.empty()) return d;

    const int tileCols = cols / 16;
    d.codes.resize(std::size_t(rows) * cols);
    d.weights.resize(d.codes.size());
    d.bounds.resize(d.codes.size());
    d.scaleCodes.resize(std::size_t(rows) * tileCols);
    d.zeroCodes.resize(d.scaleCodes.size());
    d.secondLevel.resize(std::size_t(rows / 16) * tileCols * 4);
    for (int ti = 0; ti < rows / 16; ++ti)
        for (int tj = 0; tj < tileCols; ++tj) {
            // Word k of a tile is row 16·ti + k; tiles of a tile row lie along the input.
            const std::uint64_t* tile = words.data() + (std::size_t(ti) * tileCols + tj) * 16;
            std::uint64_t second = 0;
            for (int k = 0; k < 16; ++k) {
                const std::uint64_t byte = (tile[k] >> 54) & 0xff;
                if (k % 2 == 1 && byte != ((tile[k - 1] >> 54) & 0xff))
                    d.problems.push_back("rows " + std::to_string(k - 1) + " and " +
                                         std::to_string(k) + " of a tile carry different bytes");
                if (tile[k] >> 62) d.problems.push_back("bits 62-63 set");
                second |= byte << (8 * (k / 2));
            }
            std::uint16_t* stats = d.secondLevel.data() + (std::size_t(ti) * tileCols + tj) * 4;
            for (int f = 0; f < 4; ++f)
                stats[f] = std::uint16_t(second >> (16 * f));
            const float ssx = half(stats[0]), ssy = half(stats[1]); // scales of scales, zeros
            const float zzx = half(stats[2]), zzy = half(stats[3]); // zeros of scales, zeros
            for (int k = 0; k < 16; ++k) {
                const int r = ti * 16 + k;
                const int sc = int(tile[k] & 7), zc = int((tile[k] >> 3) & 7);
                d.scaleCodes[std::size_t(r) * tileCols + tj] = sc;
                d.zeroCodes[std::size_t(r) * tileCols + tj] = zc;
                const float s = h(ssx * h(float(sc) - zzx));
                const float z = h(ssy * h(float(zc) - zzy));
                for (int i = 0; i < 16; ++i) {
                    const int q = int((tile[k] >> (6 + 3 * i)) & 7);
                    const std::size_t at = std::size_t(r) * cols + std::size_t(tj) * 16 + i;
                    d.codes[at] = q;
                    d.weights[at] = h(s * h(float(q) - z));
                    const double as = std::abs(s), az = std::abs(z);
                    d.bounds[at] =
                        std::ldexp(as * (q + 2 * az), -8) +
                        std::ldexp((1 + std::abs(ssx) + std::abs(ssy)) * (2 + q + az + as), -24);
                }
            }
        }
    for (const std::uint32_t cv : colVals) {
        d.outlierColumns.push_back(int(cv & 0xffff));
        d.outlierValues.push_back(half(std::uint16_t(cv >> 16)));
    }
    for (const std::uint32_t pair : inPerm) {
        d.perm.push_back(int(pair & 0xffff));
        d.perm.push_back(int(pair >> 16));
    }
    return d;
}

// Hugging Face's row `to` of a q/k_proj is llama2.c's row hfRowOf[to]: within each head of d
// rows, llama2.c rotates pairs (2i, 2i + 1) and Hugging Face (i, i + d/2).
std::vector<int> hfRowOf(int rows, int headDim) {
    std::vector<int> from(static_cast<std::size_t>(rows));
    for (int head = 0; head < rows / headDim; ++head)
        for (int i = 0; i < headDim / 2; ++i)
            for (int k = 0; k < 2; ++k)
                from[std::size_t(head * headDim + k * headDim / 2 + i)] =
                    head * headDim + 2 * i + k;
    return from;
}

struct Comparison {
    double maxError = 0.0;
    std::int64_t outliers = 0;
};

// Checks a converted layer against the checkpoint's: every field equal to the stored arrays (rows
// through `rowOf`, identity when empty), every weight within its bound of dequantize().
Comparison compareLayer(const test::RawFile& file, const std::string& prefix,
                        const QuantizedLayer& layer, const std::vector<int>& rowOf) {
    const int rows = layer.rows, cols = layer.cols, tileCols = cols / 16;
    const Decoded d = decode(file, prefix, rows, cols);
    Comparison result;
    [&] {
        const std::string problem = d.problems.empty() ? "" : prefix + ": " + d.problems.front();
        QVERIFY2(d.problems.empty(), problem.c_str());
        const auto source = [&](int to) { return rowOf.empty() ? to : rowOf[std::size_t(to)]; };

        // The permutation, or the identity without act-order.
        const auto perm = layer.tensors.find("perm");
        for (int j = 0; j < cols; ++j)
            QCOMPARE(d.perm[std::size_t(j)],
                     perm == layer.tensors.end() ? j : int(perm->second.indexAt(std::size_t(j))));

        // Codes and both levels of statistics, moved unchanged.
        const StoredTensor& scaleStats = layer.tensors.at("scale_stats");
        const StoredTensor& zeroStats = layer.tensors.at("zero_stats");
        for (int to = 0; to < rows; ++to) {
            const int r = source(to);
            QCOMPARE(r / 16, to / 16);
            for (int j = 0; j < cols; ++j)
                QCOMPARE(d.codes[std::size_t(to) * cols + j],
                         packedCode(layer.tensors.at("codes"), std::size_t(cols), 3, std::size_t(r),
                                    std::size_t(j)));
            for (int g = 0; g < tileCols; ++g) {
                QCOMPARE(d.scaleCodes[std::size_t(to) * tileCols + g],
                         packedCode(layer.tensors.at("scale_codes"), std::size_t(rows), 3,
                                    std::size_t(g), std::size_t(r)));
                QCOMPARE(d.zeroCodes[std::size_t(to) * tileCols + g],
                         packedCode(layer.tensors.at("zero_codes"), std::size_t(rows), 3,
                                    std::size_t(g), std::size_t(r)));
            }
        }
        for (int ti = 0; ti < rows / 16; ++ti)
            for (int g = 0; g < tileCols; ++g) {
                const std::uint16_t* stats =
                    d.secondLevel.data() + (std::size_t(ti) * tileCols + g) * 4;
                const std::size_t at = (std::size_t(g) * (rows / 16) + ti) * 2;
                QCOMPARE(stats[0], scaleStats.at<std::uint16_t>(at));     // W_s_s
                QCOMPARE(stats[1], zeroStats.at<std::uint16_t>(at));      // W_z_s
                QCOMPARE(stats[2], scaleStats.at<std::uint16_t>(at + 1)); // W_s_z
                QCOMPARE(stats[3], zeroStats.at<std::uint16_t>(at + 1));  // W_z_z
            }

        // Outliers at the checkpoint's positions; the kernels' sum lands on the checkpoint's
        // weight within half an fp16 step of the correction.
        const RowMatrix w = layer.dequantize();
        std::vector<float> effective(d.weights.begin(), d.weights.end());
        std::vector<char> isOutlier(effective.size(), 0);
        const auto ptr = layer.tensors.find("outlier_row_ptr");
        QCOMPARE(d.rowOffsets.front(), 0);
        for (int to = 0; to < rows; ++to) {
            const int r = source(to);
            std::vector<int> expected;
            if (ptr != layer.tensors.end())
                for (auto e = ptr->second.indexAt(std::size_t(r));
                     e < ptr->second.indexAt(std::size_t(r) + 1); ++e)
                    expected.push_back(
                        int(layer.tensors.at("outlier_cols").indexAt(std::size_t(e))));
            const std::vector<int> written(d.outlierColumns.begin() + d.rowOffsets[std::size_t(to)],
                                           d.outlierColumns.begin() +
                                               d.rowOffsets[std::size_t(to) + 1]);
            QCOMPARE(written, expected);
            for (auto e = d.rowOffsets[std::size_t(to)]; e < d.rowOffsets[std::size_t(to) + 1];
                 ++e) {
                const int j = d.outlierColumns[std::size_t(e)];
                const std::size_t at = std::size_t(to) * cols + j;
                const double decoded = d.weights[at];
                const double sum = decoded + double(d.outlierValues[std::size_t(e)]);
                const double target = w(r, d.perm[std::size_t(j)]);
                const double error = std::abs(sum - target);
                QVERIFY2(
                    error <= std::ldexp(std::abs(target - decoded), -11) + std::ldexp(1.0, -25),
                    (prefix + " outlier row " + std::to_string(r) + " column " + std::to_string(j) +
                     ": " + std::to_string(sum) + " vs " + std::to_string(target))
                        .c_str());
                result.maxError = std::max(result.maxError, error);
                isOutlier[at] = 1;
                ++result.outliers;
            }
        }
        QCOMPARE(result.outliers, layer.outlierCount);

        // Every other weight within the bound of the decode in fp16 arithmetic.
        for (int to = 0; to < rows; ++to)
            for (int j = 0; j < cols; ++j) {
                const std::size_t at = std::size_t(to) * cols + j;
                if (isOutlier[at]) continue;
                const double error =
                    std::abs(double(d.weights[at]) - double(w(source(to), d.perm[std::size_t(j)])));
                QVERIFY2(error <= d.bounds[at],
                         (prefix + " row " + std::to_string(source(to)) + " permuted column " +
                          std::to_string(j) + ": error " + std::to_string(error) + " > bound " +
                          std::to_string(d.bounds[at]))
                             .c_str());
                result.maxError = std::max(result.maxError, error);
            }
    }();
    return result;
}

const HfSpqrLayerReport& reportOf(const HfSpqrResult& result, const std::string& name) {
    for (const HfSpqrLayerReport& layer : result.layers)
        if (layer.name == name) return layer;
    throw std::runtime_error("no report for " + name);
}

nlohmann::json jsonFile(const fs::path& file) {
    return nlohmann::json::parse(test::readBytes(file));
}

} // namespace

class TestHfSpqrExport : public QObject {
    Q_OBJECT
    QTemporaryDir scratch_;
    fs::path root_;
    fs::path checkpoint_; // stories260K-hf, SpQR w3 g16 qq3 β2=16, act-order

private slots:
    void initTestCase() {
        QUANTLENS_REQUIRE_DATA("stories260K-hf");
        root_ = scratch_.path().toStdString();
        checkpoint_ = root_ / "spqr";
        quantize(test::dataPath("stories260K-hf"), holdable(), ExportFormat::Quantlens,
                 checkpoint_);
    }

    // Every tensor, config.json and the report, against the checkpoint and the source.
    void convertsTheLayersTheKernelsHold() {
        const fs::path out = root_ / "hf";
        const ExportResult result = exportModel(checkpoint_, ExportFormat::HfSpqr, out, {});
        QVERIFY(result.hfSpqr.has_value());
        const HfSpqrResult& report = *result.hfSpqr;
        QCOMPARE(test::entries(out),
                 (std::vector<std::string>{"config.json", "model.safetensors", "tokenizer.model"}));
        QCOMPARE(result.fileBytes, fs::file_size(out / "model.safetensors"));
        QCOMPARE(test::readBytes(out / "tokenizer.model"),
                 test::readBytes(test::dataPath("stories260K-hf/tokenizer.model")));

        const auto model = loadModel(checkpoint_, CompressedLayers::Keep);
        const test::RawFile file(out / "model.safetensors");
        const test::RawFile source(test::dataPath("stories260K-hf/model.safetensors"));
        QCOMPARE(file.parts.header["__metadata__"]["format"].get<std::string>(), std::string("pt"));

        // config.json: the source's, fp16, with the SpQR quantization_config.
        const nlohmann::json config = jsonFile(out / "config.json");
        nlohmann::json expectedConfig = jsonFile(test::dataPath("stories260K-hf/config.json"));
        expectedConfig["torch_dtype"] = "float16";
        expectedConfig["quantization_config"] = config["quantization_config"];
        QCOMPARE(config, expectedConfig);
        const nlohmann::json& q = config["quantization_config"];
        QCOMPARE(q["quant_method"].get<std::string>(), std::string("spqr"));
        QCOMPARE(q["bits"].get<int>(), 3);
        QCOMPARE(q["beta1"].get<int>(), 16);
        QCOMPARE(q["beta2"].get<int>(), 16);

        // gate/up/down (172 wide) stay fp16, listed as transformers' old and new checks read them.
        std::vector<std::string> notConverted;
        for (int b = 0; b < kBlocks; ++b)
            for (int i = 4; i < 7; ++i) {
                notConverted.push_back(layerName(b, i) + ".weight");
                notConverted.push_back(layerName(b, i));
            }
        notConverted.push_back("lm_head.weight");
        notConverted.push_back("lm_head");
        QCOMPARE(q["modules_to_not_convert"].get<std::vector<std::string>>(), notConverted);
        QCOMPARE(report.modulesToNotConvert, notConverted);

        // Every tensor: the embedding and norms fp16 of the source, no head (tied), each layer
        // either four converted arrays or an fp16 weight.
        std::set<std::string> expectedNames;
        const auto expectF16 = [&](const std::string& name, const std::vector<float>& values,
                                   const std::vector<std::int64_t>& shape) {
            expectedNames.insert(name);
            QCOMPARE(file.dtype(name), std::string("F16"));
            QCOMPARE(file.shape(name), shape);
            const auto bits = file.values<std::uint16_t>(name);
            QCOMPARE(bits.size(), values.size());
            for (std::size_t k = 0; k < values.size(); ++k)
                QCOMPARE(bits[k], halfBits(values[k]));
        };
        const auto fromSource = [&](const std::string& name) {
            QCOMPARE(source.dtype(name), std::string("F32"));
            expectF16(name, source.values<float>(name), source.shape(name));
        };
        fromSource("model.embed_tokens.weight");
        fromSource("model.norm.weight");
        QVERIFY(!file.has("lm_head.weight"));
        const nlohmann::json& shapes = q["shapes"];
        std::uint64_t linearBytes = 0, sourceBytes = 0;
        std::int64_t parameters = 0, outliers = 0;
        double maxError = 0.0;
        for (int b = 0; b < kBlocks; ++b) {
            const std::string block = "model.layers." + std::to_string(b) + ".";
            fromSource(block + "input_layernorm.weight");
            fromSource(block + "post_attention_layernorm.weight");
            for (int i = 0; i < 7; ++i) {
                const std::string name = layerName(b, i);
                const QuantizedLayer layer =
                    model->compressedLayers[std::size_t(b)][std::size_t(i)]->quantizedLayer();
                const HfSpqrLayerReport& r = reportOf(report, name);
                QCOMPARE(r.rows, layer.rows);
                QCOMPARE(r.cols, layer.cols);
                parameters += r.parameters();
                sourceBytes += layer.storedBytes();
                QCOMPARE(r.sourceBytes, std::uint64_t(layer.storedBytes()));
                if (i >= 4) {
                    QVERIFY(!r.converted);
                    QVERIFY2(r.reason.find("must be multiples of 16") != std::string::npos,
                             r.reason.c_str());
                    QVERIFY(!shapes.contains(name + ".dense_weights.shape"));
                    const RowMatrix w = layer.dequantize();
                    expectF16(name + ".weight", std::vector<float>(w.data(), w.data() + w.size()),
                              {layer.rows, layer.cols});
                    linearBytes += file.bytes(name + ".weight");
                    continue;
                }
                QVERIFY2(r.converted, (name + ": " + r.reason).c_str());
                QVERIFY(!file.has(name + ".weight"));
                const std::pair<const char*, std::int64_t> arrays[] = {
                    {"dense_weights", std::int64_t(layer.rows) * layer.cols / 16},
                    {"row_offsets", layer.rows + 1},
                    {"col_vals", layer.outlierCount},
                    {"in_perm", layer.cols / 2}};
                for (const auto& [array, count] : arrays) {
                    const std::string tensor = name + "." + array;
                    expectedNames.insert(tensor);
                    QCOMPARE(file.dtype(tensor),
                             std::string(array == std::string("dense_weights") ? "I64" : "I32"));
                    QCOMPARE(file.shape(tensor), (std::vector<std::int64_t>{count}));
                    QCOMPARE(shapes[tensor + ".shape"].get<std::int64_t>(), count);
                    linearBytes += file.bytes(tensor);
                }
                const Comparison c = compareLayer(file, name, layer, {});
                if (QTest::currentTestFailed()) return;
                QCOMPARE(r.outliers, c.outliers);
                QCOMPARE(r.maxError, c.maxError); // the writer measured what the file decodes to
                QCOMPARE(r.exportBytes, std::uint64_t(file.bytes(name + ".dense_weights") +
                                                      file.bytes(name + ".row_offsets") +
                                                      file.bytes(name + ".col_vals") +
                                                      file.bytes(name + ".in_perm")));
                outliers += c.outliers;
                maxError = std::max(maxError, c.maxError);
            }
        }
        QCOMPARE(shapes.size(), std::size_t(kBlocks * 4 * 4));
        std::set<std::string> names;
        for (const auto& item : file.parts.header.items())
            if (item.key() != "__metadata__") names.insert(item.key());
        QCOMPARE(names, expectedNames);
        QVERIFY2(outliers > 0, "no outliers: the CSR path is untested; lower the threshold");
        qInfo("converted layers: %lld outliers; max |kernel decode − dequantize()| %.3g",
              static_cast<long long>(outliers), maxError);

        // The bits: 4 per weight for codes and statistics plus CSR and permutation where
        // converted, 16 where not; the checkpoint's own for comparison.
        QCOMPARE(report.convertedLayers(), kBlocks * 4);
        QCOMPARE(report.denseParameters, std::int64_t(kBlocks) * 3 * 172 * 64);
        QCOMPARE(report.parameters, parameters);
        QCOMPARE(report.bitsPerParameter, 8.0 * double(linearBytes) / double(parameters));
        QCOMPARE(report.sourceBitsPerParameter, 8.0 * double(sourceBytes) / double(parameters));
        QCOMPARE(reportOf(report, layerName(0, 0)).bitsPerParameter(),
                 4.0 + 32.0 * (65 + double(reportOf(report, layerName(0, 0)).outliers)) / 4096.0 +
                     16.0 / 64.0);
    }

    // A llama2.c checkpoint keeps llama2.c's q/k rows; with heads of 8 rows every row stays in its
    // 16-row tile, so q/k_proj convert with their rows moved to Hugging Face's order.
    void llama2cRowsMoveWithinTiles() {
        QUANTLENS_REQUIRE_DATA("stories260K/stories260K.bin");
        const fs::path checkpoint = root_ / "spqr-llama2c", out = root_ / "hf-llama2c";
        quantize(test::dataPath("stories260K/stories260K.bin"), holdable(), ExportFormat::Quantlens,
                 checkpoint);
        const ExportResult result = exportModel(checkpoint, ExportFormat::HfSpqr, out, {});
        const auto model = loadModel(checkpoint, CompressedLayers::Keep);
        QVERIFY(model->config.ropeLayout == RopeLayout::Interleaved);
        const test::RawFile file(out / "model.safetensors");
        for (int b = 0; b < kBlocks; ++b)
            for (int i = 0; i < 4; ++i) {
                const QuantizedLayer layer =
                    model->compressedLayers[std::size_t(b)][std::size_t(i)]->quantizedLayer();
                QVERIFY(reportOf(*result.hfSpqr, layerName(b, i)).converted);
                compareLayer(file, layerName(b, i), layer,
                             i < 2 ? hfRowOf(layer.rows, kHeadDim) : std::vector<int>{});
                if (QTest::currentTestFailed()) return;
            }
        // The fp16 FFN layers need no row order; the dense export of the same checkpoint agrees
        // on q_proj's rows (both in Hugging Face's order).
        exportModel(checkpoint, ExportFormat::DenseF32, root_ / "dense-llama2c", {});
        const test::RawFile dense(root_ / "dense-llama2c/model.safetensors");
        const auto q = dense.values<float>(layerName(0, 0) + ".weight");
        const RowMatrix w = model->compressedLayers[0][0]->quantizedLayer().dequantize();
        const std::vector<int> from = hfRowOf(64, kHeadDim);
        for (int to = 0; to < 64; ++to)
            for (int c = 0; c < 64; ++c)
                QCOMPARE(q[std::size_t(to) * 64 + c], w(from[std::size_t(to)], c));
    }

    // Qwen2's q/k/v_proj have biases, which QuantizedLinear lacks: they stay fp16 with their
    // biases; o_proj converts.
    void biasesStayDense() {
        QUANTLENS_REQUIRE_DATA("archs/qwen2");
        const fs::path checkpoint = root_ / "spqr-qwen2", out = root_ / "hf-qwen2";
        quantize(test::dataPath("archs/qwen2"), holdable(), ExportFormat::Quantlens, checkpoint);
        const ExportResult result = exportModel(checkpoint, ExportFormat::HfSpqr, out, {});
        const test::RawFile file(out / "model.safetensors");
        for (int i = 0; i < 3; ++i) {
            const HfSpqrLayerReport& r = reportOf(*result.hfSpqr, layerName(0, i));
            QVERIFY(!r.converted);
            QVERIFY2(r.reason.find("bias") != std::string::npos, r.reason.c_str());
            QCOMPARE(file.dtype(layerName(0, i) + ".weight"), std::string("F16"));
            QCOMPARE(file.dtype(layerName(0, i) + ".bias"), std::string("F16"));
        }
        QVERIFY(reportOf(*result.hfSpqr, layerName(0, 3)).converted);
        const auto model = loadModel(checkpoint, CompressedLayers::Keep);
        compareLayer(file, layerName(0, 3), model->compressedLayers[0][3]->quantizedLayer(), {});
    }

    // The studio's path (quantize straight into the format) writes what exporting the checkpoint
    // writes, and leaves no staging behind.
    void quantizeToDirectoryMatchesExport() {
        const fs::path direct = root_ / "direct" / "hf";
        fs::create_directories(direct.parent_path());
        quantize(test::dataPath("stories260K-hf"), holdable(), ExportFormat::HfSpqr, direct);
        const fs::path exported = root_ / "direct" / "exported";
        exportModel(checkpoint_, ExportFormat::HfSpqr, exported, {});
        QCOMPARE(test::readBytes(direct / "model.safetensors"),
                 test::readBytes(exported / "model.safetensors"));
        QCOMPARE(test::readBytes(direct / "config.json"),
                 test::readBytes(exported / "config.json"));
        QCOMPARE(test::entries(direct.parent_path()), (std::vector<std::string>{"exported", "hf"}));
    }

    // Runs the kernels cannot hold are refused with the layer and the setting, leaving nothing.
    void refusals_data() {
        QTest::addColumn<QString>("name");
        QTest::addColumn<QString>("reason");
        QTest::newRow("beta1 32") << "g32"
                                  << "groupsize is 32; transformers' SpQR kernels walk tiles 16 "
                                     "columns wide, each one first-level group (groupsize 16)";
        QTest::newRow("w4") << "w4"
                            << "wbits is 4; transformers' SpQR kernels decode 3-bit weights only "
                               "(wbits 3)";
        QTest::newRow("rtn") << "rtn"
                             << "it is quantized with rtn, and the format holds spqr "
                                "layers only";
    }
    void refusals() {
        QFETCH(QString, name);
        QFETCH(QString, reason);
        SpqrConfig spqr = holdable();
        QuantConfig config = spqr;
        if (name == "g32") {
            spqr.groupsize = 32;
            config = spqr;
        } else if (name == "w4") {
            spqr.wbits = 4;
            config = spqr;
        } else {
            config = RtnConfig{3, 16};
        }
        QTemporaryDir dir;
        const fs::path here = dir.path().toStdString();
        quantize(test::dataPath("stories260K-hf"), config, ExportFormat::Quantlens, here / "q");
        QCOMPARE(errorOf([&] { exportModel(here / "q", ExportFormat::HfSpqr, here / "out", {}); }),
                 "model.layers.0.self_attn.q_proj: cannot be written in the Hugging Face SpQR "
                 "format: " +
                     reason);
        // Refused before quantizing, naming the output, on the studio's path.
        QCOMPARE(errorOf([&] {
                     quantize(test::dataPath("stories260K-hf"), config, ExportFormat::HfSpqr,
                              here / "direct");
                 }),
                 QString::fromStdString((here / "direct").string()) +
                     ": the Hugging Face SpQR format cannot hold this run: " + reason);
        QVERIFY(!formatHolds(ExportFormat::HfSpqr, config));
        QCOMPARE(test::entries(here), (std::vector<std::string>{"q"}));
    }

    void formatHoldsOnlyTheKernelsSettings() {
        QVERIFY(formatHolds(ExportFormat::HfSpqr, holdable()));
        QVERIFY(formatHolds(ExportFormat::HfSpqr, SpqrConfig{})); // the paper's LLaMA setting
        SpqrConfig other = holdable();
        other.actOrder = false;
        other.outlierThreshold = 0.5;
        QVERIFY(formatHolds(ExportFormat::HfSpqr, other)); // the format does not record these
        other.statsGroupsize = 32;
        QCOMPARE(formatUnavailable(ExportFormat::HfSpqr, other),
                 std::string("the Hugging Face SpQR format cannot hold this run: stats_groupsize "
                             "is 32; transformers' SpQR kernels share second-level statistics over "
                             "tiles 16 rows high (stats_groupsize 16)"));
        other = holdable();
        other.qqBits = 2;
        QCOMPARE(formatUnavailable(ExportFormat::HfSpqr, other),
                 std::string("the Hugging Face SpQR format cannot hold this run: qq_bits is 2; "
                             "transformers' SpQR kernels store 3-bit scale and zero codes in each "
                             "tile row (qq_bits 3)"));
        QVERIFY(!formatHolds(ExportFormat::HfSpqr, GptqConfig{}));
        QVERIFY(!formatHolds(ExportFormat::HfSpqr, SqueezeConfig{}));
        QCOMPARE(parseExportFormat("hf-spqr"), ExportFormat::HfSpqr);
        QCOMPARE(exportFormatName(ExportFormat::HfSpqr), std::string("hf-spqr"));
    }

    // A cancel while layers are written leaves the earlier export as it was.
    void cancelLeavesTheOldExport() {
        const fs::path out = root_ / "cancel";
        exportModel(checkpoint_, ExportFormat::HfSpqr, out, {});
        const std::string before = test::readBytes(out / "model.safetensors");
        JobContext* self = nullptr;
        JobContext job([&](double, const std::string& stage) {
            if (stage == "hf-spqr: write block 2") self->requestCancel();
        });
        self = &job;
        QCOMPARE(errorOf([&] { exportModel(checkpoint_, ExportFormat::HfSpqr, out, job); }),
                 QString("cancelled"));
        QCOMPARE(test::readBytes(out / "model.safetensors"), before);
        for (const std::string& name : test::entries(root_))
            QVERIFY2(name.find(".tmp.") == std::string::npos, name.c_str());
    }
};

QTEST_APPLESS_MAIN(TestHfSpqrExport)
#include "test_hf_spqr_export.moc"
