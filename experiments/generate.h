// Continuing a prompt with a trained model: greedy, or sampled with a temperature and top-k
// from a seeded generator (the same seed gives the same text).
//
// Each new token runs the model over the whole context (the last max_seq_len tokens): the
// cost of a token grows with the context. Incremental decoding with a key/value cache (and
// for MTA, a cache of the score rows its convolutions read) is not built yet.
#pragma once
#include <cstdint>
#include <functional>
#include <vector>

#include "layers/transformer.h"

namespace mtalab {

struct GenerateOptions {
  int64_t new_tokens = 100;
  double temperature = 0;  // 0: greedy (the most likely token)
  int64_t top_k = 0;       // sample from the k most likely only (0: all)
  uint64_t seed = 0;
};

// The next-token distribution's choice from one row of logits. InputError for a negative
// temperature or top_k.
int64_t choose_token(const std::vector<double>& logits, const GenerateOptions& o, Generator& g);

// Appends o.new_tokens tokens to `prompt` (non-empty) and returns them; `on_token` sees each
// as it is chosen. The model is put in evaluation mode.
std::vector<int64_t> generate(Transformer& model, const std::vector<int64_t>& prompt, const GenerateOptions& o,
                              const std::function<void(int64_t)>& on_token = {});

}  // namespace mtalab
