#include "quantlens/runtime/backend.h"

#include "quantlens/core/parallel.h"
#include "quantlens/encoding/codebook.h"

#include <Eigen/Cholesky>

#include <optional>
#include <vector>

namespace quantlens {
namespace {

class CpuGram final : public GramAccumulator {
public:
    explicit CpuGram(Eigen::Index n) : gram_(Eigen::MatrixXf::Zero(n, n)) {}
    void add(const RowMatrix& x) override { gram_.noalias() += x.transpose() * x; }
    Eigen::MatrixXf result() const override { return gram_; }

private:
    Eigen::MatrixXf gram_;
};

// The loop's host matrix is the only copy: fetching is free, feedback is one Eigen product.
class CpuTrailingColumns final : public ObsTrailingColumns {
public:
    CpuTrailingColumns(Eigen::MatrixXf& weights, const Eigen::MatrixXf& inverseCholesky)
        : weights_(weights), u_(inverseCholesky) {}
    void fetch(Eigen::Index, Eigen::Index) override {}
    void feedBack(const Eigen::Ref<const Eigen::MatrixXf>& errors, Eigen::Index begin,
                  Eigen::Index end) override {
        const Eigen::Index rest = weights_.cols() - end;
        weights_.rightCols(rest).noalias() -= errors * u_.block(begin, end, end - begin, rest);
    }

private:
    Eigen::MatrixXf& weights_;
    const Eigen::MatrixXf& u_;
};

class CpuSequenceForward final : public SequenceForward {
public:
    explicit CpuSequenceForward(const Transformer& transformer) : transformer_(transformer) {}
    RowMatrix logits(std::span<const std::int32_t> tokens, const JobContext& job) const override {
        KvCache cache(transformer_.model().config, static_cast<int>(tokens.size()));
        return transformer_.forward(tokens, cache, &job);
    }

private:
    const Transformer& transformer_;
};

class CpuCalibrationWalk final : public CalibrationWalk {
public:
    CpuCalibrationWalk(const Transformer& transformer, std::vector<RowMatrix> hidden)
        : transformer_(transformer), hidden_(std::move(hidden)) {}
    Eigen::MatrixXf stageGram(int block, const BlockView& weights, LinearStage stage,
                              const JobContext& job) override {
        std::optional<CpuGram> gram;
        for (const RowMatrix& input : hidden_) {
            job.checkpoint();
            RowMatrix x = input;
            KvCache cache(transformer_.model().config, static_cast<int>(x.rows()));
            transformer_.runBlock(
                block, weights, x, cache, 0,
                [&](LinearStage seen, const RowMatrix& activations) {
                    if (seen != stage) return;
                    if (!gram) gram.emplace(activations.cols());
                    gram->add(activations);
                },
                stage);
        }
        return gram ? gram->result() : Eigen::MatrixXf();
    }
    void advance(int block, const BlockView& weights, const JobContext& job) override {
        for (RowMatrix& x : hidden_) {
            job.checkpoint();
            KvCache cache(transformer_.model().config, static_cast<int>(x.rows()));
            transformer_.runBlock(block, weights, x, cache, 0);
        }
    }
    std::vector<RowMatrix> hiddenStates() const override { return hidden_; }

private:
    const Transformer& transformer_;
    std::vector<RowMatrix> hidden_;
};

class CpuBackend final : public Backend {
public:
    std::string id() const override { return "cpu"; }
    std::string name() const override { return "cpu"; }
    std::unique_ptr<GramAccumulator> gramAccumulator(Eigen::Index n) const override {
        return std::make_unique<CpuGram>(n);
    }
    bool inverseCholeskyFactor(Eigen::MatrixXf& a) const override {
        Eigen::LLT<Eigen::Ref<Eigen::MatrixXf>> factor(a);
        if (factor.info() != Eigen::Success) return false;
        Eigen::MatrixXf inverse = Eigen::MatrixXf::Identity(a.rows(), a.cols());
        factor.matrixL().solveInPlace(inverse);
        a = std::move(inverse);
        return true;
    }
    std::unique_ptr<ObsTrailingColumns>
    obsTrailingColumns(Eigen::MatrixXf& weights,
                       const Eigen::MatrixXf& inverseCholesky) const override {
        return std::make_unique<CpuTrailingColumns>(weights, inverseCholesky);
    }
    void assignNearest(const RowMatrix& values, std::span<const float> tables, int levels,
                       std::span<std::uint16_t> codes) const override {
        const Eigen::Index cols = values.cols();
        parallelFor(values.rows(), [&](std::int64_t r) {
            const std::vector<double> table(tables.begin() + r * levels,
                                            tables.begin() + (r + 1) * levels);
            for (Eigen::Index j = 0; j < cols; ++j)
                codes[static_cast<std::size_t>(r * cols + j)] =
                    static_cast<std::uint16_t>(nearestCentroid(table, values(r, j)));
        });
    }
    std::unique_ptr<CalibrationWalk> calibrationWalk(const Transformer& transformer,
                                                     std::vector<RowMatrix> hidden,
                                                     const JobContext&) const override {
        return std::make_unique<CpuCalibrationWalk>(transformer, std::move(hidden));
    }
    std::unique_ptr<SequenceForward> sequenceForward(const Transformer& transformer,
                                                     const JobContext&) const override {
        return std::make_unique<CpuSequenceForward>(transformer);
    }
};

} // namespace

std::shared_ptr<const Backend> cpuBackend() {
    static const std::shared_ptr<const Backend> cpu = std::make_shared<CpuBackend>();
    return cpu;
}

const Backend& JobContext::backend() const {
    if (backend_) return *backend_;
    if (parent_) return parent_->backend();
    return *cpuBackend();
}

} // namespace quantlens
