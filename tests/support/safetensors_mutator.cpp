#include "safetensors_mutator.h"

#include "test_data.h"

#include <bit>
#include <cstring>
#include <fstream>
#include <sstream>
#include <stdexcept>

namespace quantlens::test {

SafetensorsParts readSafetensorsParts(const std::filesystem::path& file) {
    const std::string bytes = readBytes(file);
    std::uint64_t headerLength = 0;
    std::memcpy(&headerLength, bytes.data(), 8);
    SafetensorsParts parts;
    parts.header = nlohmann::json::parse(bytes.substr(8, headerLength));
    parts.data = bytes.substr(8 + headerLength);
    return parts;
}

void writeSafetensorsParts(const std::filesystem::path& file, const SafetensorsParts& parts,
                           std::optional<std::uint64_t> claimedHeaderLength) {
    std::string header = parts.header.dump();
    header.append((8 - header.size() % 8) % 8, ' '); // keep the data 8-byte aligned, as writers do
    const std::uint64_t length = claimedHeaderLength.value_or(header.size());
    std::string bytes(8, '\0');
    std::memcpy(bytes.data(), &length, 8);
    writeBytes(file, bytes + header + parts.data);
}

void copyModelDirectory(const std::filesystem::path& source,
                        const std::filesystem::path& destination) {
    std::filesystem::create_directories(destination);
    for (const auto& entry : std::filesystem::directory_iterator(source))
        std::filesystem::copy_file(entry.path(), destination / entry.path().filename(),
                                   std::filesystem::copy_options::overwrite_existing);
}

void copyModelAsF16(const std::filesystem::path& source, const std::filesystem::path& destination) {
    copyModelDirectory(source, destination);
    const std::filesystem::path weights = destination / "model.safetensors";
    SafetensorsParts parts = readSafetensorsParts(weights);
    SafetensorsParts half{nlohmann::json::object(), {}};
    for (auto& [name, entry] : parts.header.items()) {
        if (name == "__metadata__") continue;
        const auto begin = entry["data_offsets"][0].get<std::size_t>();
        const auto end = entry["data_offsets"][1].get<std::size_t>();
        const std::size_t offset = half.data.size();
        for (std::size_t at = begin; at < end; at += 4) {
            float value;
            std::memcpy(&value, parts.data.data() + at, 4);
            const auto bits = std::bit_cast<std::uint16_t>(static_cast<_Float16>(value));
            half.data.append(reinterpret_cast<const char*>(&bits), 2);
        }
        half.header[name] = {{"dtype", "F16"},
                             {"shape", entry["shape"]},
                             {"data_offsets", {offset, half.data.size()}}};
    }
    writeSafetensorsParts(weights, half);
}

void editJsonFile(const std::filesystem::path& file,
                  const std::function<void(nlohmann::json&)>& edit) {
    nlohmann::json value = nlohmann::json::parse(readBytes(file));
    edit(value);
    writeBytes(file, value.dump(2));
}

} // namespace quantlens::test
