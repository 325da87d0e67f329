#include "file_size_limit.h"
#include "safetensors_mutator.h"
#include "test_data.h"

#include "quantlens/core/error.h"
#include "quantlens/io/safetensors.h"
#include "quantlens/io/safetensors_writer.h"

#include <QTemporaryDir>

#include <cstring>
#include <fstream>

using namespace quantlens;
namespace fs = std::filesystem;

using quantlens::test::readBytes;

namespace {

// Deterministic test bytes.
std::string bytes(std::size_t count, unsigned char start) {
    std::string data(count, '\0');
    for (std::size_t i = 0; i < count; ++i)
        data[i] = static_cast<char>(start + 7 * i);
    return data;
}

// The what() of the Error that `action` throws, or "" when it throws none.
template <typename Action> QString errorOf(Action&& action) {
    try {
        action();
    } catch (const Error& e) {
        return QString::fromUtf8(e.what());
    }
    return {};
}

using Spec = SafetensorsWriter::TensorSpec;

} // namespace

class TestSafetensorsWriter : public QObject {
    Q_OBJECT
private slots:
    // Odd sizes (6 bytes of F16) so that offsets are not all multiples of 8, a zero-size tensor,
    // and every dtype Quantlens reads; SafetensorsFile gets back the exact bytes.
    void roundTripThroughTheReader() {
        QTemporaryDir dir;
        const fs::path file = dir.filePath("w.safetensors").toStdString();
        const std::vector<Spec> specs = {{"a.weight", "F32", {3, 5}},
                                         {"b.bias", "F16", {3}},
                                         {"c", "BF16", {2, 3}},
                                         {"empty", "F32", {0, 4}},
                                         {"z.last", "F16", {1}}};
        const std::map<std::string, std::string> metadata = {{"format", "pt"},
                                                             {"quantlens.note", "é ✓"}};
        const std::vector<std::string> data = {bytes(60, 1), bytes(6, 2), bytes(12, 3), "",
                                               bytes(2, 4)};
        SafetensorsWriter writer(file, specs, metadata);
        for (std::size_t i = 0; i < specs.size(); ++i)
            writer.write(specs[i].name, data[i].data(), data[i].size());
        QVERIFY(!fs::exists(file)); // appears only at commit
        writer.commit();

        const SafetensorsFile read(file);
        QCOMPARE(read.metadata(), metadata);
        QCOMPARE(read.tensors().size(), specs.size());
        const std::vector<DType> dtypes = {DType::F32, DType::F16, DType::BF16, DType::F32,
                                           DType::F16};
        for (std::size_t i = 0; i < specs.size(); ++i) {
            const TensorView* t = read.find(specs[i].name);
            QVERIFY2(t, specs[i].name.c_str());
            QCOMPARE(t->dtype, dtypes[i]);
            QCOMPARE(t->shape, specs[i].shape);
            QCOMPARE(t->byteSize(), data[i].size());
            QCOMPARE(std::memcmp(t->data, data[i].data(), data[i].size()), 0);
        }

        // The data section starts 8-byte aligned; the header is padded with spaces, and the file
        // is exactly header + data with the tensors packed in declaration order.
        const std::string raw = readBytes(file);
        std::uint64_t headerLength = 0;
        std::memcpy(&headerLength, raw.data(), 8);
        QCOMPARE((8 + headerLength) % 8, std::uint64_t(0));
        const std::string header = raw.substr(8, headerLength);
        QCOMPARE(header.front(), '{');
        const std::size_t close = header.find_last_of('}');
        QCOMPARE(header.find_first_not_of(' ', close + 1), std::string::npos);
        std::string expected;
        for (const std::string& d : data)
            expected += d;
        QCOMPARE(raw.substr(8 + headerLength), expected);
        QCOMPARE(fs::directory_iterator(dir.path().toStdString())->path(), file); // no temp left
    }

