#include "safetensors_mutator.h"
#include "test_data.h"

#include "quantlens/core/dtype.h"
#include "quantlens/core/float_tensor.h"
#include "quantlens/io/safetensors.h"

#include <QTemporaryDir>

#include <bit>
#include <cmath>
#include <limits>

using namespace quantlens;

namespace {

// fp32 → bf16 with round-to-nearest-even, the conversion PyTorch applies (NaN-free input).
std::uint16_t toBf16RoundNearestEven(float value) {
    const std::uint32_t bits = std::bit_cast<std::uint32_t>(value);
    return static_cast<std::uint16_t>((bits + 0x7fffu + ((bits >> 16) & 1u)) >> 16);
}

// QCOMPARE on floats is fuzzy (relative tolerance, and anything within 1e-5 of 0 equals 0), so
// exactness is asserted on the bit patterns.
std::uint32_t bits(float value) {
    return std::bit_cast<std::uint32_t>(value);
}

// The compiler's own fp32 → fp16 conversion: the independent reference for floatToF16.
std::uint16_t compilerF16(float value) {
    return std::bit_cast<std::uint16_t>(static_cast<_Float16>(value));
}

bool isF16Nan(std::uint16_t half) {
    return (half & 0x7c00u) == 0x7c00u && (half & 0x03ffu) != 0;
}

// floatToF16(value) against the compiler, bit for bit; NaNs only need to stay NaNs of their sign
// (the payload the compiler keeps is not specified).
bool matchesCompiler(float value) {
    const std::uint16_t ours = floatToF16(value), reference = compilerF16(value);
    if (std::isnan(value))
        return isF16Nan(ours) && isF16Nan(reference) && (ours & 0x8000u) == (reference & 0x8000u);
    if (ours == reference) return true;
    qWarning("floatToF16(%a = 0x%08x) = 0x%04x, compiler 0x%04x", double(value), bits(value), ours,
             reference);
    return false;
}

} // namespace

class TestSafetensors : public QObject {
    Q_OBJECT
private slots:
    void halfPrecisionDecoding() {
        QCOMPARE(bits(f16ToFloat(0x3c00)), bits(1.0f));
        QCOMPARE(bits(f16ToFloat(0xc000)), bits(-2.0f));
        QCOMPARE(bits(f16ToFloat(0x7bff)), bits(65504.0f));
        QCOMPARE(bits(f16ToFloat(0x0001)), bits(0x1p-24f)); // smallest subnormal
        QCOMPARE(bits(f16ToFloat(0x8001)), bits(-0x1p-24f));
        QCOMPARE(bits(f16ToFloat(0x03ff)), bits(1023.0f * 0x1p-24f)); // largest subnormal
        QCOMPARE(bits(f16ToFloat(0x0400)), bits(0x1p-14f));           // smallest normal
        QCOMPARE(bits(f16ToFloat(0x3555)), bits(0.333251953125f));
        QCOMPARE(bits(f16ToFloat(0x0000)), bits(0.0f));
        QCOMPARE(bits(f16ToFloat(0x8000)), bits(-0.0f));
        QCOMPARE(bits(f16ToFloat(0xfc00)), bits(-std::numeric_limits<float>::infinity()));
        QVERIFY(std::isnan(f16ToFloat(0x7e00)));
        QCOMPARE(bits(bf16ToFloat(0x3f80)), bits(1.0f));
        QCOMPARE(bits(bf16ToFloat(0xc0a0)), bits(-5.0f));
        QCOMPARE(bits(bf16ToFloat(0x3eab)), bits(0.333984375f));
        QCOMPARE(bits(bf16ToFloat(0x0001)), bits(0x1p-133f)); // smallest bf16 subnormal
    }

    // Every half decodes to the value the compiler's _Float16 widens to.
    void f16DecodingMatchesCompilerForEveryHalf() {
        for (std::uint32_t half = 0; half <= 0xffff; ++half) {
            const float reference =
                static_cast<float>(std::bit_cast<_Float16>(static_cast<std::uint16_t>(half)));
            const float decoded = f16ToFloat(static_cast<std::uint16_t>(half));
            if (std::isnan(reference))
                QVERIFY(std::isnan(decoded));
            else
                QCOMPARE(bits(decoded), bits(reference));
        }
    }

    void floatToF16MatchesCompiler() {
        // A spread over all of fp32: every exponent, both signs, NaNs and infinities.
        for (std::uint64_t pattern = 0; pattern <= 0xffffffffu; pattern += 4097)
            QVERIFY(matchesCompiler(std::bit_cast<float>(static_cast<std::uint32_t>(pattern))));

        // Every rounding decision: each midpoint between neighbouring halves (ties go to the even
        // one) and the floats just either side of it.
        for (std::uint16_t half = 0; half < 0x7bff; ++half) {
            const float mid =
                (f16ToFloat(half) + f16ToFloat(std::uint16_t(half + 1))) / 2; // exact in fp32
            for (const float sign : {1.0f, -1.0f}) {
                QVERIFY(matchesCompiler(sign * mid));
                QVERIFY(matchesCompiler(sign * std::nextafter(mid, 0.0f)));
                QVERIFY(matchesCompiler(sign * std::nextafter(mid, 1e9f)));
            }
        }

        // The edges, spelled out.
        const float inf = std::numeric_limits<float>::infinity();
        QCOMPARE(floatToF16(65504.0f), std::uint16_t(0x7bff));
        QCOMPARE(floatToF16(std::nextafter(65520.0f, 0.0f)), std::uint16_t(0x7bff));
        QCOMPARE(floatToF16(65520.0f), std::uint16_t(0x7c00)); // tie past the largest: Inf
        QCOMPARE(floatToF16(-1e10f), std::uint16_t(0xfc00));
        QCOMPARE(floatToF16(inf), std::uint16_t(0x7c00));
        QCOMPARE(floatToF16(-inf), std::uint16_t(0xfc00));
        QCOMPARE(floatToF16(0x1p-25f), std::uint16_t(0x0000)); // tie with 0: even
        QCOMPARE(floatToF16(std::nextafter(0x1p-25f, 1.0f)), std::uint16_t(0x0001));
        QCOMPARE(floatToF16(3 * 0x1p-25f), std::uint16_t(0x0002)); // tie between 1 and 2
        QCOMPARE(floatToF16(-0.0f), std::uint16_t(0x8000));
        QCOMPARE(floatToF16(0x1p-14f - 0x1p-26f), std::uint16_t(0x0400)); // up to the normals
        QCOMPARE(floatToF16(1.0f + 0x1p-11f), std::uint16_t(0x3c00));     // tie: even
        QCOMPARE(floatToF16(1.0f + 3 * 0x1p-11f), std::uint16_t(0x3c02)); // tie: even
        QVERIFY(isF16Nan(floatToF16(std::numeric_limits<float>::quiet_NaN())));
        QVERIFY(isF16Nan(floatToF16(std::bit_cast<float>(0x7f800001u)))); // payload below fp16's
        QCOMPARE(floatToF16(-std::numeric_limits<float>::quiet_NaN()) & 0x8000u, 0x8000u);
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
                QCOMPARE(bits(narrow.data()[i]),
                         bits(static_cast<float>(static_cast<_Float16>(wide.data()[i]))));
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
                QCOMPARE(bits(narrow.data()[i]),
                         std::uint32_t(toBf16RoundNearestEven(wide.data()[i])) << 16);
        }
    }
};

QTEST_APPLESS_MAIN(TestSafetensors)
#include "test_safetensors.moc"
