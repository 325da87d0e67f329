#pragma once

#include <QtTest>

#include <filesystem>
#include <string>
#include <vector>

namespace quantlens::test {

// A path inside ../shared/data (see its README).
std::filesystem::path dataPath(const std::string& relative);

// The quantlens-cli binary built beside the tests.
std::filesystem::path cliPath();

// Where a test writes `name` (screenshots and other artifacts): $QUANTLENS_ARTIFACT_DIR, else
// artifacts/ in the build directory — never the source tree. The directory is created.
QString artifactPath(const QString& name);

// A whole file's bytes, and writing them back (replacing the file); both throw on failure.
std::string readBytes(const std::filesystem::path& file);
void writeBytes(const std::filesystem::path& file, const std::string& bytes);

// The names in a directory (hidden ones included), sorted: what a job left behind.
std::vector<std::string> entries(const std::filesystem::path& directory);

} // namespace quantlens::test

// Skips the current test with a clear message when the shared data folder is missing.
#define QUANTLENS_REQUIRE_DATA(relative)                                                           \
    do {                                                                                           \
        if (!std::filesystem::exists(quantlens::test::dataPath(relative)))                         \
            QSKIP(qPrintable(                                                                      \
                QString("test data missing: %1")                                                   \
                    .arg(QString::fromStdString(quantlens::test::dataPath(relative).string()))));  \
    } while (false)
