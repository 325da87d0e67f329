#include "quantlens/quantization/hessian.h"

#include "quantlens/core/error.h"
#include "quantlens/runtime/backend.h"

#include <algorithm>
#include <numeric>

namespace quantlens {

PreparedHessian prepareHessian(const Backend& backend, const Eigen::MatrixXf& hessian,
                               double percdamp, bool actOrder, const std::string& source) {
    const Eigen::Index n = hessian.rows();
    if (hessian.cols() != n || n == 0) throw Error(source, "calibration Hessian is not square");
    if (!hessian.allFinite()) throw Error(source, "calibration Hessian contains NaN or Inf");

    PreparedHessian prepared;
    prepared.deadColumns.resize(static_cast<std::size_t>(n));
    Eigen::VectorXf diagonal = hessian.diagonal();
    for (Eigen::Index j = 0; j < n; ++j) {
        // An input that was never active tells nothing; GPTQ sets its diagonal to 1 and its weights
        // to 0.
        prepared.deadColumns[j] = diagonal[j] == 0.0f;
        if (prepared.deadColumns[j]) diagonal[j] = 1.0f;
    }
    prepared.permutation.resize(static_cast<std::size_t>(n));
    std::iota(prepared.permutation.begin(), prepared.permutation.end(), 0);
    if (actOrder) // GPTQ's act-order: most-activated inputs first
        std::stable_sort(prepared.permutation.begin(), prepared.permutation.end(),
                         [&](int a, int b) { return diagonal[a] > diagonal[b]; });
    const float damp = static_cast<float>(percdamp) * diagonal.mean();

    // U, the upper Cholesky factor of H⁻¹, without forming H⁻¹: with J the reversal, factor
    // J·H·J = L·Lᵀ; then H⁻¹ = (J·L⁻¹·J)ᵀ(J·L⁻¹·J) and J·L⁻¹·J is upper triangular. One
    // factorisation and one triangular inverse instead of two factorisations and a solve, and two
    // n×n buffers instead of four.
    const auto sourceIndex = [&](Eigen::Index k) {
        return prepared.permutation[static_cast<std::size_t>(n - 1 - k)];
    };
    Eigen::MatrixXf reversed(n, n);
    for (Eigen::Index j = 0; j < n; ++j) {
        const int column = sourceIndex(j);
        for (Eigen::Index i = 0; i < n; ++i)
            reversed(i, j) = hessian(sourceIndex(i), column);
        reversed(j, j) = diagonal[column] + damp;
    }
    if (!backend.inverseCholeskyFactor(reversed))
        throw Error(source,
                    "calibration Hessian is not positive definite even after dampening by " +
                        std::to_string(percdamp) + "·mean(diag H); raise --percdamp");
    reversed.reverseInPlace();
    prepared.inverseCholesky = std::move(reversed);
    prepared.inverseDiagonal.resize(n);
    for (Eigen::Index k = 0; k < n; ++k)
        prepared.inverseDiagonal[prepared.permutation[static_cast<std::size_t>(k)]] =
            prepared.inverseCholesky.col(k).squaredNorm();
    return prepared;
}

} // namespace quantlens
