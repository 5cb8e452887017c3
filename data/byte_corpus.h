// Byte-level text corpus: any file read as raw bytes, so the vocabulary is the 256 byte
// values and no tokenizer choice can bias the comparison between attention variants.
// The validation split is either a second file or the last `val_fraction` of the first.
#pragma once
#include <cstdint>
#include <string>
#include <vector>

namespace mtalab {

struct ByteCorpusConfig {
  std::string path;           // the training text (the whole text when val_path is empty)
  std::string val_path;       // optional validation file; empty: split `path` instead
  double val_fraction = 0.1;  // share at the end of `path` held out when val_path is empty
  int64_t seq_len = 256;      // model context; each split must hold one window of seq_len+1
};

struct ByteCorpus {
  static constexpr int vocab_size = 256;
  std::vector<uint8_t> train;
  std::vector<uint8_t> val;
};

// The file's bytes. Throws InputError if it is missing, not a regular file, unreadable or empty.
std::vector<uint8_t> read_bytes(const std::string& path);

// Loads and splits per cfg. The held-out part of a single file is its last
// round(size * val_fraction) bytes. Throws InputError for bad options or a file too short
// for one training and one validation window of seq_len+1 bytes.
ByteCorpus load_byte_corpus(const ByteCorpusConfig& cfg);

}  // namespace mtalab
