#include "quantlens/io/text_file.h"

#include "quantlens/core/error.h"

#include <cerrno>
#include <cstring>
#include <fstream>
#include <sstream>

namespace quantlens {

std::string readTextFile(const std::filesystem::path& path) {
    std::ifstream in(path, std::ios::binary);
    if (!in) throw Error(path.string(), std::string("cannot open: ") + std::strerror(errno));
    std::ostringstream contents;
    contents << in.rdbuf();
    if (in.bad()) throw Error(path.string(), "read failed");
    return contents.str();
}

} // namespace quantlens
