#pragma once

#include "quantlens/encoding/quant_config.h"

#include <CLI/CLI.hpp>

#include <map>
#include <set>
#include <string>
#include <vector>

// Method settings by their command-line names ("wbits", "groupsize", "act-order", …): the one
// place where flags and sweep grids become QuantConfig values.
using QuantSettings = std::map<std::string, std::string>;

// The method's paper defaults with `settings` applied; unknown or ill-typed settings throw.
quantlens::QuantConfig makeQuantConfig(const std::string& method, const QuantSettings& settings);

// Registers --wbits, --groupsize, … on a subcommand; collect() returns those given.
class QuantSettingFlags {
public:
    explicit QuantSettingFlags(CLI::App& command);
    QuantSettings collect() const;

private:
    std::map<std::string, std::string> values_;
    std::map<std::string, CLI::Option*> options_;
    bool actOrder_ = false;
    CLI::Option* actOrderOption_ = nullptr;
};

// "spqr:wbits=3,4:outlier-threshold=0.1,0.2" → every combination, as (method, settings).
std::vector<std::pair<std::string, QuantSettings>> expandGrid(const std::string& spec);

// The settings a bit budget chooses from: `grid` ("wbits=2,3,4:groupsize=32,128", the settings
// of a sweep grid entry without its method) over `settings`, or the engine's budgetCandidates()
// around them when `grid` is empty.
std::vector<quantlens::QuantConfig> budgetCandidatesFor(const std::string& method,
                                                        const QuantSettings& settings,
                                                        const std::string& grid);
