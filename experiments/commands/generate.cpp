#include "experiments/commands/generate.h"

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <numeric>

#include "autograd/errors.h"
#include "autograd/ops.h"

namespace mtalab {

void check_sampling(const GenerateOptions& o) {
  if (!(o.temperature == 0 || (std::isfinite(o.temperature) && o.temperature >= kMinTemperature))) {
    char buf[64];
    std::snprintf(buf, sizeof buf, "%g", o.temperature);
    throw InputError(std::string("--temperature ") + buf + "; expected 0 (greedy) or at least " +
                     std::to_string(kMinTemperature).substr(0, 5) + " (below that every probability overflows)");
  }
  if (o.top_k < 0) throw InputError("--top-k " + std::to_string(o.top_k) + "; expected 0 (all) or a positive number");
}

int64_t choose_token(const std::vector<double>& logits, const GenerateOptions& o, Generator& g) {
  check_sampling(o);
  const int64_t V = (int64_t)logits.size();
  if (o.temperature == 0 || o.top_k == 1)  // ties go to the smallest id, as argmax does
    return (int64_t)(std::max_element(logits.begin(), logits.end()) - logits.begin());
  std::vector<int64_t> ids(V);
  std::iota(ids.begin(), ids.end(), 0);
  const int64_t k = o.top_k > 0 ? std::min(o.top_k, V) : V;
  std::stable_sort(ids.begin(), ids.end(), [&](int64_t a, int64_t b) { return logits[a] > logits[b]; });
  ids.resize(k);
  std::vector<double> p(k);
  const double top = logits[ids[0]] / o.temperature;
  double sum = 0;
  for (int64_t i = 0; i < k; ++i) sum += p[i] = std::exp(logits[ids[i]] / o.temperature - top);
  const double u = uniform({1}, 0.0, 1.0, g, {DType::f64}).item() * sum;
  double acc = 0;
  for (int64_t i = 0; i < k; ++i)
    if ((acc += p[i]) > u) return ids[i];
  return ids[k - 1];
}

namespace {

Tensor window_tensor(const std::vector<int64_t>& t, size_t begin, Device dev) {
  std::vector<int32_t> w(t.begin() + (std::ptrdiff_t)begin, t.end());
  return from_vector<int32_t>(w, {1, (int64_t)w.size()}, {DType::i32, dev});
}

// The logits [1, 1, V] after `tokens`, from the cache when it can be extended, else by
// (re)filling it — or without one — from the last `context` tokens.
Tensor next_logits(Transformer& model, const std::vector<int64_t>& tokens, bool use_cache, DecodeCache& cache) {
  const int64_t context = model.config().max_seq_len, n = (int64_t)tokens.size();
  const Device dev = model.named_parameters().front().second.device();
  const size_t start = (size_t)std::max<int64_t>(0, n - context);
  Tensor logits;
  if (!use_cache) {
    Generator unused(0);
    logits = model.forward(window_tensor(tokens, start, dev), unused);
  } else if (cache.pos > 0 && cache.pos + 1 == n && n <= context) {
    logits = model.decode(window_tensor(tokens, (size_t)(n - 1), dev), cache);
  } else {
    cache = DecodeCache{};
    logits = model.decode(window_tensor(tokens, start, dev), cache);
  }
  const int64_t T = logits.size(1);
  return slice(logits, 1, T - 1, T);
}

}  // namespace

std::vector<int64_t> generate(Transformer& model, const std::vector<int64_t>& prompt, const GenerateOptions& o,
                              const std::function<bool(int64_t)>& on_token) {
  if (prompt.empty()) throw InputError("the prompt is empty; expected at least one token");
  NoGradGuard ng;
  model.train(false);
  Generator sampling(o.seed);
  DecodeCache cache;
  std::vector<int64_t> tokens = prompt, out;
  for (int64_t n = 0; n < o.new_tokens; ++n) {
    Tensor last = to_dtype(next_logits(model, tokens, o.cache, cache), DType::f64).to(kCPU).contiguous();
    const int64_t next = choose_token(last.to_vector<double>(), o, sampling);
    tokens.push_back(next);
    out.push_back(next);
    if (on_token && !on_token(next)) break;
  }
  return out;
}

}  // namespace mtalab
