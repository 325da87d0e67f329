#pragma once

#include "quantlens/core/float_tensor.h"
#include "quantlens/encoding/quantized_layer.h"

#include <vector>

namespace quantlens {

// One finished linear layer of a block as quantizeModel reports it.
struct JournaledLayer {
    QuantizedLayer layer;
    double relativeOutputError = 0.0; // NaN without calibration data
};

// What a resumable quantization keeps after every block, so that a rerun continues after the
// last complete block without replaying the earlier ones (formats/run_journal.h keeps it on
// disk): each finished block's layers, and the calibration sequences' hidden states entering the
// next block. quantizeModel hands a replayed block's layers to its sink exactly as it would have
// computed them, so the output of a resumed run is the output of an uninterrupted one.
class QuantizeJournal {
public:
    virtual ~QuantizeJournal() = default;
    // Blocks an earlier run completed; 0 for a fresh run.
    virtual int completedBlocks() const = 0;
    // Block `block` (< completedBlocks()) as recorded, its layers in kLinearLayers order.
    virtual std::vector<JournaledLayer> recordedBlock(int block) const = 0;
    // The hidden states entering block completedBlocks(), one per calibration sequence (none for
    // a run without calibration).
    virtual std::vector<RowMatrix> recordedHiddenStates() const = 0;
    // Block `block` is complete: its layers, and the states entering block + 1 (empty without
    // calibration). Once this returns, a kill loses nothing before block + 1.
    virtual void recordBlock(int block, const std::vector<JournaledLayer>& layers,
                             const std::vector<RowMatrix>& hiddenStates) = 0;
};

} // namespace quantlens
