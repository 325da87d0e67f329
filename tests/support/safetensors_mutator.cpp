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

void convertTensors(SafetensorsParts& parts, const TensorConversion& convert) {
    SafetensorsParts converted{nlohmann::json::object(), {}};
    for (auto& [name, entry] : parts.header.items()) {
        if (name == "__metadata__") {
            converted.header[name] = entry;
            continue;
        }
        const auto begin = entry["data_offsets"][0].get<std::size_t>();
        const auto end = entry["data_offsets"][1].get<std::size_t>();
        const auto [dtype, bytes] =
            convert(name, entry["dtype"].get<std::string>(), parts.data.substr(begin, end - begin));
        const std::size_t offset = converted.data.size();
        converted.data += bytes;
        converted.header[name] = {{"dtype", dtype},
                                  {"shape", entry["shape"]},
                                  {"data_offsets", {offset, converted.data.size()}}};
    }
    parts = std::move(converted);
}

void copyModelAsF16(const std::filesystem::path& source, const std::filesystem::path& destination) {
    copyModelDirectory(source, destination);
    const std::filesystem::path weights = destination / "model.safetensors";
    SafetensorsParts parts = readSafetensorsParts(weights);
    convertTensors(parts, [](const std::string&, const std::string&, const std::string& bytes) {
        std::string half;
        for (std::size_t at = 0; at < bytes.size(); at += 4) {
            float value;
            std::memcpy(&value, bytes.data() + at, 4);
            const auto bits = std::bit_cast<std::uint16_t>(static_cast<_Float16>(value));
            half.append(reinterpret_cast<const char*>(&bits), 2);
        }
        return std::pair<std::string, std::string>{"F16", half};
    });
    parts.header.erase("__metadata__");
    writeSafetensorsParts(weights, parts);
}

void editJsonFile(const std::filesystem::path& file,
                  const std::function<void(nlohmann::json&)>& edit) {
    nlohmann::json value = nlohmann::json::parse(readBytes(file));
    edit(value);
    writeBytes(file, value.dump(2));
}

} // namespace quantlens::test
