// Per-token cost of generation, incremental (key/value cache, and for MTA the cached score
// and probability rows) against full recomputation of the context (what the MTA reference
// code does at every step), side by side in one run, at growing context lengths.
//
//   bench_decode [--attention mta] [--contexts 128,256,512,1024,2048] [--steps 16]
// prints a table: context, ms per token cached, ms per token recomputed, their ratio, the
// cache's size; then the growth exponent k in time ∝ T^k between the shortest and longest
// context (cached ≈ 1: linear; recomputed → 2: quadratic once attention dominates).
// Model: d = 128, 4 layers, 4 heads; MTA with the paper's LM defaults.
#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <sstream>
#include <string>
#include <vector>

#include "autograd/ops.h"
#include "layers/attention.h"
#include "layers/transformer.h"

using namespace mtalab;
using Clock = std::chrono::steady_clock;

namespace {

double ms_since(Clock::time_point t0) {
  return std::chrono::duration<double, std::milli>(Clock::now() - t0).count();
}

Tensor token_range(const std::vector<int32_t>& t, int64_t begin, int64_t end) {
  std::vector<int32_t> w(t.begin() + begin, t.begin() + end);
  return from_vector<int32_t>(w, {1, end - begin}, {DType::i32});
}

}  // namespace

int main(int argc, char** argv) {
  std::string attention = "mta", contexts_arg = "128,256,512,1024,2048";
  int64_t steps = 16;
  for (int i = 1; i + 1 < argc; i += 2) {
    const std::string a = argv[i], v = argv[i + 1];
    if (a == "--attention") attention = v;
    else if (a == "--contexts") contexts_arg = v;
    else if (a == "--steps") steps = std::atoll(v.c_str());
    else {
      std::fprintf(stderr, "bench_decode: unknown option %s (expected --attention, --contexts, --steps)\n", a.c_str());
      return 2;
    }
  }
  std::vector<int64_t> contexts;
  std::stringstream ss(contexts_arg);
  for (std::string item; std::getline(ss, item, ',');) contexts.push_back(std::atoll(item.c_str()));
  const int64_t longest = *std::max_element(contexts.begin(), contexts.end());
  ModelConfig mc;
  mc.d_model = 128;
  mc.n_layers = 4;
  mc.n_heads = 4;
  mc.max_seq_len = longest + steps;
  mc.attention = attention;
  mc.attention_options = AttentionRegistry::options_for(attention);
  Transformer model(mc);
  model.train(false);
  NoGradGuard ng;
  Generator unused(0), g(1);
  std::vector<int32_t> toks((size_t)mc.max_seq_len);
  for (auto& t : toks) t = (int32_t)(g.next_u64() % 256);

  std::printf("%-8s %8s %12s %12s %10s %10s\n", "variant", "context", "cached_ms", "full_ms", "full/cached", "cache_MiB");
  std::vector<double> cached_ms, full_ms;
  for (int64_t T : contexts) {
    DecodeCache cache;
    model.decode(token_range(toks, 0, T), cache);
    const auto t0 = Clock::now();
    for (int64_t s = 0; s < steps; ++s) model.decode(token_range(toks, T + s, T + s + 1), cache);
    const double cached = ms_since(t0) / (double)steps;
    // Recomputation: one forward over the context per new token; the median of 3.
    std::vector<double> runs;
    for (int r = 0; r < 3; ++r) {
      const auto t1 = Clock::now();
      model.forward(token_range(toks, 0, T + 1), unused);
      runs.push_back(ms_since(t1));
    }
    std::sort(runs.begin(), runs.end());
    cached_ms.push_back(cached);
    full_ms.push_back(runs[1]);
    std::printf("%-8s %8lld %12.3f %12.3f %10.1f %10.2f\n", attention.c_str(), (long long)T, cached, runs[1],
                runs[1] / cached, (double)cache.bytes() / (1 << 20));
    std::fflush(stdout);
  }
  const double span = std::log((double)contexts.back() / (double)contexts.front());
  std::printf("%s: growth exponent k (time ~ T^k) from T=%lld to %lld: cached %.2f, recomputed %.2f\n", attention.c_str(),
              (long long)contexts.front(), (long long)contexts.back(), std::log(cached_ms.back() / cached_ms.front()) / span,
              std::log(full_ms.back() / full_ms.front()) / span);
  return 0;
}
