#include "safetensors_mutator.h"
#include "test_data.h"

#include "quantlens/dtype.h"
#include "quantlens/float_tensor.h"
#include "quantlens/safetensors.h"

#include <QTemporaryDir>

#include <bit>
#include <cmath>

using namespace quantlens;

namespace {

// fp32 → bf16 with round-to-nearest-even, the conversion PyTorch applies (NaN-free input).
std::uint16_t toBf16RoundNearestEven(float value) {
    const std::uint32_t bits = std::bit_cast<std::uint32_t>(value);
    return static_cast<std::uint16_t>((bits + 0x7fffu + ((bits >> 16) & 1u)) >> 16);
}

} // namespace

class TestSafetensors : public QObject {
    Q_OBJECT
private slots:
    void halfPrecisionDecoding() {
        QCOMPARE(f16ToFloat(0x3c00), 1.0f);
        QCOMPARE(f16ToFloat(0xc000), -2.0f);
        QCOMPARE(f16ToFloat(0x7bff), 65504.0f);
        QCOMPARE(f16ToFloat(0x0001), std::ldexp(1.0f, -24)); // smallest subnormal
        QCOMPARE(f16ToFloat(0x03ff), 1023.0f * std::ldexp(1.0f, -24));
        QCOMPARE(f16ToFloat(0x3555), 0.333251953125f);
        QVERIFY(std::isinf(f16ToFloat(0xfc00)) && f16ToFloat(0xfc00) < 0);
        QVERIFY(std::isnan(f16ToFloat(0x7e00)));
        QCOMPARE(bf16ToFloat(0x3f80), 1.0f);
        QCOMPARE(bf16ToFloat(0xc0a0), -5.0f);
        QCOMPARE(bf16ToFloat(0x3eab), 0.333984375f);
    }

    void readsRealCheckpoint() {
        QUANTLENS_REQUIRE_DATA("stories260K-hf/model.safetensors");
        const SafetensorsFile file(test::dataPath("stories260K-hf/model.safetensors"));
        // embedding + 5 blocks × 9 + final norm (tied head).
        QCOMPARE(file.tensors().size(), std::size_t(47));
        QCOMPARE(file.metadata().at("format"), std::string("pt"));
        const TensorView* gate = file.find("model.layers.4.mlp.gate_proj.weight");
        QVERIFY(gate);
        QCOMPARE(gate->dtype, DType::F32);
        QCOMPARE(gate->shape, (std::vector<std::int64_t>{172, 64}));
        QCOMPARE(gate->byteSize(), std::size_t(172 * 64 * 4));
        QVERIFY(file.find("lm_head.weight") == nullptr);

        // The views point exactly where the header says (checked by re-reading the file).
        const auto parts =
            test::readSafetensorsParts(test::dataPath("stories260K-hf/model.safetensors"));
        const auto begin = parts.header["model.layers.4.mlp.gate_proj.weight"]["data_offsets"][0]
                               .get<std::size_t>();
        QCOMPARE(std::memcmp(gate->data, parts.data.data() + begin, gate->byteSize()), 0);
    }

    void f16TensorsDecodeExactly() {
        QUANTLENS_REQUIRE_DATA("stories260K-hf/model.safetensors");
        QTemporaryDir dir;
        const std::filesystem::path copy = dir.filePath("f16").toStdString();
        test::copyModelAsF16(test::dataPath("stories260K-hf"), copy);
        const SafetensorsFile f32(test::dataPath("stories260K-hf/model.safetensors"));
        const SafetensorsFile f16(copy / "model.safetensors");
        QCOMPARE(f16.tensors().size(), f32.tensors().size());
        for (const TensorView& half : f16.tensors()) {
            QCOMPARE(half.dtype, DType::F16);
            const FloatTensor wide(*f32.find(half.name)), narrow(half);
            for (std::int64_t i = 0; i < half.elementCount(); ++i)
                QCOMPARE(narrow.data()[i],
                         static_cast<float>(static_cast<_Float16>(wide.data()[i])));
        }
    }

    void bf16CheckpointIsTheRoundedF32One() {
        QUANTLENS_REQUIRE_DATA("stories260K-hf-bf16/model.safetensors");
        const SafetensorsFile f32(test::dataPath("stories260K-hf/model.safetensors"));
        const SafetensorsFile bf16(test::dataPath("stories260K-hf-bf16/model.safetensors"));
        QCOMPARE(bf16.tensors().size(), f32.tensors().size());
        for (const TensorView& half : bf16.tensors()) {
            QCOMPARE(half.dtype, DType::BF16);
            const TensorView* full = f32.find(half.name);
            QVERIFY(full);
            QCOMPARE(half.shape, full->shape);
            const FloatTensor wide(*full), narrow(half);
            for (std::int64_t i = 0; i < half.elementCount(); ++i)
                QCOMPARE(narrow.data()[i], bf16ToFloat(toBf16RoundNearestEven(wide.data()[i])));
        }
    }
};

QTEST_APPLESS_MAIN(TestSafetensors)
#include "test_safetensors.moc"
