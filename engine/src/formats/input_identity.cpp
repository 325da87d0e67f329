#include "input_identity.h"

#include "quantlens/core/hash.h"

#include <algorithm>
#include <cstdio>
#include <filesystem>
#include <vector>

namespace quantlens {

namespace fs = std::filesystem;
using nlohmann::ordered_json;

ordered_json modelIdentity(const Model& model) {
    std::vector<fs::path> files;
    if (fs::is_directory(model.path)) {
        for (const fs::directory_entry& entry : fs::directory_iterator(model.path))
            if (entry.is_regular_file()) files.push_back(entry.path());
    } else {
        files.push_back(model.path);
    }
    std::sort(files.begin(), files.end());
    ordered_json list = ordered_json::array();
    for (const fs::path& file : files)
        list.push_back({{"name", file.filename().string()},
                        {"bytes", fs::file_size(file)},
                        {"modified", fs::last_write_time(file).time_since_epoch().count()}});
    return {{"path", fs::absolute(model.path).lexically_normal().string()},
            {"blocks", model.config.layerCount},
            {"files", list}};
}

ordered_json tokenStreamIdentity(std::span<const std::int32_t> tokens) {
    char hash[17];
    std::snprintf(hash, sizeof hash, "%016llx",
                  static_cast<unsigned long long>(fnv1a(tokens.data(), tokens.size_bytes())));
    return {{"tokens", tokens.size()}, {"hash", hash}};
}

} // namespace quantlens
