#include "cli_run.h"

#include "test_data.h"

#include <QProcess>

namespace quantlens::test {

CliRun runCli(QStringList arguments, int timeoutMs) {
    if (!arguments.contains("--device")) arguments = QStringList{"--device", "cpu"} + arguments;
    QProcess process;
    process.start(QString::fromStdString(cliPath().string()), arguments);
    if (!process.waitForFinished(timeoutMs)) return {};
    return {process.exitCode(), QString::fromUtf8(process.readAllStandardOutput()),
            QString::fromUtf8(process.readAllStandardError())};
}

} // namespace quantlens::test
