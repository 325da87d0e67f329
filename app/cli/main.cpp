#include "backend_setup.h"
#include "commands.h"

#include "quantlens/core/error.h"
#include "quantlens/core/job.h"
#include "quantlens/core/parallel.h"

#include <csignal>
#include <iostream>

namespace {

// The first Ctrl-C (or SIGTERM) cancels the running job, which unwinds and removes its temporary
// files; a second one kills the process at once.
extern "C" void cancelOnSignal(int signal) {
    quantlens::cancelAllJobs();
    std::signal(signal, SIG_DFL);
}

} // namespace

int main(int argc, char** argv) {
    std::signal(SIGINT, cancelOnSignal);
    std::signal(SIGTERM, cancelOnSignal);
    CLI::App app{"quantlens-cli: inspect, evaluate and compress LLaMA-family models"};
    app.require_subcommand(1);
    int threads = 0;
    app.add_option("--threads", threads, "Worker threads (0 = all cores)")
        ->check(CLI::NonNegativeNumber);
    std::string device = "auto";
    app.add_option("--device", device,
                   "Where heavy work runs: auto (the first GPU when there is one, else the CPU), "
                   "cpu, cuda (the first CUDA device) or cuda:N; `devices` lists them")
        ->capture_default_str();
    const Command commands[] = {
        addInspectCommand(app),  addEvalCommand(app),       addGenerateCommand(app),
        addTokenizeCommand(app), addDevicesCommand(app),    addQuantizeCommand(app),
        addSweepCommand(app),    addSynthCommand(app),      addBenchCommand(app),
        addExportCommand(app),   addSweepMergeCommand(app), addAnalyseCommand(app)};
    try {
        app.parse(argc, argv);
        quantlens::setThreadCount(threads);
        const quantlens::BackendRegistry backends = quantlens::makeBackendRegistry();
        const Session session{backends, backends.open(device)};
        for (const Command& command : commands)
            if (command.parser->parsed()) command.run(session);
    } catch (const CLI::ParseError& e) {
        return app.exit(e);
    } catch (const quantlens::Cancelled&) {
        std::cerr << "quantlens-cli: cancelled\n";
        return 130; // as shells report a command ended by SIGINT
    } catch (const quantlens::Error& e) {
        std::cerr << "quantlens-cli: " << e.what() << '\n';
        return 1;
    } catch (const std::exception& e) {
        std::cerr << "quantlens-cli: internal error: " << e.what() << '\n';
        return 2;
    }
    return 0;
}
