#pragma once

#include <Eigen/Core>

#include <string>
#include <vector>

namespace quantlens {

class Backend;

// What OBS-style quantizers need from a layer's calibration Hessian H = 2·XᵀX/n [in, in].
struct PreparedHessian {
    std::vector<int> permutation; // column order (identity, or descending diag H for act-order)
    // Zero diagonal: inputs never active in calibration. Their weights are zeroed before quantizing
    // so they stretch no statistics; they decode to 0 under integer zero points (RTN, GPTQ) and to
    // within a step of 0 under SpQR's quantized zero points.
    std::vector<bool> deadColumns;
    Eigen::MatrixXf inverseCholesky; // U, upper: H⁻¹ = UᵀU, in permuted order (SpQR §3.2)
    Eigen::VectorXf inverseDiagonal; // diag(H⁻¹), in original order (sensitivity maps)
};

// Dampens H by percdamp·mean(diag H), marks dead inputs, inverts. Throws Error (with `source`)
// when H is not finite or not positive definite even after dampening. The factorisation runs on
// `backend`.
PreparedHessian prepareHessian(const Backend& backend, const Eigen::MatrixXf& hessian,
                               double percdamp, bool actOrder, const std::string& source);

} // namespace quantlens