    // Element sizes of every safetensors dtype, read back from the header offsets independently
    // of the engine's reader (which only accepts F32/F16/BF16).
    void everyDtypeHasItsSize() {
        const std::vector<std::pair<std::string, std::size_t>> sizes = {
            {"F64", 8},  {"I64", 8}, {"U64", 8}, {"F32", 4}, {"I32", 4}, {"U32", 4}, {"F16", 2},
            {"BF16", 2}, {"I16", 2}, {"U16", 2}, {"U8", 1},  {"I8", 1},  {"BOOL", 1}};
        QTemporaryDir dir;
        const fs::path file = dir.filePath("all.safetensors").toStdString();
        std::vector<Spec> specs;
        for (const auto& [dtype, size] : sizes)
            specs.push_back({"t_" + dtype, dtype, {3, 1}});
        SafetensorsWriter writer(file, specs);
        for (const auto& [dtype, size] : sizes) {
            const std::string data = bytes(3 * size, static_cast<unsigned char>(size));
            writer.write("t_" + dtype, data.data(), data.size());
        }
        writer.commit();
        const test::SafetensorsParts parts = test::readSafetensorsParts(file);
        QVERIFY(!parts.header.contains("__metadata__")); // none given, none written
        std::uint64_t offset = 0;
        for (const auto& [dtype, size] : sizes) {
            const auto& entry = parts.header["t_" + dtype];
            QCOMPARE(entry["dtype"].get<std::string>(), dtype);
            QCOMPARE(entry["data_offsets"][0].get<std::uint64_t>(), offset);
            offset += 3 * size;
            QCOMPARE(entry["data_offsets"][1].get<std::uint64_t>(), offset);
        }
        QCOMPARE(parts.data.size(), offset);
    }

    void badDeclarationsAreRejectedBeforeAnyFileExists() {
        QTemporaryDir dir;
        const fs::path file = dir.filePath("bad.safetensors").toStdString();
        QCOMPARE(errorOf([&] {
                     SafetensorsWriter(file, {{"x", "F12", {2}}});
                 }),
                 QString::fromStdString(file.string() + ": tensor 'x' has unknown dtype 'F12'"));
        QCOMPARE(errorOf([&] {
                     SafetensorsWriter(file, {{"x", "F32", {2, -1}}});
                 }),
                 QString::fromStdString(file.string() +
                                        ": tensor 'x' has a negative dimension in shape [2, -1]"));
        QCOMPARE(errorOf([&] {
                     SafetensorsWriter(file, {{"x", "F32", {1}}, {"x", "F16", {1}}});
                 }),
                 QString::fromStdString(file.string() + ": tensor 'x' is declared twice"));
        QVERIFY(errorOf([&] {
                    SafetensorsWriter(file, {{"__metadata__", "F32", {1}}});
                }).contains("reserves for the metadata"));
        QVERIFY(test::entries(dir.path().toStdString()).empty());
    }

    void outOfOrderAndWrongSizeWritesThrow() {
        QTemporaryDir dir;
        const fs::path file = dir.filePath("order.safetensors").toStdString();
        const std::string prefix = file.string() + ": ";
        SafetensorsWriter writer(file, {{"first", "F32", {2}}, {"second", "F16", {2, 3}}});
        const std::string data = bytes(64, 0);
        QCOMPARE(errorOf([&] { writer.write("second", data.data(), 12); }),
                 QString::fromStdString(prefix + "tensor 'second' written out of order: the next "
                                                 "tensor must be 'first' (1 of 2)"));
        QCOMPARE(errorOf([&] { writer.write("third", data.data(), 8); }),
                 QString::fromStdString(prefix + "tensor 'third' was never declared: the next "
                                                 "tensor must be 'first' (1 of 2)"));
        QCOMPARE(errorOf([&] { writer.write("first", data.data(), 7); }),
                 QString::fromStdString(prefix + "tensor 'first' is given 7 bytes, but its shape "
                                                 "[2] of F32 needs 8"));
        writer.write("first", data.data(), 8);
        QCOMPARE(errorOf([&] { writer.commit(); }),
                 QString::fromStdString(prefix + "cannot commit: only 1 of 2 declared tensors "
                                                 "were written; the next one is 'second'"));
        QCOMPARE(errorOf([&] { writer.write("second", data.data(), 13); }),
                 QString::fromStdString(prefix + "tensor 'second' is given 13 bytes, but its "
                                                 "shape [2, 3] of F16 needs 12"));
        writer.write("second", data.data(), 12);
        QCOMPARE(
            errorOf([&] { writer.write("first", data.data(), 8); }),
            QString::fromStdString(prefix + "tensor 'first' written after all 2 declared tensors"));
        writer.commit();
        // The rejected writes left no trace: the file holds exactly the two tensors.
        const SafetensorsFile read(file);
        QCOMPARE(read.find("second")->byteSize(), std::size_t(12));
        QCOMPARE(std::memcmp(read.find("second")->data, data.data(), 12), 0);
    }

