#include "test_data.h"

namespace quantlens::test {

std::filesystem::path dataPath(const std::string& relative) {
    return std::filesystem::path(QUANTLENS_DATA_DIR) / relative;
}

std::filesystem::path cliPath() {
    return QUANTLENS_CLI_PATH;
}

} // namespace quantlens::test
