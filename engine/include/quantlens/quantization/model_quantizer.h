#pragma once

#include "quantlens/core/job.h"
#include "quantlens/encoding/quantized_layer.h"
#include "quantlens/model/model.h"
#include "quantlens/model/token_streams.h"
#include "quantlens/quantization/quant_plan.h"

#include <cstdint>
#include <functional>
#include <span>
#include <string>
#include <vector>

namespace quantlens {

class QuantizeJournal;

struct LayerReport {
    int block = 0;
    std::string name; // "q_proj", …
    int rows = 0;
    int cols = 0;
    std::size_t storedBytes = 0;
    double bitsPerParameter = 0.0;
    double paperBitsPerParameter = 0.0;
    std::int64_t outliers = 0;
    // ‖WX − ŴX‖² / ‖WX‖² over the layer's calibration inputs X (NaN without calibration data).
    double relativeOutputError = 0.0;
    QuantConfig config; // the settings this layer was quantized with
};

struct QuantizeResult {
    std::vector<LayerReport> layers;
    std::int64_t parameters = 0; // in the quantized linear layers
    std::size_t storedBytes = 0;
    double bitsPerParameter = 0.0;      // stored bytes · 8 / parameters
    double paperBitsPerParameter = 0.0; // parameter-weighted mean of the layers' paper formula
    double outlierFraction = 0.0;
};

// Receives every quantized layer as soon as it is final (block order, then kLinearLayers
// order), so a caller can stream it to disk; nothing else keeps it.
// `reconstruction` is layer.dequantize(), passed along so it is computed once.
using QuantizedLayerSink =
    std::function<void(int block, const std::string& name, const QuantizedLayer& layer,
                       const RowMatrix& reconstruction)>;

// Quantizes every linear layer of `model` with its settings in `plan`, block by block (GPTQ/SpQR's
// sequential scheme): each block is calibrated on the outputs of the already-quantized blocks
// before it, and inside a block each stage (q/k/v, o, gate/up, down) sees the inputs produced by
// the stages quantized before it. Memory: one block in fp32 plus the calibration activations.
// SqueezeLLM first accumulates the diagonal Fisher of the unquantized model over the calibration
// sequences (file-backed, see fisher.h) and quantizes each layer from it. RTN needs no calibration;
// an empty stream skips it (and the output errors). With a `journal`, each finished block and the
// calibration states after it are recorded there, and a run continues after the blocks the journal
// already holds, handing their recorded layers to `sink` first (quantize_journal.h). Progress is
// reported for the whole run, each layer weighted by its parameters.
QuantizeResult quantizeModel(const Model& model, std::span<const std::int32_t> calibrationStream,
                             const QuantPlan& plan, const CalibrationConfig& calibration,
                             const QuantizedLayerSink& sink, const JobContext& job,
                             QuantizeJournal* journal = nullptr);

} // namespace quantlens
