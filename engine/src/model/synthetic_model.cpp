#include "quantlens/model/synthetic_model.h"

#include "quantlens/core/dtype.h"
#include "quantlens/core/error.h"
#include "quantlens/core/hash.h"
#include "quantlens/core/parallel.h"
#include "quantlens/io/atomic_file.h"
#include "quantlens/io/safetensors_writer.h"
#include "quantlens/model/layer_layout.h"
#include "quantlens/model/model_config.h"

#include <nlohmann/json.hpp>

#include <algorithm>
#include <bit>
#include <cmath>
#include <cstring>
#include <limits>
#include <optional>
#include <random>

namespace quantlens {
namespace {

namespace fs = std::filesystem;

const std::string kSource = "synthetic model";

// Every random number below comes from std::mt19937_64 (whose output sequence the standard fixes)
// through integer arithmetic and correctly rounded IEEE operations only (+, ×, ÷, √, never a
// product that is inexact before an addition, so FMA contraction cannot change a bit): the same
// spec gives the same bytes with any compiler, standard library and CPU.

std::uint64_t splitmix64(std::uint64_t x) {
    x += 0x9e3779b97f4a7c15ull;
    x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ull;
    x = (x ^ (x >> 27)) * 0x94d049bb133111ebull;
    return x ^ (x >> 31);
}

// A tensor's stream depends on the seed and its name only, so a model with fewer layers is a
// prefix of the one with more; each row has its own stream so threads never change the bytes.
std::uint64_t tensorKey(std::uint64_t seed, const std::string& name) {
    return splitmix64(splitmix64(seed) ^ fnv1a(name));
}

std::uint64_t rowSeed(std::uint64_t key, std::int64_t row) {
    return splitmix64(key ^ splitmix64(static_cast<std::uint64_t>(row)));
}

// An integer in [0, n), unbiased by rejection.
std::uint64_t uniformBelow(std::mt19937_64& rng, std::uint64_t n) {
    const std::uint64_t limit =
        std::numeric_limits<std::uint64_t>::max() - std::numeric_limits<std::uint64_t>::max() % n;
    std::uint64_t x;
    do
        x = rng();
    while (x >= limit);
    return x % n;
}

// An approximately normal even integer from one draw: the sum of four 16-bit uniforms (Irwin–Hall,
// kurtosis 2.7), centred. Its standard deviation is 4·√((2^32 − 1)/12) ≈ 75674.
std::int64_t approxNormal(std::mt19937_64& rng) {
    const std::uint64_t x = rng();
    const std::int64_t sum = static_cast<std::int64_t>((x & 0xffff) + ((x >> 16) & 0xffff) +
                                                       ((x >> 32) & 0xffff) + (x >> 48));
    return 2 * sum - 4 * 0xffff;
}

// A heavy-tailed weight: an approximate normal over the root of a sum of four squared uniforms
// (two draws). Like χ²₄, that sum has density ∝ v near zero, so the tails fall as |t|⁻⁴, as those
// of Student-t with 4 degrees of freedom and of LLM weights do (kurtosis ≈ 13). Clamped at ±108
// (90 standard deviations) so that outlier rows and columns on top still fit in F16.
double heavyTailed(std::mt19937_64& rng) {
    const std::int64_t numerator = approxNormal(rng);
    const std::uint64_t x = rng();
    std::int64_t sumOfSquares = 0; // of odd numbers, so never zero; below 2^35
    for (int k = 0; k < 4; ++k) {
        const std::int64_t u = 2 * static_cast<std::int64_t>((x >> (16 * k)) & 0xffff) - 0xffff;
        sumOfSquares += u * u;
    }
    const double t = static_cast<double>(numerator) / std::sqrt(static_cast<double>(sumOfSquares));
    return std::clamp(t, -108.0, 108.0);
}

// heavyTailed()'s standard deviation is 1.19541 (measured over 4·10⁸ draws): weights get std 0.02.
const double kWeightScale = 0.02 / 1.19541;

// Outlier input columns (×10–20) and output rows (×4–8): a few per matrix, chosen per tensor.
std::vector<double> outlierFactors(std::mt19937_64& rng, std::int64_t count, std::int64_t outliers,
                                   std::uint64_t low) {
    std::vector<double> factors(static_cast<std::size_t>(count), 1.0);
    outliers = std::min(outliers, count / 4);
    for (std::int64_t chosen = 0; chosen < outliers;) {
        const auto index = uniformBelow(rng, static_cast<std::uint64_t>(count));
        if (factors[index] != 1.0) continue;
        // low + low·m/2^16, exact in double.
        factors[index] =
            static_cast<double>((low << 16) + low * uniformBelow(rng, 1u << 16)) * 0x1p-16;
        ++chosen;
    }
    return factors;
}

// A matrix tensor's outlier factors, per input column and per output row.
struct MatrixFactors {
    std::vector<double> col, row;
};

MatrixFactors matrixFactors(std::uint64_t key, std::int64_t rows, std::int64_t cols) {
    std::mt19937_64 rng(key);
    MatrixFactors f;
    f.col = outlierFactors(rng, cols, std::clamp<std::int64_t>(cols / 1024, 4, 16), 10);
    f.row = outlierFactors(rng, rows, std::clamp<std::int64_t>(rows / 2048, 2, 8), 4);
    return f;
}

// Row r of a matrix tensor in fp32; `values` holds one row.
void matrixRow(std::uint64_t key, const MatrixFactors& f, std::int64_t r, float* values) {
    std::mt19937_64 rng(rowSeed(key, r));
    for (std::size_t c = 0; c < f.col.size(); ++c)
        values[c] = static_cast<float>(heavyTailed(rng) * kWeightScale * f.col[c] * f.row[r]);
}

ModelConfig configOf(const SyntheticModelSpec& s) {
    ModelConfig c;
    c.architecture = s.architecture;
    c.attentionBias = s.architecture == Architecture::Qwen2;
    c.qkNorm = s.architecture == Architecture::Qwen3;
    if (s.architecture == Architecture::Mistral) c.slidingWindow = 4096;
    c.hiddenSize = s.hiddenSize;
    c.intermediateSize = s.intermediateSize;
    c.layerCount = s.layers;
    c.headCount = s.heads;
    c.kvHeadCount = s.kvHeads;
    c.headDim = s.headDim > 0 ? s.headDim : defaultHeadDim(s.hiddenSize, s.heads, kSource);
    c.vocabSize = s.vocab;
    c.maxPositions = s.maxPositions;
    c.rmsNormEps = 1e-5f;
    c.ropeTheta = 10000.0f;
    return c;
}

enum class Kind { Matrix, Norm, Bias };

struct PlannedTensor {
    SafetensorsWriter::TensorSpec spec;
    Kind kind;
};

std::vector<PlannedTensor> plan(const SyntheticModelSpec& s) {
    const std::int64_t dim = s.hiddenSize;
    std::vector<PlannedTensor> tensors;
    const auto add = [&](std::string name, std::vector<std::int64_t> shape, Kind kind) {
        tensors.push_back({{std::move(name), s.dtype, std::move(shape)}, kind});
    };
    // The order the loader and a block-by-block job read them in.
    const ModelConfig config = configOf(s);
    add(kEmbeddingTensor, {s.vocab, dim}, Kind::Matrix);
    for (int i = 0; i < s.layers; ++i)
        for (const BlockTensorSpec& spec : kBlockTensors)
            if (hasBlockTensor(spec, config))
                add(blockPrefix(i) + spec.name, blockTensorShape(spec, config),
                    spec.kind == BlockTensorKind::Weight ? Kind::Matrix
                    : spec.kind == BlockTensorKind::Bias ? Kind::Bias
                                                         : Kind::Norm);
    add(kFinalNormTensor, {dim}, Kind::Norm);
    add(kLmHeadTensor, {s.vocab, dim}, Kind::Matrix);
    return tensors;
}

void writeConfig(const SyntheticModelSpec& s, const fs::path& file) {
    const std::string text = hfConfigJson(configOf(s), *parseDType(s.dtype));
    AtomicFile out(file);
    out.write(text.data(), text.size());
    out.commit();
}

// Fills `out` (the tensor in its stored dtype) row by row on the engine's threads.
void generate(const PlannedTensor& t, std::uint64_t seed, std::vector<std::byte>& out,
              const JobContext& job) {
    const std::uint64_t key = tensorKey(seed, t.spec.name);
    const std::int64_t rows = t.kind == Kind::Matrix ? t.spec.shape[0] : 1;
    const std::int64_t cols = t.spec.shape.back();
    const MatrixFactors factors =
        t.kind == Kind::Matrix ? matrixFactors(key, rows, cols) : MatrixFactors{};
    const std::optional<DType> dtype = parseDType(t.spec.dtype);
    const std::size_t elementSize = dtypeSize(*dtype);
    // About a million weights per task: a few milliseconds between cancel checks.
    const std::int64_t rowsPerTask = std::max<std::int64_t>(1, (1 << 20) / cols);
    parallelFor((rows + rowsPerTask - 1) / rowsPerTask, [&](std::int64_t task) {
        job.checkpoint();
        std::vector<float> values(static_cast<std::size_t>(cols));
        const std::int64_t end = std::min(rows, (task + 1) * rowsPerTask);
        for (std::int64_t r = task * rowsPerTask; r < end; ++r) {
            if (t.kind == Kind::Matrix) {
                matrixRow(key, factors, r, values.data());
            } else if (t.kind == Kind::Bias) {
                std::mt19937_64 rng(rowSeed(key, r));
                for (std::int64_t c = 0; c < cols; ++c)
                    values[c] = static_cast<float>(heavyTailed(rng) * kWeightScale);
            } else {
                std::mt19937_64 rng(rowSeed(key, r));
                for (std::int64_t c = 0; c < cols; ++c) // 1 + noise of std ≈ 0.018; exact
                    values[c] =
                        static_cast<float>(1.0 + static_cast<double>(approxNormal(rng)) * 0x1p-22);
            }
            std::byte* target = out.data() + static_cast<std::size_t>(r * cols) * elementSize;
            if (*dtype == DType::F32) {
                std::memcpy(target, values.data(), values.size() * 4);
                continue;
            }
            const auto convert = *dtype == DType::F16 ? floatToF16 : floatToBf16;
            for (std::int64_t c = 0; c < cols; ++c) {
                const std::uint16_t bits = convert(values[c]);
                std::memcpy(target + 2 * c, &bits, 2);
            }
        }
    });
}

void validate(const SyntheticModelSpec& s) {
    if (s.dtype != "F16" && s.dtype != "BF16" && s.dtype != "F32")
        throw Error(kSource, "dtype '" + s.dtype + "' is not F16, BF16 or F32");
    configOf(s).validate(kSource);
}

} // namespace

SyntheticModelSpec syntheticModelPreset(std::string_view name) {
    SyntheticModelSpec spec; // the defaults are LLaMA-7B
    if (name == "7b") return spec;
    if (name == "tiny") {
        spec.hiddenSize = 256;
        spec.intermediateSize = 688;
        spec.layers = 4;
        spec.heads = 4;
        spec.kvHeads = 4;
        spec.vocab = 512;
        spec.maxPositions = 512;
        return spec;
    }
    throw Error(kSource, "unknown preset '" + std::string(name) + "' (7b or tiny)");
}

RowMatrix syntheticMatrix(std::int64_t rows, std::int64_t cols, std::uint64_t seed,
                          const std::string& name) {
    if (rows <= 0 || cols <= 0)
        throw Error(kSource, "matrix '" + name + "' needs a positive shape");
    const std::uint64_t key = tensorKey(seed, name);
    const MatrixFactors factors = matrixFactors(key, rows, cols);
    RowMatrix matrix(rows, cols);
    parallelFor(rows, [&](std::int64_t r) { matrixRow(key, factors, r, matrix.row(r).data()); });
    return matrix;
}

void writeSyntheticModel(const SyntheticModelSpec& spec, const fs::path& directory,
                         const JobContext& job) {
    validate(spec);
    const std::vector<PlannedTensor> tensors = plan(spec);
    std::vector<SafetensorsWriter::TensorSpec> specs;
    std::vector<std::size_t> sizes;
    for (const PlannedTensor& t : tensors) {
        specs.push_back(t.spec);
        std::size_t bytes = dtypeSize(*parseDType(spec.dtype));
        for (const std::int64_t d : t.spec.shape)
            bytes *= static_cast<std::size_t>(d);
        sizes.push_back(bytes);
    }
    std::size_t totalBytes = 0;
    for (const std::size_t bytes : sizes)
        totalBytes += bytes;

    const bool created = !fs::exists(directory);
    try {
        fs::create_directories(directory);
    } catch (const fs::filesystem_error& e) {
        throw Error(directory.string(),
                    std::string("cannot create the directory: ") + e.code().message());
    }
    try {
        SafetensorsWriter writer(
            directory / "model.safetensors", specs,
            {{"format", "pt"}, {"quantlens.synthetic.seed", std::to_string(spec.seed)}});
        std::vector<std::byte> buffer; // the one tensor held in memory
        buffer.reserve(*std::max_element(sizes.begin(), sizes.end()));
        std::size_t written = 0;
        for (std::size_t i = 0; i < tensors.size(); ++i) {
            job.report(static_cast<double>(written) / static_cast<double>(totalBytes),
                       tensors[i].spec.name);
            buffer.resize(sizes[i]);
            generate(tensors[i], spec.seed, buffer, job);
            writer.write(tensors[i].spec.name, buffer.data(), buffer.size());
            written += sizes[i];
        }
        writer.commit();
        writeConfig(spec, directory / "config.json");
    } catch (...) {
        std::error_code ignored;
        if (created) fs::remove(directory, ignored); // only removes it while it is still empty
        throw;
    }
    job.report(1.0, "done");
}

} // namespace quantlens
