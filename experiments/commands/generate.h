// Continuing a prompt with a trained model: greedy, or sampled with a temperature and top-k
// from a seeded generator (the same seed gives the same text).
//
// Incremental by default: the prompt fills a key/value cache (for MTA also the score and
// probability rows its convolutions read, layers/decode_cache.h) and each new token costs
// O(T) per head and layer. With cache = false every token reruns the model over the whole
// context — O(T²), the reference the cached path is tested against. Past max_seq_len the
// context slides (the last max_seq_len tokens, positions from 0 again), which shifts every
// position, so from there on each token refills the cache from the window.
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
  bool cache = true;       // incremental decoding (false: recompute the context per token)
};

// The smallest positive temperature: logits / temperature must stay finite for every logit
// a float32 model gives (below it every probability is NaN; it is greedy in all but name).
constexpr double kMinTemperature = 1e-3;
// InputError for a negative, non-finite or too small temperature, or a negative top_k.
void check_sampling(const GenerateOptions& o);

// The next-token distribution's choice from one row of logits (check_sampling first).
int64_t choose_token(const std::vector<double>& logits, const GenerateOptions& o, Generator& g);

// Appends up to o.new_tokens tokens to `prompt` (non-empty) and returns them; `on_token`
// sees each as it is chosen and returns false to stop there (its reader is gone). The
// model is put in evaluation mode.
std::vector<int64_t> generate(Transformer& model, const std::vector<int64_t>& prompt, const GenerateOptions& o,
                              const std::function<bool(int64_t)>& on_token = {});

}  // namespace mtalab
