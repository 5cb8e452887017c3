// Per-token cost of generation, incremental (key/value cache, and for MTA the cached score
// and probability rows) against full recomputation of the context (what the MTA reference
// code does at every step), side by side in one run, at growing context lengths.
//
//   bench_decode [--attention softmax,mta] [--contexts 512,1024,2048,4096] [--steps 16]
// prints a table: context, ms per token cached and its tokens/s, ms per token recomputed,
// their ratio, the cache's size; then the growth exponent k in time ∝ T^k between the
// shortest and longest context (cached ≈ 1: linear; recomputed → 2: quadratic once
// attention dominates); then, with several variants, each one's cached tokens/s over the
// first's. The variants run side by side (contexts outer, variants inner).
// Model: d = 128, 4 layers, 4 heads; MTA with the paper's LM defaults.
#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <memory>
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
  std::string attentions_arg = "mta", contexts_arg = "128,256,512,1024,2048";
  int64_t steps = 16;
  for (int i = 1; i + 1 < argc; i += 2) {
    const std::string a = argv[i], v = argv[i + 1];
    if (a == "--attention") attentions_arg = v;
    else if (a == "--contexts") contexts_arg = v;
    else if (a == "--steps") steps = std::atoll(v.c_str());
    else {
      std::fprintf(stderr, "bench_decode: unknown option %s (expected --attention, --contexts, --steps)\n", a.c_str());
      return 2;
    }
  }
  auto split = [](const std::string& s) {
    std::vector<std::string> r;
    std::stringstream ss(s);
    for (std::string item; std::getline(ss, item, ',');) r.push_back(item);
    return r;
  };
  std::vector<int64_t> contexts;
  for (auto& c : split(contexts_arg)) contexts.push_back(std::atoll(c.c_str()));
  const std::vector<std::string> attentions = split(attentions_arg);
  const int64_t longest = *std::max_element(contexts.begin(), contexts.end());
  std::vector<std::unique_ptr<Transformer>> models;
  for (auto& attention : attentions) {
    ModelConfig mc;
    mc.d_model = 128;
    mc.n_layers = 4;
    mc.n_heads = 4;
    mc.max_seq_len = longest + steps;
    mc.attention = attention;
    mc.attention_options = AttentionRegistry::options_for(attention);
    models.push_back(std::make_unique<Transformer>(mc));
    models.back()->train(false);
  }
  NoGradGuard ng;
  Generator unused(0), g(1);
  std::vector<int32_t> toks((size_t)(longest + steps));
  for (auto& t : toks) t = (int32_t)(g.next_u64() % 256);

  // Contexts outer, variants inner: the peers are measured side by side, under the same load.
  std::printf("%-8s %8s %12s %10s %12s %10s %10s\n", "variant", "context", "cached_ms", "tokens/s", "full_ms",
              "full/cached", "cache_MiB");
  std::vector<std::vector<double>> cached_ms(attentions.size()), full_ms(attentions.size());
  for (int64_t T : contexts)
    for (size_t v = 0; v < attentions.size(); ++v) {
      Transformer& model = *models[v];
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
      cached_ms[v].push_back(cached);
      full_ms[v].push_back(runs[1]);
      std::printf("%-8s %8lld %12.3f %10.0f %12.3f %10.1f %10.2f\n", attentions[v].c_str(), (long long)T, cached,
                  1000.0 / cached, runs[1], runs[1] / cached, (double)cache.bytes() / (1 << 20));
      std::fflush(stdout);
    }
  const double span = std::log((double)contexts.back() / (double)contexts.front());
  for (size_t v = 0; v < attentions.size(); ++v)
    std::printf("%s: growth exponent k (time ~ T^k) from T=%lld to %lld: cached %.2f, recomputed %.2f\n",
                attentions[v].c_str(), (long long)contexts.front(), (long long)contexts.back(),
                std::log(cached_ms[v].back() / cached_ms[v].front()) / span,
                std::log(full_ms[v].back() / full_ms[v].front()) / span);
  // Each variant's cached tokens/s against the first's (the baseline), per context.
  if (attentions.size() > 1) {
    std::printf("\n%8s", "context");
    for (size_t v = 1; v < attentions.size(); ++v)
      std::printf(" %14s", (attentions[v] + "/" + attentions[0]).c_str());
    std::printf("   (cached tokens/s ratio; < 1: slower than %s)\n", attentions[0].c_str());
    for (size_t c = 0; c < contexts.size(); ++c) {
      std::printf("%8lld", (long long)contexts[c]);
      for (size_t v = 1; v < attentions.size(); ++v) std::printf(" %14.2f", cached_ms[0][c] / cached_ms[v][c]);
      std::printf("\n");
    }
  }
  return 0;
}
