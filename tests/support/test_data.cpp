#include "test_data.h"

#include <algorithm>
#include <fstream>
#include <iterator>
#include <stdexcept>

namespace quantlens::test {

std::filesystem::path dataPath(const std::string& relative) {
    return std::filesystem::path(QUANTLENS_DATA_DIR) / relative;
}

std::filesystem::path cliPath() {
    return QUANTLENS_CLI_PATH;
}

QString artifactPath(const QString& name) {
    const QString directory =
        qEnvironmentVariable("QUANTLENS_ARTIFACT_DIR", QStringLiteral(QUANTLENS_ARTIFACT_DEFAULT));
    QDir().mkpath(directory);
    return QDir(directory).filePath(name);
}

std::string readBytes(const std::filesystem::path& file) {
    std::ifstream in(file, std::ios::binary);
    if (!in) throw std::runtime_error("cannot read " + file.string());
    return {std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>()};
}

void writeBytes(const std::filesystem::path& file, const std::string& bytes) {
    std::ofstream out(file, std::ios::binary | std::ios::trunc);
    out.write(bytes.data(), static_cast<std::streamsize>(bytes.size()));
    if (!out) throw std::runtime_error("cannot write " + file.string());
}

std::vector<std::string> entries(const std::filesystem::path& directory) {
    std::vector<std::string> names;
    for (const auto& entry : std::filesystem::directory_iterator(directory))
        names.push_back(entry.path().filename().string());
    std::sort(names.begin(), names.end());
    return names;
}

} // namespace quantlens::test
