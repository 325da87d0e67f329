// Any bytes as a studio project file (JSON): runs, settings of every method, per-layer reports.
#include "fuzz_input.h"

#include "project_file.h"

#include "quantlens/core/error.h"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
    const auto path = quantlens::fuzz::writeScratch("input.quantlens", data, size);
    try {
        const Project project = loadProject(QString::fromStdString(path.string()));
        (void)project;
    } catch (const quantlens::Error&) {
    }
    return 0;
}
