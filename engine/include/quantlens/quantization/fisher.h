#pragma once

#include "quantlens/core/float_tensor.h"
#include "quantlens/core/job.h"
#include "quantlens/model/model.h"

#include <cstddef>
#include <cstdint>
#include <vector>

namespace quantlens {

// The diagonal Fisher information of every linear weight (SqueezeLLM §3.1): F = Σ_s (∂L_s/∂W)²
// over calibration sequences s, L_s the sequence's mean next-token cross-entropy. A 7B model's F
// alone is ~26 GB in fp32, so the accumulators live in an unlinked temporary file in TMPDIR
// (std::filesystem::temp_directory_path()), mapped shared: the kernel writes pages back and evicts
// them under memory pressure (where TMPDIR is a tmpfs, only to swap: point it at a disk for large
// models). The file goes with the object.
class FisherInformation {
public:
    FisherInformation(FisherInformation&& other) noexcept;
    FisherInformation& operator=(FisherInformation&&) = delete;
    FisherInformation(const FisherInformation&) = delete;
    FisherInformation& operator=(const FisherInformation&) = delete;
    ~FisherInformation();

    // F of linear layer `layer` (an index into kLinearLayers) of `block`, [rows = out,
    // cols = in] like the weight; valid while this object lives.
    ConstRowMatrixMap layer(int block, int layer) const;
    int blocks() const { return static_cast<int>(layers_.size() / 7); }
    // How many sequences were summed.
    int sequences() const { return sequences_; }

private:
    friend FisherInformation accumulateFisher(const Model&,
                                              const std::vector<std::vector<std::int32_t>>&,
                                              const JobContext&);
    // Zeroed accumulators shaped like `model`'s linear layers, in a new temporary file.
    explicit FisherInformation(const Model& model);
    Eigen::Map<RowMatrix> mutableLayer(int block, int layer);

    struct Placement {
        std::size_t offset; // in floats
        Eigen::Index rows, cols;
    };
    std::vector<Placement> layers_; // block-major, kLinearLayers order
    float* data_ = nullptr;
    std::size_t bytes_ = 0;
    int sequences_ = 0;
};

// Sums the squared gradients (lossAndLinearGradients) of each sequence. Reports progress after
// each sequence and checks `job` before every block; a cancelled or failed run leaves no temporary
// file behind. Throws Error when the temporary file cannot be created or sized (naming it, e.g.
// when the disk is full), or when a gradient is not finite (naming the sequence and layer).
FisherInformation accumulateFisher(const Model& model,
                                   const std::vector<std::vector<std::int32_t>>& sequences,
                                   const JobContext& job);

} // namespace quantlens