    void abandonedWriterLeavesNothing() {
        QTemporaryDir dir;
        const fs::path file = dir.filePath("gone.safetensors").toStdString();
        {
            SafetensorsWriter writer(file, {{"a", "F32", {4}}, {"b", "F32", {4}}});
            const std::string data = bytes(16, 0);
            writer.write("a", data.data(), data.size());
            QCOMPARE(test::entries(dir.path().toStdString()).size(),
                     std::size_t(1)); // the temp file
        }
        QVERIFY(test::entries(dir.path().toStdString()).empty());

        // An existing file is left as it was.
        { std::ofstream(file, std::ios::binary) << "old contents"; }
        { SafetensorsWriter writer(file, {{"a", "F32", {4}}}); }
        QCOMPARE(readBytes(file), std::string("old contents"));
        QCOMPARE(test::entries(dir.path().toStdString()),
                 std::vector<std::string>{"gone.safetensors"});
    }

    // A full disk, simulated with a file-size limit: write() fails with EFBIG part-way through
    // the data. The child process reports the error; the target keeps its old contents and no
    // temporary file survives.
    void fullDiskFailsCleanly() {
        QTemporaryDir dir;
        const fs::path file = dir.filePath("full.safetensors").toStdString();
        { std::ofstream(file, std::ios::binary) << "old contents"; }

        const std::string message = test::inChildWithFileSizeLimit(64 * 1024, [&] {
            return errorOf([&] {
                       const std::string data(1 << 20, 'x');
                       SafetensorsWriter writer(file,
                                                {{"small", "U8", {16}}, {"big", "U8", {1 << 20}}});
                       writer.write("small", data.data(), 16);
                       writer.write("big", data.data(), data.size());
                       writer.commit();
                   })
                .toStdString();
        });
        QCOMPARE(QString::fromStdString(message),
                 QString::fromStdString(file.string() + ": write failed: " + std::strerror(EFBIG) +
                                        " (while writing tensor 'big')"));
        QCOMPARE(readBytes(file), std::string("old contents"));
        QCOMPARE(test::entries(dir.path().toStdString()),
                 std::vector<std::string>{"full.safetensors"});
    }

    // After a failed write the file cannot be completed: later writes and commit refuse.
    void failedWriterRefusesToContinue() {
        QTemporaryDir dir;
        const fs::path file = dir.filePath("f.safetensors").toStdString();
        const std::string messages = test::inChildWithFileSizeLimit(4096, [&] {
            std::string messages;
            const std::string data(8192, 'x');
            SafetensorsWriter writer(file, {{"big", "U8", {8192}}, {"next", "U8", {1}}});
            for (int attempt = 0; attempt < 2; ++attempt)
                messages +=
                    errorOf([&] { writer.write("big", data.data(), data.size()); }).toStdString() +
                    "\n";
            messages += errorOf([&] { writer.commit(); }).toStdString();
            return messages;
        });
        const std::string prefix = file.string() + ": ";
        QCOMPARE(QString::fromStdString(messages),
                 QString::fromStdString(
                     prefix + "write failed: " + std::strerror(EFBIG) +
                     " (while writing tensor 'big')\n" + prefix +
                     "cannot write tensor 'big': an earlier write to this file failed\n" + prefix +
                     "cannot commit: an earlier write to this file failed"));
        QVERIFY(test::entries(dir.path().toStdString()).empty());
    }
};

QTEST_APPLESS_MAIN(TestSafetensorsWriter)
#include "test_safetensors_writer.moc"
