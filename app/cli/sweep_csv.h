#pragma once

// The CSV a sweep writes, one row per run, and the merge of a sharded sweep's parts into it.

#include "quantlens/runtime/base_comparison.h"

#include <optional>
#include <string>
#include <vector>

// One run of a sweep. `run` is its place in the grid's stable order: 0 for the unquantized
// baseline, i + 1 for the grid's i-th combination, so that shards can be merged back in order.
struct SweepRow {
    std::string method;
    std::string settings;
    int wbits = 0;
    double bitsPerParameter = 0.0;
    double paperBitsPerParameter = 0.0;
    double outlierFraction = 0.0;
    double perplexity = 0.0;
    quantlens::BaseComparison comparison; // to the unquantized model; unmeasured for the baseline
    std::optional<double> targetBits;     // a bit-budget run's target
    double seconds = 0.0;
    int run = 0;
};

// The CSV text of `rows` (header first), as `sweep --out` writes it: the comparison's figures in
// kComparisonFigures' columns, an empty field for what was not measured.
std::string sweepCsv(const std::vector<SweepRow>& rows);

// Writes `text` to `path` atomically: a reader never sees half a file.
void writeFileAtomically(const std::string& path, const std::string& text);

// The CSV of a whole sweep from the CSVs of its shards (`sweep --shard K/N`): every row of every
// part, in run order, each exactly as its shard wrote it. Throws quantlens::Error naming the file
// for a file that is not a sweep CSV, a run two parts hold, and a run no part holds.
std::string mergeSweepCsvs(const std::vector<std::string>& paths);

// "K/N" → {K, N}, 1 ≤ K ≤ N; throws quantlens::Error otherwise.
std::pair<int, int> parseShard(const std::string& text);
