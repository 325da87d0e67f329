#pragma once

#include <filesystem>
#include <string>

namespace quantlens {

// Reads a whole text file; errors name the file.
std::string readTextFile(const std::filesystem::path& path);

} // namespace quantlens
