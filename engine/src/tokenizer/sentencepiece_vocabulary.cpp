#include "quantlens/tokenizer/sentencepiece_vocabulary.h"

#include "quantlens/core/error.h"
#include "quantlens/io/mapped_file.h"
#include "quantlens/tokenizer/tokenizer.h"

#include <sentencepiece_processor.h>

#include <string_view>

namespace quantlens {

SentencePieceVocabulary readSentencePieceVocabulary(const std::filesystem::path& model) {
    // The tokenizer loader's checks first: SentencePiece aborts the process on some malformed
    // models (a NUL inside a piece) instead of reporting them.
    loadSentencePieceTokenizer(model);
    const std::string source = model.string();
    const MappedFile file(model);
    sentencepiece::SentencePieceProcessor processor;
    const std::string_view bytes(reinterpret_cast<const char*>(file.bytes().data()),
                                 file.bytes().size());
    if (const auto status = processor.LoadFromSerializedProto(bytes); !status.ok())
        throw Error(source, "not a valid SentencePiece model: " + status.ToString());

    SentencePieceVocabulary vocabulary;
    const int size = processor.GetPieceSize();
    vocabulary.pieces.reserve(static_cast<std::size_t>(size));
    vocabulary.scores.reserve(static_cast<std::size_t>(size));
    vocabulary.kinds.reserve(static_cast<std::size_t>(size));
    for (int id = 0; id < size; ++id) {
        vocabulary.pieces.push_back(processor.IdToPiece(id));
        vocabulary.scores.push_back(processor.GetScore(id));
        // The order of llama.cpp's converter (_create_vocab_sentencepiece): a piece that is
        // several kinds at once takes the first.
        vocabulary.kinds.push_back(processor.IsUnknown(id)   ? TokenKind::Unknown
                                   : processor.IsControl(id) ? TokenKind::Control
                                   : processor.IsUnused(id)  ? TokenKind::Unused
                                   : processor.IsByte(id)    ? TokenKind::Byte
                                                             : TokenKind::Normal);
    }
    vocabulary.unknownId = processor.unk_id();
    vocabulary.bosId = processor.bos_id();
    vocabulary.eosId = processor.eos_id();
    vocabulary.padId = processor.pad_id();
    return vocabulary;
}

} // namespace quantlens
