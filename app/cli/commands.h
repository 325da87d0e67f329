#pragma once

#include "quantlens/core/job.h"
#include "quantlens/runtime/backend_registry.h"

#include <CLI/CLI.hpp>

#include <cstdio>
#include <functional>
#include <memory>
#include <string>

// What the global options chose, for the command that runs.
struct Session {
    const quantlens::BackendRegistry& backends;
    // --device's backend: every job the command starts runs on it.
    std::shared_ptr<const quantlens::Backend> backend;

    // A job on `backend` that reports to `progress` and prints its notices on stderr.
    quantlens::JobContext job(quantlens::JobContext::ProgressFn progress = nullptr) const {
        return quantlens::JobContext(std::move(progress), backend, [](const std::string& text) {
            std::fprintf(stderr, "quantlens-cli: note: %s\n", text.c_str());
        });
    }
};

// A subcommand: its options live in `parser`; `run` executes it once the whole command line has
// been parsed (so global options such as --threads and --device are applied first).
struct Command {
    CLI::App* parser = nullptr;
    std::function<void(const Session&)> run;
};

Command addInspectCommand(CLI::App& app);
Command addEvalCommand(CLI::App& app);
Command addGenerateCommand(CLI::App& app);
Command addTokenizeCommand(CLI::App& app);
Command addDevicesCommand(CLI::App& app);
Command addQuantizeCommand(CLI::App& app);
Command addAnalyseCommand(CLI::App& app);
Command addSweepCommand(CLI::App& app);
Command addSweepMergeCommand(CLI::App& app);
Command addSynthCommand(CLI::App& app);
Command addBenchCommand(CLI::App& app);
Command addExportCommand(CLI::App& app);
// `bench gemv`, registered under `bench` by addBenchCommand.
Command addGemvBench(CLI::App& bench);
