#pragma once

#include "quantlens/core/float_tensor.h"
#include "quantlens/core/job.h"
#include "quantlens/runtime/transformer.h"

#include <Eigen/Core>

#include <cstdint>
#include <memory>
#include <span>
#include <string>
#include <vector>

namespace quantlens {

// G = Σ XᵀX over batches X [tokens, n]: a layer's calibration Hessian before scaling.
class GramAccumulator {
public:
    virtual ~GramAccumulator() = default;
    virtual void add(const RowMatrix& x) = 0;
    // The sum so far, [n, n], symmetric.
    virtual Eigen::MatrixXf result() const = 0;
};

// The columns an OBS loop (GPTQ, SpQR) has not reached yet. The loop quantizes one block of
// columns at a time in host memory; the error feedback into every later column, a
// [rows, block]·[block, rest] product that is almost all of the loop's arithmetic, runs here.
class ObsTrailingColumns {
public:
    virtual ~ObsTrailingColumns() = default;
    // Makes columns [begin, end) of the loop's host matrix current, with all feedback applied.
    virtual void fetch(Eigen::Index begin, Eigen::Index end) = 0;
    // W[:, end:] −= errors · U[begin:end, end:], errors [rows, end − begin].
    virtual void feedBack(const Eigen::Ref<const Eigen::MatrixXf>& errors, Eigen::Index begin,
                          Eigen::Index end) = 0;
};

// Logits [tokens, vocab] of one sequence read from position 0: the forward pass perplexity
// evaluation runs. Safe to call from several threads.
class SequenceForward {
public:
    virtual ~SequenceForward() = default;
    // `job` is checked before every block.
    virtual RowMatrix logits(std::span<const std::int32_t> tokens, const JobContext& job) const = 0;
};

// The calibration sequences' hidden states at the input of one block after another, kept where
// the backend computes: quantizeModel's walk through the model (each block is calibrated on the
// outputs of the blocks already quantized).
class CalibrationWalk {
public:
    virtual ~CalibrationWalk() = default;
    // Σ XᵀX over every sequence's input to `stage` when block `block` runs on `weights` (the
    // block's layers quantized so far). `job` is checked per sequence.
    virtual Eigen::MatrixXf stageGram(int block, const BlockView& weights, LinearStage stage,
                                      const JobContext& job) = 0;
    // Every sequence's hidden state ← block `block` of it, on `weights`.
    virtual void advance(int block, const BlockView& weights, const JobContext& job) = 0;
    // Every sequence's hidden state now [tokens, hidden], in the host's memory: what a resumed
    // quantization starts its walk from (quantize_journal.h).
    virtual std::vector<RowMatrix> hiddenStates() const = 0;
};

// Where the engine's heavy numeric work runs (docs/DESIGN.md): the CPU with Eigen, or a CUDA device
// (gpu/). Every implementation computes the same quantities; parity tests state how closely.
class Backend {
public:
    virtual ~Backend() = default;
    // The device's id in the registry (BackendRegistry::open): "cpu", "cuda:0".
    virtual std::string id() const = 0;
    // "cpu", or the device, e.g. "cuda:0 NVIDIA H100 80GB HBM3": what logs and run records say.
    virtual std::string name() const = 0;

    virtual std::unique_ptr<GramAccumulator> gramAccumulator(Eigen::Index n) const = 0;

    // Replaces a symmetric positive definite `a` (both triangles set) with L⁻¹, L the lower
    // Cholesky factor (a = L·Lᵀ), upper triangle zero. False, `a` unspecified, when `a` is not
    // positive definite. (prepareHessian: the factor of H⁻¹ GPTQ and SpQR need.)
    virtual bool inverseCholeskyFactor(Eigen::MatrixXf& a) const = 0;

    // The trailing columns of `weights` (which the caller keeps and the loop updates in place)
    // under the upper Cholesky factor U of H⁻¹; both must outlive the returned object.
    virtual std::unique_ptr<ObsTrailingColumns>
    obsTrailingColumns(Eigen::MatrixXf& weights, const Eigen::MatrixXf& inverseCholesky) const = 0;

    // codes[r·cols + j] = the index of the centroid of row r nearest to values(r, j), from
    // `tables` [rows, levels], each row ascending; ties go to the lower index (SqueezeLLM's
    // assignment step, nearestCentroid() per weight).
    virtual void assignNearest(const RowMatrix& values, std::span<const float> tables, int levels,
                               std::span<std::uint16_t> codes) const = 0;

    // A walk from the embedded calibration sequences `hidden` (each [tokens, dim], all of one
    // length) through `transformer`'s blocks; the transformer must outlive it. A device whose
    // free memory cannot hold it returns the CPU's walk and says so in a notice to `job`.
    virtual std::unique_ptr<CalibrationWalk> calibrationWalk(const Transformer& transformer,
                                                             std::vector<RowMatrix> hidden,
                                                             const JobContext& job) const = 0;

    // The forward pass of `transformer`'s model, which must outlive the result (weights may be
    // copied to a device once, here). What a device cannot run (too little free memory, a
    // compressed checkpoint) runs on the CPU, with a notice to `job`.
    virtual std::unique_ptr<SequenceForward> sequenceForward(const Transformer& transformer,
                                                             const JobContext& job) const = 0;
};

// The Eigen implementation; always available.
std::shared_ptr<const Backend> cpuBackend();

} // namespace quantlens
