#include "quantlens/formats/hf_spqr_writer.h"

#include "formats/hf_spqr_layout.h"
#include "formats/rope_rows.h"
#include "quantlens/core/dtype.h"
#include "quantlens/core/error.h"
#include "quantlens/core/float_tensor.h"
#include "quantlens/encoding/bit_packing.h"
#include "quantlens/io/atomic_file.h"
#include "quantlens/io/mapped_file.h"
#include "quantlens/io/safetensors_writer.h"
#include "quantlens/io/text_file.h"
#include "quantlens/runtime/compressed_linear.h"

#include <nlohmann/json.hpp>

#include <algorithm>
#include <bit>
#include <cmath>
#include <cstdio>
#include <span>

namespace quantlens {
namespace {

namespace fs = std::filesystem;

static_assert(std::endian::native == std::endian::little,
              "the format's words are little-endian and are written from memory as is");

constexpr int kTile = kHfSpqrTile;

std::string format(const char* pattern, double value) {
    char text[64];
    std::snprintf(text, sizeof text, pattern, value);
    return text;
}

void writeWholeFile(const fs::path& path, const std::string& bytes) {
    AtomicFile file(path);
    file.write(bytes.data(), bytes.size());
    file.commit();
}

std::span<const std::uint32_t> words(const StoredTensor& t) {
    return {reinterpret_cast<const std::uint32_t*>(t.bytes.data()), t.bytes.size() / 4};
}

// The stored arrays of an SpQR layer, read as the quantlens format lays them out (FORMAT.md).
class SpqrArrays {
public:
    explicit SpqrArrays(const QuantizedLayer& layer)
        : codes_(words(layer.tensors.at("codes"))),
          scaleCodes_(words(layer.tensors.at("scale_codes"))),
          zeroCodes_(words(layer.tensors.at("zero_codes"))),
          scaleStats_(layer.tensors.at("scale_stats")), zeroStats_(layer.tensors.at("zero_stats")),
          codeStride_(wordsPerRow(static_cast<std::size_t>(layer.cols), kHfSpqrBits)),
          statStride_(wordsPerRow(static_cast<std::size_t>(layer.rows), kHfSpqrBits)),
          rowGroups_(layer.rows / kTile) {}

    int code(int r, int j) const {
        return static_cast<int>(
            unpackCode(codes_.data() + static_cast<std::size_t>(r) * codeStride_,
                       static_cast<std::size_t>(j), kHfSpqrBits));
    }
    int scaleCode(int group, int r) const { return statisticCode(scaleCodes_, group, r); }
    int zeroCode(int group, int r) const { return statisticCode(zeroCodes_, group, r); }
    // Element k (0 scale, 1 zero) of the second-level grid of the scales or zeros of `group` and
    // row tile `tile`, as its fp16 bits.
    std::uint16_t scaleStat(int group, int tile, int k) const {
        return stat(scaleStats_, group, tile, k);
    }
    std::uint16_t zeroStat(int group, int tile, int k) const {
        return stat(zeroStats_, group, tile, k);
    }

private:
    int statisticCode(std::span<const std::uint32_t> codes, int group, int r) const {
        return static_cast<int>(
            unpackCode(codes.data() + static_cast<std::size_t>(group) * statStride_,
                       static_cast<std::size_t>(r), kHfSpqrBits));
    }
    std::uint16_t stat(const StoredTensor& stats, int group, int tile, int k) const {
        return stats.at<std::uint16_t>(
            (static_cast<std::size_t>(group) * static_cast<std::size_t>(rowGroups_) +
             static_cast<std::size_t>(tile)) *
                2 +
            static_cast<std::size_t>(k));
    }

    std::span<const std::uint32_t> codes_, scaleCodes_, zeroCodes_;
    const StoredTensor& scaleStats_;
    const StoredTensor& zeroStats_;
    std::size_t codeStride_, statStride_;
    int rowGroups_;
};

// The second-level statistics of one tile, as the kernels read them (SecondOrder: half2 ss, zz).
struct TileStatistics {
    std::uint16_t scaleScale, zeroScale, scaleZero, zeroZero; // W_s_s, W_z_s, W_s_z, W_z_z

