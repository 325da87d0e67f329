#include "quantlens/hessian.h"

#include "quantlens/error.h"

#include <Eigen/Cholesky>

#include <algorithm>
#include <numeric>

namespace quantlens {

PreparedHessian prepareHessian(Eigen::MatrixXf hessian, double percdamp, bool actOrder,
                               const std::string& source) {
    const Eigen::Index n = hessian.rows();
    if (hessian.cols() != n || n == 0) throw Error(source, "calibration Hessian is not square");
    if (!hessian.allFinite()) throw Error(source, "calibration Hessian contains NaN or Inf");

    PreparedHessian prepared;
    prepared.deadColumns.resize(static_cast<std::size_t>(n));
    for (Eigen::Index j = 0; j < n; ++j) {
        // An input that was never active tells nothing; GPTQ sets its diagonal to 1 and its weights
        // to 0.
        prepared.deadColumns[j] = hessian(j, j) == 0.0f;
        if (prepared.deadColumns[j]) hessian(j, j) = 1.0f;
    }

    prepared.permutation.resize(static_cast<std::size_t>(n));
    std::iota(prepared.permutation.begin(), prepared.permutation.end(), 0);
    if (actOrder) // GPTQ's act-order: most-activated inputs first
        std::stable_sort(prepared.permutation.begin(), prepared.permutation.end(),
                         [&](int a, int b) { return hessian(a, a) > hessian(b, b); });
    Eigen::MatrixXf permuted(n, n);
    for (Eigen::Index i = 0; i < n; ++i)
        for (Eigen::Index j = 0; j < n; ++j)
            permuted(i, j) = hessian(prepared.permutation[i], prepared.permutation[j]);

    const float damp = static_cast<float>(percdamp) * permuted.diagonal().mean();
    permuted.diagonal().array() += damp;
    const Eigen::LLT<Eigen::MatrixXf> factor(permuted);
    if (factor.info() != Eigen::Success)
        throw Error(source,
                    "calibration Hessian is not positive definite even after dampening by " +
                        std::to_string(percdamp) + "·mean(diag H); raise --percdamp");
    const Eigen::MatrixXf inverse = factor.solve(Eigen::MatrixXf::Identity(n, n));
    const Eigen::LLT<Eigen::MatrixXf> inverseFactor(inverse);
    if (inverseFactor.info() != Eigen::Success)
        throw Error(source, "the inverse calibration Hessian lost positive definiteness in float "
                            "precision; raise --percdamp");
    prepared.inverseCholesky = inverseFactor.matrixU();
    prepared.inverseDiagonal.resize(n);
    for (Eigen::Index k = 0; k < n; ++k)
        prepared.inverseDiagonal[prepared.permutation[k]] = inverse(k, k);
    return prepared;
}

} // namespace quantlens
