#include "commands.h"

#include "quantlens/core/dtype.h"
#include "quantlens/core/error.h"
#include "quantlens/core/parallel.h"
#include "quantlens/encoding/bit_packing.h"
#include "quantlens/runtime/backend.h"
#include "quantlens/runtime/compressed_kernels.h"
#include "quantlens/runtime/compressed_linear.h"

#ifdef QUANTLENS_HAVE_CUDA
#include "quantlens/gpu/gemv_timing.h"
#endif

#include <nlohmann/json.hpp>

#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <fstream>
#include <iostream>
#include <numeric>
#include <random>

// `quantlens-cli bench gemv`: batch-1 products y = W·x with the fused compressed kernels against
// Eigen fp32, in GB/s of bytes read, against the read bandwidth measured in the same run, and as
// speed-up (docs/DESIGN.md §Targets). As decoding runs them, each timed run streams a stack of
// distinct copies of the matrix several times the last-level cache, so that the figures are those
// of memory, not of the cache (`--cached` times one matrix again and again instead). Prints a
// table; never asserts a time.

namespace {

using namespace quantlens;
using Clock = std::chrono::steady_clock;

struct GemvOptions {
    std::vector<std::string> shapes{"4096x4096", "4096x11008"};
    int repeat = 50;
    std::uint64_t seed = 1;
    bool json = false;
    std::string isa = "auto";
    double stackMib = 0.0; // 0: four times the last-level cache
    bool cached = false;
};

// The last-level cache the first core sees, from sysfs (the C library may report a whole
// socket's, 256 MiB on a virtual machine's EPYC whose cores share 32 MiB); 32 MiB when neither
// says.
std::size_t lastLevelCacheBytes() {
    for (const char* index : {"index3", "index2"}) {
        std::ifstream file(std::string("/sys/devices/system/cpu/cpu0/cache/") + index + "/size");
        std::size_t kib = 0;
        if (file >> kib) return kib << 10;
    }
    for (const int name : {_SC_LEVEL3_CACHE_SIZE, _SC_LEVEL2_CACHE_SIZE})
        if (const long bytes = sysconf(name); bytes > 0) return static_cast<std::size_t>(bytes);
    return std::size_t{32} << 20;
}

// The bytes each timed run streams per matrix stack.
std::size_t stackBytes(const GemvOptions& o) {
    return o.stackMib > 0 ? static_cast<std::size_t>(o.stackMib * (1 << 20))
                          : 4 * lastLevelCacheBytes();
}

// How many distinct copies of a `bytes`-byte matrix fill the stack (one with --cached).
int stackCount(const GemvOptions& o, double bytes) {
    if (o.cached) return 1;
    return std::max(1, static_cast<int>(std::ceil(static_cast<double>(stackBytes(o)) / bytes)));
}

// GB/s of reading a buffer of the stack's size as the fastest dense kernel reads memory: row sums
// of a [rows, 4096] fp32 matrix (a product with ones), 64 rows per task on the engine's threads,
// so that every thread streams several rows at once. The best of several rounds: the ceiling a
// kernel that reads each byte once could reach.
double readBandwidth(const GemvOptions& o) {
    constexpr Eigen::Index kCols = 4096, kBlock = 64;
    const Eigen::Index rows = std::max<Eigen::Index>(
        kBlock, static_cast<Eigen::Index>(stackBytes(o) / (4 * kCols)) / kBlock * kBlock);
    const RowMatrix buffer = RowMatrix::Ones(rows, kCols);
    const Eigen::VectorXf ones = Eigen::VectorXf::Ones(kCols);
    Eigen::VectorXf sums(rows);
    double best = 0.0;
    for (int round = 0; round < 10; ++round) {
        const auto start = Clock::now();
        parallelFor(rows / kBlock, [&](std::int64_t task) {
            sums.segment(task * kBlock, kBlock).noalias() =
                buffer.middleRows(task * kBlock, kBlock) * ones;
        });
        const double seconds = std::chrono::duration<double>(Clock::now() - start).count();
        best = std::max(best, 4.0 * double(rows) * kCols / seconds / 1e9);
    }
    if (sums.minCoeff() != float(kCols)) throw Error("bench gemv", "the row sums are wrong");
    return best;
}

struct Method {
    std::string label;
    QuantConfig config;
    double outlierFraction = 0.0;
};

// A layer in the exact stored layout of `config` (docs/FORMAT.md) with seeded random codes and
// statistics and `outlierFraction` of its weights as CSR outliers: kernel speed depends on the
// layout, not on the values, and quantizing a 4096×11008 layer with SpQR takes minutes.
QuantizedLayer syntheticLayer(const Method& method, int rows, int cols, std::uint64_t seed) {
    std::mt19937_64 engine(seed);
    const auto uniform = [&](double low, double high) {
        return std::uniform_real_distribution<double>(low, high)(engine);
    };
    const auto packed = [&](std::int64_t count, std::int64_t rowLength, int bits) {
        std::vector<std::uint16_t> codes(static_cast<std::size_t>(count * rowLength));
        std::uniform_int_distribution<int> code(0, (1 << bits) - 1);
        for (auto& c : codes)
            c = static_cast<std::uint16_t>(code(engine));
        return StoredTensor::of("U32",
                                {count, static_cast<std::int64_t>(wordsPerRow(
                                            static_cast<std::size_t>(rowLength), bits))},
                                packRows(codes, static_cast<std::size_t>(rowLength), bits));
    };
    const auto f16 = [&](std::vector<std::int64_t> shape, double low, double high, bool integer) {
        std::vector<float> values(static_cast<std::size_t>(
            std::accumulate(shape.begin(), shape.end(), std::int64_t{1}, std::multiplies<>())));
        for (float& v : values)
            v = static_cast<float>(integer ? std::floor(uniform(low, high + 1))
                                           : uniform(low, high));
        return StoredTensor::f16(std::move(shape), values);
    };
    QuantizedLayer layer;
    layer.config = method.config;
    layer.rows = rows;
    layer.cols = cols;
    const int wbits = weightBits(method.config);
    const int groupsize = statisticsGroupsize(method.config, cols);
    const std::int64_t groups = (cols + groupsize - 1) / groupsize;
    layer.tensors["codes"] = packed(rows, cols, wbits);
    bool actOrder = false;
    if (const auto* spqr = std::get_if<SpqrConfig>(&method.config)) {
        const std::int64_t rowGroups = (rows + spqr->statsGroupsize - 1) / spqr->statsGroupsize;
        const int maxStat = (1 << spqr->qqBits) - 1;
        layer.tensors["scale_codes"] = packed(groups, rows, spqr->qqBits);
        layer.tensors["zero_codes"] = packed(groups, rows, spqr->qqBits);
        layer.tensors["scale_stats"] = f16({groups, rowGroups, 2}, 1e-4, 2e-4, false);
        layer.tensors["zero_stats"] = f16({groups, rowGroups, 2}, 0.5, double(maxStat), false);
        actOrder = spqr->actOrder;
    } else if (std::holds_alternative<SqueezeConfig>(method.config)) {
        std::vector<float> lut(static_cast<std::size_t>(rows) << wbits);
        for (int r = 0; r < rows; ++r) {
            float* row = lut.data() + (static_cast<std::size_t>(r) << wbits);
            for (int k = 0; k < (1 << wbits); ++k)
                row[k] = static_cast<float>(uniform(-0.05, 0.05));
            std::sort(row, row + (1 << wbits));
        }
        layer.tensors["lut"] = StoredTensor::f16({rows, 1 << wbits}, lut);
    } else {
        layer.tensors["scales"] = f16({rows, groups}, 1e-3, 2e-3, false);
        layer.tensors["zeros"] = f16({rows, groups}, 0, double((1 << wbits) - 1), true);
        if (const auto* gptq = std::get_if<GptqConfig>(&method.config)) actOrder = gptq->actOrder;
    }
    if (method.outlierFraction > 0) {
        std::bernoulli_distribution isOutlier(method.outlierFraction);
        std::vector<std::int32_t> rowPointers{0}, columns;
        std::vector<float> values;
        for (int r = 0; r < rows; ++r) {
            for (int j = 0; j < cols; ++j)
                if (isOutlier(engine)) {
                    columns.push_back(j);
                    values.push_back(static_cast<float>(uniform(-0.5, 0.5)));
                }
            rowPointers.push_back(static_cast<std::int32_t>(columns.size()));
        }
        const auto nnz = static_cast<std::int64_t>(columns.size());
        layer.tensors["outlier_row_ptr"] = StoredTensor::indices({rows + 1}, rowPointers, nnz);
        layer.tensors["outlier_cols"] = StoredTensor::indices({nnz}, columns, cols - 1);
        layer.tensors["outlier_values"] = StoredTensor::f16({nnz}, values);
        layer.outlierCount = nnz;
    }
    if (actOrder) {
        std::vector<std::int32_t> perm(static_cast<std::size_t>(cols));
        std::iota(perm.begin(), perm.end(), 0);
        std::shuffle(perm.begin(), perm.end(), engine);
        layer.tensors["perm"] = StoredTensor::indices({cols}, perm, cols - 1);
    }
    return layer;
}

struct Timing {
    double median = 0, best = 0;
};

Timing timeRuns(int repeat, const std::function<void()>& body) {
    for (int i = 0; i < std::max(3, repeat / 10); ++i) // warm caches and threads
        body();
    std::vector<double> times;
    for (int i = 0; i < repeat; ++i) {
        const auto start = Clock::now();
        body();
        times.push_back(std::chrono::duration<double>(Clock::now() - start).count());
    }
    std::sort(times.begin(), times.end());
    return {times[times.size() / 2], times.front()};
}

struct Row {
    std::string shape, method;
    double bits = 0, bytes = 0; // bytes read per product
    Timing time;                // per product
    // Arrays the kernels derive at load beside the stored ones (kernelLayoutBytes, or the device
    // layout's extra bytes), per parameter.
    double layoutBits = 0;
    bool baseline = false; // a dense product the speed-ups are taken against
    int stack = 1;         // distinct copies streamed per timed run
    double seconds() const { return time.median; }
};

// The product of each of `count` distinct copies in turn, timed per product.
Timing timeStack(int repeat, int count, const std::function<void(int)>& product) {
    Timing t = timeRuns(repeat, [&] {
        for (int k = 0; k < count; ++k)
            product(k);
    });
    t.median /= count;
    t.best /= count;
    return t;
}

std::vector<std::pair<int, int>> parseShapes(const std::vector<std::string>& shapes) {
    std::vector<std::pair<int, int>> parsed;
    for (const std::string& shape : shapes) {
        int r = 0, c = 0;
        if (std::sscanf(shape.c_str(), "%dx%d", &r, &c) != 2 || r <= 0 || c <= 0 || c > 65536)
            throw Error("", "shape '" + shape + "' is not ROWSxCOLS (cols ≤ 65536)");
        parsed.emplace_back(r, c);
    }
    return parsed;
}

// The table (or JSON), speed-ups from the medians against the shape's fastest baseline row.
// `bandwidth` is the measured read bandwidth in GB/s (0 where none was measured).
void printRows(const GemvOptions& o, const std::vector<Row>& rows, const std::string& device,
               double bandwidth) {
    const auto baselineSeconds = [&](const std::string& shape) {
        double best = 1e300;
        for (const Row& row : rows)
            if (row.shape == shape && row.baseline) best = std::min(best, row.seconds());
        return best;
    };
    if (o.json) {
        nlohmann::json results = nlohmann::json::array();
        for (const Row& row : rows)
            results.push_back(
                {{"shape", row.shape},
                 {"method", row.method},
                 {"bits_per_param", row.bits},
                 {"kernel_layout_bits_per_param", row.layoutBits},
                 {"bytes_read", row.bytes},
                 {"seconds", row.seconds()},
                 {"best_seconds", row.time.best},
                 {"gb_per_s", row.bytes / row.seconds() / 1e9},
                 {"share_of_read_bandwidth",
                  bandwidth > 0 ? row.bytes / row.seconds() / 1e9 / bandwidth : 0.0},
                 {"stack", row.stack},
                 {"speedup_vs_baseline", baselineSeconds(row.shape) / row.seconds()}});
        std::cout << nlohmann::json{{"benchmark", "gemv"},
                                    {"device", device},
                                    {"threads", threadCount()},
                                    {"isa", o.isa},
                                    {"repeat", o.repeat},
                                    {"cached", o.cached},
                                    {"stack_bytes", o.cached ? 0 : stackBytes(o)},
                                    {"last_level_cache_bytes", lastLevelCacheBytes()},
                                    {"read_gb_per_s", bandwidth},
                                    {"results", results}}
                         .dump()
                  << '\n';
        return;
    }
    std::printf(
        "gemv on %s: batch-1 y = W·x, %d threads, %d runs, %s CPU kernels: median ms (and best); "
        "GB/s and speed-up from the median, against the faster dense row; +bits: the kernels' "
        "layout derived at load, in memory beside the stored arrays\n\n",
        device.c_str(), threadCount(), o.repeat, o.isa.c_str());
    // The CPU path streams stacks and measures the bandwidth they are read at.
    if (bandwidth > 0 && o.cached)
        std::printf("one matrix timed again and again (--cached): in cache where it fits\n");
    else if (bandwidth > 0)
        std::printf("each run streams a stack of distinct copies (×N) of at least %.0f MiB, %g× "
                    "the %.0f MiB last-level cache: from memory\n",
                    double(stackBytes(o)) / (1 << 20),
                    double(stackBytes(o)) / double(lastLevelCacheBytes()),
                    double(lastLevelCacheBytes()) / (1 << 20));
    if (bandwidth > 0)
        std::printf(
            "read bandwidth measured in this run: %.2f GB/s (fp32 row sums over the same bytes)\n",
            bandwidth);
    std::printf("\n%-11s %-48s %6s %6s %4s %8s %8s %8s %7s %5s %8s\n", "shape", "method", "bits",
                "+bits", "×N", "MB read", "ms", "(best)", "GB/s", "% bw", "speed-up");
    for (const Row& row : rows) {
        const double rate = row.bytes / row.seconds() / 1e9;
        std::printf("%-11s %-48s %6.3f %6.3f %4d %8.2f %8.4f %8.4f %7.2f %5.0f %7.2f×\n",
                    row.shape.c_str(), row.method.c_str(), row.bits, row.layoutBits, row.stack,
                    row.bytes / 1e6, row.seconds() * 1e3, row.time.best * 1e3, rate,
                    bandwidth > 0 ? 100.0 * rate / bandwidth : 0.0,
                    baselineSeconds(row.shape) / row.seconds());
    }
}

#ifdef QUANTLENS_HAVE_CUDA
// The same layers on CUDA device `device`, against cuBLAS fp16 (docs/DESIGN.md's GPU target).
void runCudaGemv(const GemvOptions& o, const std::vector<Method>& methods, const Backend& backend,
                 int device) {
    std::vector<Row> rows;
    for (const auto& [r, c] : parseShapes(o.shapes)) {
        const std::string shape = std::to_string(r) + "x" + std::to_string(c);
        const gpu::KernelTiming cublas = gpu::timeCublasF16Gemv(device, r, c, o.repeat);
        rows.push_back({shape,
                        "fp16 cuBLAS (GemmEx n=1, fp32 accumulate)",
                        16.0,
                        2.0 * r * c + 2.0 * (r + c),
                        {cublas.median, cublas.best},
                        0.0,
                        true,
                        1});
        for (const Method& method : methods) {
            const auto layer =
                std::make_shared<const QuantizedLayer>(syntheticLayer(method, r, c, o.seed));
            const auto op = CompressedLinear::fromLayer(layer, "bench");
            std::size_t deviceBytes = 0;
            const gpu::KernelTiming t =
                gpu::timeCompressedGemv(device, op->matrix(), o.repeat, deviceBytes);
            rows.push_back({shape,
                            method.label,
                            layer->bitsPerParameter(),
                            static_cast<double>(deviceBytes) + 4.0 * (r + c),
                            {t.median, t.best},
                            8.0 *
                                (static_cast<double>(deviceBytes) -
                                 static_cast<double>(layer->storedBytes())) /
                                (double(r) * c),
                            false,
                            1});
        }
    }
    printRows(o, rows, backend.name(), 0.0);
}
#endif

void runGemv(const GemvOptions& o, const Backend& backend) {
    const KernelIsa isa = o.isa == "avx2"       ? KernelIsa::Avx2
                          : o.isa == "portable" ? KernelIsa::Portable
                                                : KernelIsa::Auto;
    const std::vector<Method> methods = {
        {"spqr w3 g32 qq3 b2=16 act-order, 0.5% outliers",
         SpqrConfig{3, 32, 3, 16, 0.2, 128, 1.0, true}, 0.005},
        {"spqr w3 g16 qq3 b2=16 act-order, 1% outliers",
         SpqrConfig{3, 16, 3, 16, 0.2, 128, 1.0, true}, 0.01},
        {"squeezellm w3, 0.45% sparse", SqueezeConfig{3, 0.40, 0.05, 50}, 0.0045},
        {"squeezellm w4, 0.45% sparse", SqueezeConfig{4, 0.40, 0.05, 50}, 0.0045},
        {"gptq w4 g128 act-order", GptqConfig{4, 128, 128, 0.01, true}, 0.0},
    };
#ifdef QUANTLENS_HAVE_CUDA
    if (const std::string id = backend.id(); id.starts_with("cuda:"))
        return runCudaGemv(o, methods, backend, std::stoi(id.substr(5)));
#endif
    std::vector<Row> rows;
    for (const auto& [r, c] : parseShapes(o.shapes)) {
        const std::string shape = std::to_string(r) + "x" + std::to_string(c);
        std::mt19937 engine(static_cast<std::uint32_t>(o.seed));
        std::normal_distribution<float> normal;
        Eigen::VectorXf x(c), y(r);
        for (Eigen::Index j = 0; j < c; ++j)
            x[j] = normal(engine);
        const double vectors = 4.0 * (r + c);
        {
            const double bytes = 4.0 * r * c + vectors;
            const int count = stackCount(o, bytes);
            std::vector<RowMatrix> w(std::size_t(count), RowMatrix::Random(r, c) * 0.02f);
            rows.push_back(
                {shape, "fp32 eigen, one call", 32.0, bytes,
                 timeStack(o.repeat, count, [&](int k) { y.noalias() = w[std::size_t(k)] * x; }),
                 0.0, true, count});
            // Eigen runs a matrix-vector product on one thread; split the rows across the
            // engine's threads as the compressed kernels do.
            constexpr int kBlock = 64;
            rows.push_back(
                {shape, "fp32 eigen, rows split over threads", 32.0, bytes,
                 timeStack(o.repeat, count,
                           [&](int k) {
                               parallelFor((r + kBlock - 1) / kBlock, [&](std::int64_t task) {
                                   const Eigen::Index first = task * kBlock;
                                   const Eigen::Index n = std::min<Eigen::Index>(kBlock, r - first);
                                   y.segment(first, n).noalias() =
                                       w[std::size_t(k)].middleRows(first, n) * x;
                               });
                           }),
                 0.0, true, count});
        }
        for (const Method& method : methods) {
            const QuantizedLayer layer = syntheticLayer(method, r, c, o.seed);
            const double bytes = static_cast<double>(layer.storedBytes()) + vectors;
            // Copies of one layer: the bytes are distinct in memory, which is all that counts.
            std::vector<std::shared_ptr<const CompressedLinear>> stack;
            for (int k = 0; k < stackCount(o, bytes); ++k)
                stack.push_back(CompressedLinear::fromLayer(
                    std::make_shared<const QuantizedLayer>(layer), "bench"));
            // Exact fp32 activations, then (where the layout has the kernel) int8 ones, which
            // decoding runs.
            const Int8Kernel int8 = int8Kernel(stack.front()->matrix(), isa);
            for (const Activations activations : {Activations::Exact, Activations::Int8}) {
                const bool quantized = activations == Activations::Int8;
                if (quantized && int8 == Int8Kernel::None) continue;
                rows.push_back(
                    {shape,
                     method.label +
                         (quantized ? std::string(", int8 x ") + int8KernelName(int8) : ""),
                     layer.bitsPerParameter(), bytes,
                     timeStack(o.repeat, int(stack.size()),
                               [&](int k) {
                                   multiplyCompressed(stack[std::size_t(k)]->matrix(), x.data(), c,
                                                      1, y.data(), r, false, isa, activations);
                               }),
                     8.0 * static_cast<double>(kernelLayoutBytes(stack.front()->matrix())) /
                         (double(r) * c),
                     false, int(stack.size())});
            }
        }
    }
    printRows(o, rows, "cpu", readBandwidth(o));
}

} // namespace

