#pragma once

#include "quantlens/model/model.h"
#include "quantlens/model/token_streams.h"
#include "quantlens/quantization/quant_plan.h"
#include "quantlens/quantization/quantize_journal.h"

#include <filesystem>
#include <span>
#include <string>

namespace quantlens {

// The journal of `quantize --resume` on disk (docs/FORMAT.md, Resumable runs): a directory
// `<output>.resume` beside the output holding
// - run.json: what the run is (method settings, calibration settings, the calibration stream's
//   hash, the output format, the model's config and the size and time of each of its files);
// - block-NNNNN.safetensors for each finished block: its layers' arrays, settings and errors;
// - hidden.safetensors: the calibration sequences' hidden states entering the next block.
// Every file is written atomically (block file first, then the states), so a kill at any moment
// leaves the journal at the last complete block.
class RunJournal final : public QuantizeJournal {
public:
    // Opens the journal of an interrupted run of the same quantization of `output`, or starts an
    // empty one. Throws Error naming what differs when the directory holds another run's journal
    // (other settings, other calibration text, a changed model), and when a journal file is
    // damaged.
    RunJournal(const std::filesystem::path& output, const Model& model,
               std::span<const std::int32_t> calibration, const QuantPlan& plan,
               const CalibrationConfig& calibrationConfig, const std::string& format);

    // Where the journal of `output` lives.
    static std::filesystem::path directoryFor(const std::filesystem::path& output);
    // The blocks an interrupted run of `output` completed, of how many; nothing when there is no
    // journal (for the studio's offer to resume).
    struct Interrupted {
        int completedBlocks = 0;
        int blocks = 0;
    };
    static std::optional<Interrupted> interruptedRun(const std::filesystem::path& output);
    // Removes the journal of `output`, if any: the next run starts over.
    static void discard(const std::filesystem::path& output);

    int completedBlocks() const override { return completed_; }
    std::vector<JournaledLayer> recordedBlock(int block) const override;
    std::vector<RowMatrix> recordedHiddenStates() const override;
    void recordBlock(int block, const std::vector<JournaledLayer>& layers,
                     const std::vector<RowMatrix>& hiddenStates) override;

    // The output was committed: the journal has served its purpose.
    void remove() { discard(output_); }

private:
    std::filesystem::path output_, directory_;
    const Model& model_;
    int completed_ = 0;
};

} // namespace quantlens
