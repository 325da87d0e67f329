#include "quantlens/quantization/fisher.h"

#include "quantlens/core/error.h"
#include "quantlens/core/parallel.h"
#include "quantlens/runtime/gradients.h"
#include "quantlens/runtime/transformer.h"

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <fcntl.h>
#include <filesystem>
#include <sys/mman.h>
#include <unistd.h>
#include <utility>

namespace quantlens {

FisherInformation::FisherInformation(const Model& model) {
    std::size_t floats = 0;
    for (const BlockWeights& block : model.blocks)
        for (const TensorView* weight : block.linearLayers()) {
            const Eigen::Index rows = weight->shape.at(0), cols = weight->shape.at(1);
            layers_.push_back({floats, rows, cols});
            floats += static_cast<std::size_t>(rows * cols);
        }
    bytes_ = floats * sizeof(float);

    std::error_code directoryError;
    const std::filesystem::path directory = std::filesystem::temp_directory_path(directoryError);
    if (directoryError)
        throw Error("", "no temporary directory for the Fisher accumulators: " +
                            directoryError.message());
    std::string name = (directory / "quantlens-fisher-XXXXXX").string();
    const int fd = ::mkostemp(name.data(), O_CLOEXEC);
    if (fd < 0)
        throw Error(name, std::string("cannot create the Fisher accumulators' temporary file: ") +
                              std::strerror(errno));
    // Unlinked at once: the descriptor and then the mapping keep the file until they go, so no
    // exit path (cancel, error, crash) leaves it behind.
    ::unlink(name.c_str());
    const auto fail = [&](const std::string& action, int error) {
        ::close(fd);
        throw Error(name, "cannot " + action + " " + std::to_string(bytes_) +
                              " bytes for the Fisher accumulators: " + std::strerror(error));
    };
    if (bytes_ > 0) {
        // Reserves the blocks now, so a full disk fails here rather than as SIGBUS mid-run.
        if (const int error = ::posix_fallocate(fd, 0, static_cast<off_t>(bytes_)); error != 0)
            fail("reserve", error);
        void* mapping = ::mmap(nullptr, bytes_, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
        if (mapping == MAP_FAILED) fail("map", errno);
        data_ = static_cast<float*>(mapping);
    }
    ::close(fd);
}

FisherInformation::FisherInformation(FisherInformation&& other) noexcept
    : layers_(std::move(other.layers_)), data_(other.data_), bytes_(other.bytes_),
      sequences_(other.sequences_) {
    other.data_ = nullptr;
    other.bytes_ = 0;
}

FisherInformation::~FisherInformation() {
    if (data_) ::munmap(data_, bytes_);
}

ConstRowMatrixMap FisherInformation::layer(int block, int layer) const {
    if (block < 0 || block >= blocks() || layer < 0 || layer >= 7)
        throw Error("", "no Fisher information for block " + std::to_string(block) + ", layer " +
                            std::to_string(layer) + " of a " + std::to_string(blocks()) +
                            "-block model");
    const Placement& p = layers_[static_cast<std::size_t>(block * 7 + layer)];
    return {data_ + p.offset, p.rows, p.cols};
}

Eigen::Map<RowMatrix> FisherInformation::mutableLayer(int block, int layer) {
    const ConstRowMatrixMap view = std::as_const(*this).layer(block, layer);
    return {const_cast<float*>(view.data()), view.rows(), view.cols()};
}

FisherInformation accumulateFisher(const Model& model,
                                   const std::vector<std::vector<std::int32_t>>& sequences,
                                   const JobContext& job) {
    const std::string source = model.path.string();
    if (sequences.empty())
        throw Error(source, "no calibration sequences for the Fisher information");
    const Transformer transformer(model);
    FisherInformation fisher(model);
    const std::size_t count = sequences.size();
    for (std::size_t s = 0; s < count; ++s) {
        job.checkpoint();
        const std::string sequenceName =
            "calibration sequence " + std::to_string(s + 1) + " of " + std::to_string(count);
        const auto accumulate = [&](int block, int layer, const RowMatrix& gradient) {
            Eigen::Map<RowMatrix> sum = fisher.mutableLayer(block, layer);
            constexpr Eigen::Index kRows = 64;
            const Eigen::Index chunks = (gradient.rows() + kRows - 1) / kRows;
            parallelFor(chunks, [&](std::int64_t chunk) {
                const Eigen::Index first = chunk * kRows;
                auto rows = sum.middleRows(first, std::min(kRows, gradient.rows() - first));
                rows.array() += gradient.middleRows(first, rows.rows()).array().square();
                // A non-finite gradient, or one whose square overflows, poisons the sum.
                if (!rows.allFinite())
                    throw Error(source, "the gradient of block " + std::to_string(block) + " " +
                                            kLinearLayers[layer].name + " on " + sequenceName +
                                            " is not finite, or its square overflows fp32");
            });
        };
        lossAndLinearGradients(transformer, sequences[s], accumulate, &job);
        ++fisher.sequences_;
        job.report(static_cast<double>(s + 1) / static_cast<double>(count),
                   "Fisher information: " + sequenceName);
    }
    return fisher;
}

} // namespace quantlens
