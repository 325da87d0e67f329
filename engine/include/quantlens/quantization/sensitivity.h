#pragma once

#include "quantlens/core/float_tensor.h"
#include "quantlens/core/job.h"
#include "quantlens/encoding/quant_config.h"
#include "quantlens/model/layer_layout.h"
#include "quantlens/model/model_config.h"

#include <Eigen/Core>

#include <cstdint>
#include <limits>
#include <string>
#include <string_view>
#include <vector>

namespace quantlens {

// How a linear layer splits into attention heads (kLinearLayers' head axis, in heads of headDim).
struct HeadSplit {
    HeadAxis axis = HeadAxis::None;
    int headDim = 0;
};

// The split of a block's linear layer named as in kLinearLayers ("q_proj", …); the MLP layers
// have none. Throws Error for an unknown name.
HeadSplit headSplitOf(const ModelConfig& config, std::string_view layerName);

// Per-weight sensitivity of one linear layer W [rows = out, cols = in] in the OBS form of SpQR §3.1
// (docs/DESIGN.md, Analyse): s_ij = (w_ij − q(w_ij))² / [H⁻¹]_jj, the loss increase of quantizing
// w_ij alone. q is the base quantizer: asymmetric min-max per row over groups of `groupsize`
// columns (SpQR's first-level fit, before its statistics are themselves quantized), applied to the
// original weights without error feedback. H is dampened by percdamp·mean(diag H) as every OBS
// method does; inputs never active (dead columns) have their weights zeroed, as the quantizers do,
// and sensitivity 0.
struct SensitivityMap {
    int rows = 0;
    int cols = 0;
    RowMatrix values;             // s_ij, [rows, cols]
    Eigen::VectorXd rowTotals;    // Σ_j s_ij, [rows]
    Eigen::VectorXd columnTotals; // Σ_i s_ij, [cols]
    HeadSplit heads;              // the split headTotals follow
    Eigen::VectorXd headTotals;   // Σ over each head's rows or columns; empty without a split
    double outlierScale = 0.0;    // mean_j var_i(W_ij) / [H⁻¹]_jj, the unit τ is measured in
    double total() const { return rowTotals.sum(); }
};

// `hessian` is H = 2·XᵀX/n [cols, cols] over the layer's calibration inputs; groupsize 0 means one
// group per row. Throws Error (with `source`) on bad shapes or settings, non-finite weights, or a
// Hessian prepareHessian() rejects; with a head split, the split axis must be a multiple of
// headDim. H is inverted on `job`'s backend.
SensitivityMap computeSensitivity(const RowMatrix& weights, const Eigen::MatrixXf& hessian,
                                  int wbits, int groupsize, double percdamp, HeadSplit heads = {},
                                  const std::string& source = "",
                                  const JobContext& job = JobContext{});

// The SqueezeLLM form (Kim et al. 2023, §3.1; docs/DESIGN.md, Analyse): s_ij = F_ij·(w_ij −
// q(w_ij))², with F the diagonal Fisher of W and q SqueezeLLM's own dense quantizer (the
// Fisher-weighted k-means LUT of `wbits` bits per row). outlierScale is the mean sensitivity, so a
// τ on this map is in units of the mean. Throws Error (with `source`) on bad shapes, settings or
// Fisher values; the clustering checks `job` between chunks of rows.
SensitivityMap computeFisherSensitivity(const RowMatrix& weights, const RowMatrix& fisher,
                                        int wbits, HeadSplit heads = {},
                                        const std::string& source = "",
                                        const JobContext& job = JobContext{});

// The paper's bits per parameter of `config` on a rows × cols layer with no outliers (SpQR: wbits +
// 2·qq/β1 + 64/(β1·β2), partial groups counted whole; RTN/GPTQ: wbits + 32/g), the base that
// OutlierPreview adds outliers to.
double baseBitsPerParameter(const QuantConfig& config, int rows, int cols);

// The bits per parameter of a rows × cols SqueezeLLM layer before quantizing it, in the paper's
// accounting (QuantizedLayer::paperBitsPerParameter): wbits + 16·2^wbits/cols + 32·sparse fraction
// (squeezeSparseCounts).
double squeezeBitsPerParameter(const SqueezeConfig& config, int rows, int cols);

// The outlier count and bits per parameter for any SpQR threshold τ, without re-running the
// quantizer, for an interactive slider: the normalised sensitivities ν_ij = s_ij / outlierScale are
// sorted once at construction (a radix sort, ~0.3 s for 4096×4096, one extra float per weight);
// each query is a binary search (O(log n), under a microsecond).
//
// What it estimates: SpQR (Alg. 1) keeps w_ij as an outlier when ((w_ij − q(w_ij)) / U_jj)² >
// τ · mean_j(var_i(W_ij) / U_jj²), with U the upper Cholesky factor of H⁻¹ and w_ij the weight
// after error feedback from the columns quantized before it. The preview uses the same test with
// the original weights and [H⁻¹]_jj in place of U_jj² (equal for the first column in quantization
// order; U_jj² = [H_F⁻¹]_jj over the remaining columns F is smaller later), and a plain min-max
// grid in place of SpQR's outlier-robust, second-level-quantized statistics: ν_ij > τ. So it ranks
// weights as SpQR does, and its counts track SpQR's without matching them exactly; the
// exact count comes from quantizing.
class OutlierPreview {
public:
    // `baseBits` is the no-outlier bits per parameter, e.g. baseBitsPerParameter(spqrConfig, …).
    OutlierPreview(SensitivityMap map, double baseBits);

    const SensitivityMap& map() const { return map_; }
    double baseBits() const { return baseBits_; }

    // Number of weights with ν_ij > τ: every weight for τ < 0, the nonzero ones for τ = 0, none for
    // τ = +∞. Throws Error for NaN.
    std::int64_t outlierCount(double tau) const;
    // baseBits + 32·count/(rows·cols): the paper's accounting (fp16 value + 16-bit column per
    // outlier), which QuantizedLayer::paperBitsPerParameter gives once the layer is quantized.
    double bitsPerParameter(double tau) const;
    // The τ that marks the `count` largest ν, for a control that sets a share of weights rather
    // than a threshold: outlierCount(τ) = count, or fewer where ν ties across the cut; +∞ for
    // count ≤ 0 and −∞ (every weight) for count ≥ rows·cols.
    double thresholdForCount(std::int64_t count) const;
    // The overlay mask: the same test outlierCount() counts.
    bool isOutlier(int row, int col, double tau) const {
        return normalised(map_.values(row, col)) > tau;
    }

private:
    // ν in float, the one rounding both the count and the mask see. A zero scale (every column
    // constant) makes each nonzero sensitivity an outlier at any finite τ, as in SpQR.
    float normalised(float sensitivity) const {
        return scale_ > 0.0f ? sensitivity / scale_
                             : (sensitivity > 0.0f ? std::numeric_limits<float>::infinity() : 0.0f);
    }

    SensitivityMap map_;
    double baseBits_;
    float scale_;
    std::vector<float> sorted_; // ν, ascending
};

} // namespace quantlens
