#pragma once

#include <Eigen/Core>

#include <string>
#include <vector>

namespace quantlens {

// What OBS-style quantizers need from a layer's calibration Hessian H = 2·XᵀX/n [in, in].
struct PreparedHessian {
    std::vector<int> permutation;    // column order (identity, or descending diag H for act-order)
    std::vector<bool> deadColumns;   // zero diagonal: inputs never active; weights forced to 0
    Eigen::MatrixXf inverseCholesky; // U, upper: H⁻¹ = UᵀU, in permuted order (SpQR §3.2)
    Eigen::VectorXf inverseDiagonal; // diag(H⁻¹), in original order (sensitivity maps)
};

// Dampens H by percdamp·mean(diag H), marks dead inputs, inverts. Throws Error (with `source`)
// when H is not finite or not positive definite even after dampening.
PreparedHessian prepareHessian(Eigen::MatrixXf hessian, double percdamp, bool actOrder,
                               const std::string& source);

} // namespace quantlens
