#pragma once

#include "quantlens/quantization/layer_calibration.h"

#include <cmath>
#include <memory>
#include <random>

namespace quantlens::test {

// A seeded layer with a heavy column and row, as LLMs have (SpQR §3), and its preview: inputs X
// with some large features give H = 2·XᵀX/n.
inline std::shared_ptr<const LayerAnalysis> syntheticLayer(int rows, int cols, std::uint32_t seed,
                                                           HeadSplit heads = {}) {
    std::mt19937 generator(seed);
    std::normal_distribution<float> normal(0.0f, 1.0f);
    RowMatrix w(rows, cols);
    for (Eigen::Index k = 0; k < w.size(); ++k)
        w.data()[k] = 0.02f * normal(generator);
    w.col(cols / 3) *= 8.0f;
    w.row(rows / 2) *= 4.0f;
    const int samples = std::max(cols + 8, 64);
    Eigen::MatrixXf x(samples, cols);
    for (Eigen::Index k = 0; k < x.size(); ++k)
        x.data()[k] = normal(generator);
    x.col(cols / 5) *= 10.0f;
    const Eigen::MatrixXf h = 2.0f * x.transpose() * x / float(samples);
    const SpqrConfig spqr;
    SensitivityMap map =
        computeSensitivity(w, h, spqr.wbits, spqr.groupsize, spqr.percdamp, heads, "synthetic");
    return std::make_shared<const LayerAnalysis>(LayerAnalysis{
        0, "q_proj", w, OutlierPreview(std::move(map), baseBitsPerParameter(spqr, rows, cols))});
}

// The same kind of layer in SqueezeLLM's Fisher form, with a seeded Fisher that, like real ones,
// spans decades and is largest on a few input columns.
inline std::shared_ptr<const LayerAnalysis>
syntheticFisherLayer(int rows, int cols, std::uint32_t seed, HeadSplit heads = {}) {
    std::mt19937 generator(seed);
    std::normal_distribution<float> normal(0.0f, 1.0f);
    std::uniform_real_distribution<float> exponent(-4.0f, 0.0f);
    RowMatrix w(rows, cols), fisher(rows, cols);
    for (Eigen::Index k = 0; k < w.size(); ++k) {
        w.data()[k] = 0.02f * normal(generator);
        fisher.data()[k] = std::pow(10.0f, exponent(generator));
    }
    w.row(rows / 2) *= 4.0f;
    fisher.col(cols / 5) *= 100.0f;
    const SqueezeConfig config{.wbits = 3};
    SensitivityMap map = computeFisherSensitivity(w, fisher, config.wbits, heads, "synthetic");
    return std::make_shared<const LayerAnalysis>(LayerAnalysis{
        0, "q_proj", w, OutlierPreview(std::move(map), baseBitsPerParameter(config, rows, cols)),
        config});
}

} // namespace quantlens::test
