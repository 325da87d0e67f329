#pragma once

#include <QString>
#include <QStringList>

namespace quantlens::test {

struct CliRun {
    int exitCode = -1; // -1: it did not finish in time
    QString out;
    QString err;
};

// Runs the quantlens-cli built beside the tests. Without a --device argument it runs on the CPU:
// these tests hold the CLI to the CPU's reference numbers, and tests/gpu checks CUDA against
// them, so a machine with a GPU gives the same results.
CliRun runCli(QStringList arguments, int timeoutMs = 300000);

} // namespace quantlens::test
