// Threshold preview latency (docs/DESIGN.md, Targets: dragging τ updates the outlier count, bits
// per parameter and heatmap overlay of a 4096×4096 layer within 50 ms). Prints one table; asserts
// nothing. Run: QT_QPA_PLATFORM=offscreen build/tests/bench_threshold_preview [rows cols]
#include "heatmap_view.h"
#include "threshold_tuner.h"

#include "quantlens/model/synthetic_model.h"
#include "quantlens/quantization/layer_calibration.h"

#include <QApplication>
#include <qcustomplot.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <random>

namespace {

using Clock = std::chrono::steady_clock;

double millisecondsSince(Clock::time_point start) {
    return std::chrono::duration<double, std::milli>(Clock::now() - start).count();
}

struct Stats {
    double median, p95, worst;
};

Stats summarise(std::vector<double> samples) {
    std::sort(samples.begin(), samples.end());
    return {samples[samples.size() / 2], samples[samples.size() * 95 / 100], samples.back()};
}

} // namespace

int main(int argc, char* argv[]) {
    QApplication app(argc, argv);
    const int rows = argc > 2 ? std::atoi(argv[1]) : 4096;
    const int cols = argc > 2 ? std::atoi(argv[2]) : 4096;

    auto start = Clock::now();
    quantlens::RowMatrix weights =
        quantlens::syntheticMatrix(rows, cols, 1, "model.layers.0.self_attn.q_proj.weight");
    // Calibration inputs with a few large features, as real activations have.
    constexpr int samples = 512;
    std::mt19937 generator(1);
    std::normal_distribution<float> normal;
    Eigen::MatrixXf x(samples, cols);
    for (Eigen::Index k = 0; k < x.size(); ++k)
        x.data()[k] = normal(generator);
    for (int c = 0; c < cols; c += 97)
        x.col(c) *= 20.0f;
    const Eigen::MatrixXf hessian = 2.0f * x.transpose() * x / float(samples);
    const double setupMs = millisecondsSince(start);

    const quantlens::SpqrConfig spqr;
    start = Clock::now();
    quantlens::SensitivityMap map = quantlens::computeSensitivity(
        weights, hessian, spqr.wbits, spqr.groupsize, spqr.percdamp, {}, "synthetic");
    const double sensitivityMs = millisecondsSince(start);
    start = Clock::now();
    auto layer = std::make_shared<const quantlens::LayerAnalysis>(quantlens::LayerAnalysis{
        0, "q_proj", std::move(weights),
        quantlens::OutlierPreview(std::move(map),
                                  quantlens::baseBitsPerParameter(spqr, rows, cols))});
    const double previewMs = millisecondsSince(start);

    HeatmapView heatmap;
    ThresholdTuner tuner;
    QObject::connect(&tuner, &ThresholdTuner::thresholdChanged, &heatmap,
                     &HeatmapView::setThreshold);
    heatmap.resize(1000, 800);
    heatmap.show();
    start = Clock::now();
    heatmap.setLayer(layer);
    tuner.setLayer(layer);
    const double poolMs = millisecondsSince(start);

    // A drag across the slider: every position once, as each mouse move delivers one.
    std::vector<double> query, update, replot;
    std::int64_t outliers = 0;
    for (int position = 100; position <= 900; position += 4) {
        const double tau = 0.01 * std::pow(10.0, 4.0 * position / 1000.0);
        auto t = Clock::now();
        outliers = layer->preview.outlierCount(tau);
        const double bits = layer->preview.bitsPerParameter(tau);
        query.push_back(millisecondsSince(t));
        t = Clock::now();
        tuner.slider()->setValue(position); // read-outs + overlay of every tile
        update.push_back(millisecondsSince(t));
        t = Clock::now();
        heatmap.plot()->replot(QCustomPlot::rpImmediateRefresh);
        replot.push_back(millisecondsSince(t));
        if (bits < 0) return 1; // keeps the query from being optimised away
    }
    const Stats q = summarise(query), u = summarise(update), r = summarise(replot);
    std::vector<double> total(update.size());
    for (std::size_t i = 0; i < total.size(); ++i)
        total[i] = query[i] + update[i] + replot[i];
    const Stats t = summarise(total);

    std::printf("threshold preview, %d x %d layer, %d x %d heatmap tiles of %d x %d weights\n",
                rows, cols, heatmap.tiles().rows, heatmap.tiles().cols, heatmap.tiles().tileRows,
                heatmap.tiles().tileCols);
    std::printf("one-off: synthetic layer + H %.0f ms, sensitivity %.0f ms, preview sort %.0f ms, "
                "first pooling %.0f ms\n",
                setupMs, sensitivityMs, previewMs, poolMs);
    std::printf("%-44s %10s %10s %10s\n", "per slider step (ms)", "median", "p95", "max");
    std::printf("%-44s %10.4f %10.4f %10.4f\n", "outlierCount + bitsPerParameter", q.median, q.p95,
                q.worst);
    std::printf("%-44s %10.3f %10.3f %10.3f\n", "slider -> read-outs + heatmap overlay", u.median,
                u.p95, u.worst);
    std::printf("%-44s %10.3f %10.3f %10.3f\n", "heatmap replot (offscreen)", r.median, r.p95,
                r.worst);
    std::printf("%-44s %10.3f %10.3f %10.3f   (target < 50)\n", "total", t.median, t.p95, t.worst);
    std::printf("outliers at the last step: %lld\n", static_cast<long long>(outliers));
    return 0;
}