Command addGemvBench(CLI::App& bench) {
    auto options = std::make_shared<GemvOptions>();
    CLI::App* sub = bench.add_subcommand(
        "gemv", "Batch-1 products with the fused compressed kernels (SpQR, SqueezeLLM, GPTQ) "
                "against Eigen fp32");
    sub->add_option("--shape", options->shapes, "ROWSxCOLS (repeatable)")->capture_default_str();
    sub->add_option("--repeat", options->repeat, "Timed runs per row (median)")
        ->check(CLI::PositiveNumber)
        ->capture_default_str();
    sub->add_option("--seed", options->seed, "Generator seed")->capture_default_str();
    sub->add_option("--stack-mib", options->stackMib,
                    "MiB each timed run streams, in distinct copies of the matrix (default: four "
                    "times the last-level cache)")
        ->check(CLI::PositiveNumber);
    sub->add_flag("--cached", options->cached,
                  "Time one matrix again and again (in cache where it fits), not a stack");
    sub->add_flag("--json", options->json, "Print one JSON object");
    sub->add_option("--isa", options->isa, "The compressed kernels' instructions")
        ->check(CLI::IsMember({"auto", "avx2", "portable"}))
        ->capture_default_str();
    return {sub, [options](const Session& session) { runGemv(*options, *session.backend); }};
}
