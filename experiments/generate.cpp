#include "experiments/generate.h"

#include <algorithm>
#include <cmath>
#include <numeric>

#include "autograd/errors.h"
#include "autograd/ops.h"

namespace mtalab {

int64_t choose_token(const std::vector<double>& logits, const GenerateOptions& o, Generator& g) {
  if (o.temperature < 0 || !std::isfinite(o.temperature))
    throw InputError("temperature " + std::to_string(o.temperature) + "; expected 0 (greedy) or a positive number");
  if (o.top_k < 0) throw InputError("top_k " + std::to_string(o.top_k) + "; expected 0 (all) or a positive number");
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

std::vector<int64_t> generate(Transformer& model, const std::vector<int64_t>& prompt, const GenerateOptions& o,
                              const std::function<void(int64_t)>& on_token) {
  if (prompt.empty()) throw InputError("the prompt is empty; expected at least one token");
  NoGradGuard ng;
  model.train(false);
  Generator sampling(o.seed), unused(0);
  const int64_t context = model.config().max_seq_len;
  const Device dev = model.named_parameters().front().second.device();
  std::vector<int64_t> tokens = prompt, out;
  for (int64_t n = 0; n < o.new_tokens; ++n) {
    const int64_t start = std::max<int64_t>(0, (int64_t)tokens.size() - context);
    std::vector<int32_t> window(tokens.begin() + start, tokens.end());
    const int64_t T = (int64_t)window.size();
    Tensor logits = model.forward(from_vector<int32_t>(window, {1, T}, {DType::i32, dev}), unused);
    Tensor last = to_dtype(slice(logits, 1, T - 1, T), DType::f64).to(kCPU).contiguous();
    const int64_t next = choose_token(last.to_vector<double>(), o, sampling);
    tokens.push_back(next);
    out.push_back(next);
    if (on_token) on_token(next);
  }
  return out;
}

}  // namespace mtalab