    std::uint64_t bits() const {
        return std::uint64_t(scaleScale) | std::uint64_t(zeroScale) << 16 |
               std::uint64_t(scaleZero) << 32 | std::uint64_t(zeroZero) << 48;
    }
};

// Why the kernels cannot hold a linear layer of this shape, "" when they can.
std::string shapeMismatch(int rows, int cols) {
    const std::string shape = std::to_string(rows) + "×" + std::to_string(cols);
    if (rows % kTile != 0 || cols % kTile != 0)
        return "it is " + shape + ", and the kernels walk whole 16×16 tiles: rows and columns " +
               "must be multiples of 16";
    if (cols > kHfSpqrMaxColumns)
        return "it has " + std::to_string(cols) + " columns, and col_vals and in_perm hold " +
               "16-bit column indices";
    return "";
}

// A row's first-level grid in one tile as the kernels decode it from its codes, with the tile's
// second-level scales (which the subnormal part of the bound needs).
struct FirstLevel {
    float scale, zero;
    float scaleScale, zeroScale;
};

float kernelWeight(const FirstLevel& grid, int code) {
    return hfSpqrDecode(grid.scale, grid.zero, code);
}

// The bound of docs/HF_SPQR.md on the difference between a weight the kernels decode from `code`
// on `grid` and dequantize()'s.
double denseBound(const FirstLevel& grid, int code) {
    const double s = std::abs(double(grid.scale)), z = std::abs(double(grid.zero)), q = code;
    return 0x1p-8 * s * (q + 2.0 * z) +
           0x1p-24 * (1.0 + std::abs(double(grid.scaleScale)) + std::abs(double(grid.zeroScale))) *
               (2.0 + q + z + s);
}

bool hasBias(const ModelConfig& config, int layer) {
    for (const BlockTensorSpec& spec : kBlockTensors)
        if (spec.kind == BlockTensorKind::Bias && spec.linear == layer &&
            hasBlockTensor(spec, config))
            return true;
    return false;
}

std::vector<std::uint16_t> toF16(const float* values, std::size_t count) {
    std::vector<std::uint16_t> out(count);
    for (std::size_t i = 0; i < count; ++i)
        out[i] = floatToF16(values[i]);
    return out;
}

} // namespace

std::string hfSpqrSettingMismatch(const QuantConfig& config) {
    const auto* spqr = std::get_if<SpqrConfig>(&config);
    if (!spqr)
        return "it is quantized with " + methodName(config) +
               ", and the format holds spqr layers only";
    const auto differs = [](const char* setting, int value, int wanted, const char* why) {
        return std::string(setting) + " is " + std::to_string(value) + "; transformers' SpQR " +
               "kernels " + why + " (" + setting + " " + std::to_string(wanted) + ")";
    };
    if (spqr->wbits != kHfSpqrBits)
        return differs("wbits", spqr->wbits, kHfSpqrBits, "decode 3-bit weights only");
    if (spqr->groupsize != kTile)
        return differs("groupsize", spqr->groupsize, kTile,
                       "walk tiles 16 columns wide, each one first-level group");
    if (spqr->statsGroupsize != kTile)
        return differs("stats_groupsize", spqr->statsGroupsize, kTile,
                       "share second-level statistics over tiles 16 rows high");
    if (spqr->qqBits != kHfSpqrBits)
        return differs("qq_bits", spqr->qqBits, kHfSpqrBits,
                       "store 3-bit scale and zero codes in each tile row");
    return "";
}

std::size_t HfSpqrLayer::storedBytes() const {
    return 8 * denseWeights.size() + 4 * (rowOffsets.size() + colVals.size() + inPerm.size());
}

int HfSpqrResult::convertedLayers() const {
    return static_cast<int>(
        std::count_if(layers.begin(), layers.end(), [](const auto& l) { return l.converted; }));
}

HfSpqrLayer toHfSpqrLayer(const QuantizedLayer& layer, const std::string& name,
                          const std::vector<int>& rowOrder) {
    if (const std::string why = hfSpqrSettingMismatch(layer.config); !why.empty())
        throw Error(name, "cannot be written in the Hugging Face SpQR format: " + why);
    const int rows = layer.rows, cols = layer.cols;
    if (const std::string why = shapeMismatch(rows, cols); !why.empty())
        throw Error(name, "cannot be written in the Hugging Face SpQR format: " + why);
    std::vector<int> rowOf = rowOrder;
    if (rowOf.empty())
        for (int r = 0; r < rows; ++r)
            rowOf.push_back(r);
    if (static_cast<int>(rowOf.size()) != rows)
        throw Error(name, "internal error: a row order of " + std::to_string(rowOf.size()) +
                              " rows for " + std::to_string(rows));
    for (int to = 0; to < rows; ++to)
        if (rowOf[static_cast<std::size_t>(to)] / kTile != to / kTile)
            throw Error(name, "internal error: row " + std::to_string(to) + " would leave its " +
                                  "16-row tile, whose second-level statistics it shares");

    const SpqrArrays arrays(layer);
    const int tileRows = rows / kTile, tileCols = cols / kTile;
    HfSpqrLayer out;
    out.rows = rows;
    out.cols = cols;

    // The input permutation (the identity without act-order): permuted column j is column perm[j].
    std::vector<int> perm(static_cast<std::size_t>(cols));
    const auto stored = layer.tensors.find("perm");
    for (int j = 0; j < cols; ++j)
        perm[static_cast<std::size_t>(j)] =
            stored == layer.tensors.end()
                ? j
                : static_cast<int>(stored->second.indexAt(static_cast<std::size_t>(j)));
    for (int k = 0; k < cols / 2; ++k)
        out.inPerm.push_back(static_cast<std::int32_t>(
            static_cast<std::uint32_t>(perm[std::size_t(2 * k)]) |
            static_cast<std::uint32_t>(perm[std::size_t(2 * k + 1)]) << 16));

    // A weight as the kernels decode it, and its difference from dequantize()'s, which must stay
    // within `bound` (docs/HF_SPQR.md). Output row `to`, permuted column j.
    const RowMatrix reference = layer.dequantize();
    const auto firstLevel = [&](int to, int tj) {
        const int r = rowOf[static_cast<std::size_t>(to)], ti = to / kTile;
        const float ss = f16ToFloat(arrays.scaleStat(tj, ti, 0));
        const float sz = f16ToFloat(arrays.scaleStat(tj, ti, 1));
        const float zs = f16ToFloat(arrays.zeroStat(tj, ti, 0));
        const float zz = f16ToFloat(arrays.zeroStat(tj, ti, 1));
        return FirstLevel{hfSpqrDecode(ss, sz, arrays.scaleCode(tj, r)),
                          hfSpqrDecode(zs, zz, arrays.zeroCode(tj, r)), ss, zs};
    };
    const auto measure = [&](int to, int j, double effective, double bound) {
        const int r = rowOf[static_cast<std::size_t>(to)], c = perm[static_cast<std::size_t>(j)];
        const double want = reference(r, c), difference = std::abs(effective - want);
        out.maxError = std::max(out.maxError, difference);
        if (out.outOfBound.empty() && !(difference <= bound))
            out.outOfBound = "row " + std::to_string(r) + " column " + std::to_string(c) +
                             " decodes to " + format("%.9g", effective) + " and here to " +
                             format("%.9g", want) + ", " + format("%.3g", difference) +
                             " apart, beyond the bound " + format("%.3g", bound);
    };

    // Outliers: the kernels add their value to the decoded weight, so each holds the difference
    // to the weight quantlens keeps there, rounded once to fp16.
    std::vector<bool> outlier(static_cast<std::size_t>(rows) * cols, false);
    out.rowOffsets.push_back(0);
    const auto ptr = layer.tensors.find("outlier_row_ptr");
    for (int to = 0; to < rows; ++to) {
        const int r = rowOf[static_cast<std::size_t>(to)];
        if (ptr != layer.tensors.end()) {
            const StoredTensor& columns = layer.tensors.at("outlier_cols");
            const StoredTensor& values = layer.tensors.at("outlier_values");
            for (auto e = ptr->second.indexAt(static_cast<std::size_t>(r));
                 e < ptr->second.indexAt(static_cast<std::size_t>(r) + 1); ++e) {
                const auto j = static_cast<int>(columns.indexAt(static_cast<std::size_t>(e)));
                const float target = values.f16At(static_cast<std::size_t>(e));
                const float decoded = kernelWeight(firstLevel(to, j / kTile), arrays.code(r, j));
                const std::uint16_t delta = floatToF16(target - decoded);
                out.colVals.push_back(static_cast<std::int32_t>(std::uint32_t(delta) << 16 |
                                                                static_cast<std::uint32_t>(j)));
                outlier[static_cast<std::size_t>(to) * cols + j] = true;
                measure(to, j, double(decoded) + double(f16ToFloat(delta)),
                        0x1p-11 * std::abs(double(target) - double(decoded)) + 0x1p-25);
            }
        }
        out.rowOffsets.push_back(static_cast<std::int32_t>(out.colVals.size()));
    }
    out.outliers = static_cast<std::int64_t>(out.colVals.size());

    // Codes and both levels of statistics, one word per row of each tile.
    out.denseWeights.resize(static_cast<std::size_t>(rows) * cols / kTile);
    for (int ti = 0; ti < tileRows; ++ti)
        for (int tj = 0; tj < tileCols; ++tj) {
            const TileStatistics stats{arrays.scaleStat(tj, ti, 0), arrays.zeroStat(tj, ti, 0),
                                       arrays.scaleStat(tj, ti, 1), arrays.zeroStat(tj, ti, 1)};
            const std::uint64_t second = stats.bits();
            for (int k = 0; k < kTile; ++k) {
                const int to = ti * kTile + k, r = rowOf[static_cast<std::size_t>(to)];
                std::uint64_t word = std::uint64_t(arrays.scaleCode(tj, r)) |
                                     std::uint64_t(arrays.zeroCode(tj, r)) << kHfSpqrBits;
                word |= ((second >> (8 * (k / 2))) & 0xffu) << kHfSpqrSecondOrderShift;
                const FirstLevel grid = firstLevel(to, tj);
                for (int i = 0; i < kTile; ++i) {
                    const int j = tj * kTile + i, q = arrays.code(r, j);
                    word |= std::uint64_t(q) << (kHfSpqrBits * (2 + i));
                    if (!outlier[static_cast<std::size_t>(to) * cols + j])
                        measure(to, j, kernelWeight(grid, q), denseBound(grid, q));
                }
                out.denseWeights[(static_cast<std::size_t>(ti) * tileCols + tj) * kTile + k] =
                    static_cast<std::int64_t>(word);
            }
        }
    return out;
}

HfSpqrResult writeHfSpqrCheckpoint(const Model& model, const fs::path& directory,
                                   const JobContext& job) {
    const std::string source = model.path.string();
    if (model.compressedLayers.size() != model.blocks.size() || model.blocks.empty())
        throw Error(source, "is not a compressed (quantlens) model");
    const ModelConfig& c = model.config;
    const int blocks = c.layerCount;

    // Refusals first, before anything is encoded or written.
    for (int b = 0; b < blocks; ++b)
        for (int i = 0; i < kLinearLayerCount; ++i)
            if (const std::string why = hfSpqrSettingMismatch(
                    model.compressedLayers[std::size_t(b)][std::size_t(i)]->config());
                !why.empty())
                throw Error(linearLayerPrefix(b, i),
                            "cannot be written in the Hugging Face SpQR format: " + why);

    // Which layers the kernels hold: each candidate is encoded and its decode measured, then
    // dropped, so that memory stays at one layer (the file's header needs every size up front).
    struct Planned {
        HfSpqrLayerReport report;
        std::vector<int> rowOf; // output row r is layer row rowOf[r]; empty: the identity
    };
    std::vector<Planned> plan;
    HfSpqrResult result;
    for (int b = 0; b < blocks; ++b) {
        job.checkpoint();
        job.report(0.5 * b / blocks, "hf-spqr: plan block " + std::to_string(b));
        for (int i = 0; i < kLinearLayerCount; ++i) {
            const CompressedLinear& op = *model.compressedLayers[std::size_t(b)][std::size_t(i)];
            const QuantizedLayer layer = op.quantizedLayer();
            Planned p;
            HfSpqrLayerReport& r = p.report;
            r.name = linearLayerPrefix(b, i);
            r.rows = layer.rows;
            r.cols = layer.cols;
            r.outliers = layer.outlierCount;
            r.sourceBytes = layer.storedBytes();
            if (kLinearLayers[std::size_t(i)].rotary && c.ropeLayout == RopeLayout::Interleaved)
                p.rowOf = ropeRowOrder(layer.rows, c.headDim, RopeLayout::RotateHalf);
            r.reason = shapeMismatch(layer.rows, layer.cols);
            if (r.reason.empty() && hasBias(c, i))
                r.reason = "it has a bias, which spqr_quant's QuantizedLinear does not hold";
            for (std::size_t to = 0; r.reason.empty() && to < p.rowOf.size(); ++to)
                if (p.rowOf[to] / kTile != static_cast<int>(to) / kTile)
                    r.reason =
                        "its rows are in llama2.c's interleaved RoPE order, and Hugging " +
                        std::string("Face's rotate-half order moves them out of the 16-row ") +
                        "tiles whose second-level statistics they share (head_dim " +
                        std::to_string(c.headDim) + ")";
            if (r.reason.empty()) {
                const HfSpqrLayer encoded = toHfSpqrLayer(layer, r.name, p.rowOf);
                if (encoded.outOfBound.empty()) {
                    r.converted = true;
                    r.exportBytes = encoded.storedBytes();
                    r.maxError = encoded.maxError;
                } else {
                    r.reason = "decoded in the kernels' fp16 arithmetic, " + encoded.outOfBound;
                }
            }
            if (!r.converted) {
                r.exportBytes = static_cast<std::uint64_t>(r.parameters()) * 2;
                result.denseParameters += r.parameters();
                result.modulesToNotConvert.push_back(r.name + ".weight");
                result.modulesToNotConvert.push_back(r.name);
            }
            plan.push_back(std::move(p));
        }
    }
    result.modulesToNotConvert.push_back(std::string(kLmHeadTensor));
    result.modulesToNotConvert.push_back("lm_head");

    // The header: every tensor in Hugging Face order, fp16 unless it is a converted layer's.
    std::vector<SafetensorsWriter::TensorSpec> specs;
    nlohmann::ordered_json shapes = nlohmann::ordered_json::object();
    const auto planned = [&](int block, int layer) -> const Planned& {
        return plan[std::size_t(block) * kLinearLayerCount + std::size_t(layer)];
    };
    forEachModelTensor(
        model,
        [&](const std::string& name, const TensorView& view) {
            specs.push_back({name, "F16", view.shape});
        },
        [&](int block, int layer) {
            const HfSpqrLayerReport& r = planned(block, layer).report;
            if (!r.converted) {
                specs.push_back({r.name + ".weight", "F16", {r.rows, r.cols}});
                return;
            }
            const std::int64_t parameters = r.parameters();
            const std::pair<const char*, std::pair<const char*, std::int64_t>> arrays[] = {
                {"dense_weights", {"I64", parameters / kTile}},
                {"row_offsets", {"I32", std::int64_t(r.rows) + 1}},
                {"col_vals", {"I32", r.outliers}},
                {"in_perm", {"I32", std::int64_t(r.cols) / 2}}};
            for (const auto& [array, spec] : arrays) {
                specs.push_back({r.name + "." + array, spec.first, {spec.second}});
                shapes[r.name + "." + array + ".shape"] = spec.second;
            }
        });

    SafetensorsWriter writer(directory / "model.safetensors", specs, {{"format", "pt"}});
    const auto writeF16 = [&](const std::string& name, const float* values, std::size_t count) {
        const std::vector<std::uint16_t> narrow = toF16(values, count);
        writer.write(name, narrow.data(), narrow.size() * 2);
    };
    forEachModelTensor(
        model,
        [&](const std::string& name, const TensorView& view) {
            writeF16(name, FloatTensor(view).data(), static_cast<std::size_t>(view.elementCount()));
            releaseMappedPages(view.data, view.byteSize());
        },
        [&](int block, int layer) {
            job.checkpoint();
            job.report(0.5 + 0.5 * block / blocks, "hf-spqr: write block " + std::to_string(block));
            const Planned& p = planned(block, layer);
            const HfSpqrLayerReport& r = p.report;
            const QuantizedLayer quantized =
                model.compressedLayers[std::size_t(block)][std::size_t(layer)]->quantizedLayer();
            if (!r.converted) {
                const RowMatrix weights = quantized.dequantize();
                RowMatrix rows(weights.rows(), weights.cols());
                for (Eigen::Index to = 0; to < weights.rows(); ++to)
                    rows.row(to) = weights.row(p.rowOf.empty() ? to : p.rowOf[std::size_t(to)]);
                writeF16(r.name + ".weight", rows.data(), static_cast<std::size_t>(rows.size()));
                return;
            }
            const HfSpqrLayer encoded = toHfSpqrLayer(quantized, r.name, p.rowOf);
            if (encoded.storedBytes() != r.exportBytes || encoded.outliers != r.outliers)
                throw Error(r.name, "internal error: the layer encoded differently twice");
            writer.write(r.name + ".dense_weights", encoded.denseWeights.data(),
                         encoded.denseWeights.size() * 8);
            writer.write(r.name + ".row_offsets", encoded.rowOffsets.data(),
                         encoded.rowOffsets.size() * 4);
            writer.write(r.name + ".col_vals", encoded.colVals.data(), encoded.colVals.size() * 4);
            writer.write(r.name + ".in_perm", encoded.inPerm.data(), encoded.inPerm.size() * 4);
        });
    job.checkpoint();
    writer.commit();

    nlohmann::ordered_json config =
        nlohmann::ordered_json::parse(readTextFile(model.path / "config.json"));
    config["torch_dtype"] = "float16"; // transformers' SpQR quantizer runs fp16 only
    config["quantization_config"] = {
        {"quant_method", "spqr"}, {"bits", kHfSpqrBits},
        {"beta1", kTile},         {"beta2", kTile},
        {"shapes", shapes},       {"modules_to_not_convert", result.modulesToNotConvert}};
    writeWholeFile(directory / "config.json", config.dump(2) + "\n");
    if (!model.defaultTokenizer.empty()) {
        const bool sentencePiece = model.defaultTokenizer.extension() != ".bin";
        writeWholeFile(directory / (sentencePiece ? "tokenizer.model" : "tokenizer.bin"),
                       readTextFile(model.defaultTokenizer));
    }

    std::uint64_t exportBytes = 0, sourceBytes = 0;
    for (Planned& p : plan) {
        exportBytes += p.report.exportBytes;
        sourceBytes += p.report.sourceBytes;
        result.parameters += p.report.parameters();
        result.layers.push_back(std::move(p.report));
    }
    result.bitsPerParameter = 8.0 * double(exportBytes) / double(result.parameters);
    result.sourceBitsPerParameter = 8.0 * double(sourceBytes) / double(result.parameters);
    return result;
}

} // namespace quantlens
