// One configuration of the fused-attention benchmark (scripts/bench_attention.sh runs
// every configuration in its own process, so each peak is its own): the training step of
// a 4-layer, d = 256, 4-head model at sequence length T with a fixed number of tokens per
// step, for one attention variant with its defaults (MTA: the paper's LM setting) and one
// implementation (--impl fused: no [T, T] maps; maps: the map ops, the reference).
//
//   bench_attention --attention mta --impl fused --seq 2048 [--tokens 8192] [--steps 3] [--device cuda]
// prints one line:
//   RESULT <attention> <impl> T=<T> B=<B> ms=<median ms per step> tok_s=<tokens/s>
//          peak_tensor_mib=<allocator high-water mark on the device> max_rss_mib=<maximum resident set>
//          loss=<last loss>
#include <sys/resource.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <vector>

#include "autograd/kernels.h"
#include "autograd/ops.h"
#include "experiments/train/optimizer.h"
#include "layers/attention.h"
#include "layers/transformer.h"

using namespace mtalab;

int main(int argc, char** argv) {
  std::string attention = "softmax", impl = "fused", device = "cpu";
  int64_t T = 1024, tokens = 8192, steps = 3;
  for (int i = 1; i + 1 < argc; i += 2) {
    const std::string a = argv[i], v = argv[i + 1];
    if (a == "--attention") attention = v;
    else if (a == "--impl") impl = v;
    else if (a == "--seq") T = std::atoll(v.c_str());
    else if (a == "--tokens") tokens = std::atoll(v.c_str());
    else if (a == "--steps") steps = std::atoll(v.c_str());
    else if (a == "--device") device = v;
    else {
      std::fprintf(stderr, "bench_attention: unknown option %s\n", a.c_str());
      return 2;
    }
  }
  const int64_t B = std::max<int64_t>(1, tokens / T);
  ModelConfig mc;
  mc.d_model = 256;
  mc.n_layers = 4;
  mc.n_heads = 4;
  mc.max_seq_len = T;
  mc.attention = attention;
  mc.attention_options = AttentionRegistry::options_for(attention);
  mc.attn_impl = parse_attn_impl(impl);
  const Device dev = Device::parse(device);
  Transformer model(mc);
  model.to(dev);
  NamedParams params = model.named_parameters();
  Optimizer opt(params, OptimizerConfig{});
  // A fixed pseudo-random byte sequence; each position predicts the next one (wrapping).
  std::vector<int32_t> toks(B * T), next(B * T);
  for (size_t i = 0; i < toks.size(); ++i) toks[i] = (int32_t)((i * 7919 + i / 13) % 256);
  for (size_t i = 0; i < toks.size(); ++i) next[i] = toks[i / T * T + (i % T + 1) % T];
  const Tensor input = from_vector<int32_t>(toks, {B, T}, {DType::i32, dev});
  const Tensor target = from_vector<int32_t>(next, {B, T}, {DType::i32, dev});
  Generator g(0);
  double loss_v = 0;
  auto step = [&] {
    model.zero_grad();
    Tensor loss = cross_entropy(model.forward(input, g), target);
    loss.backward();
    clip_grad_norm(params, 1.0);
    opt.step(1e-3);
    loss_v = loss.item();
  };
  step();  // warm-up: allocator growth and first-touch page faults are not timed
  std::vector<double> ms;
  for (int64_t s = 0; s < steps; ++s) {
    const auto t0 = std::chrono::steady_clock::now();
    step();
    ms.push_back(std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count());
  }
  std::sort(ms.begin(), ms.end());
  const double med = ms[ms.size() / 2];
  rusage ru{};
  getrusage(RUSAGE_SELF, &ru);
  std::printf("RESULT %s %s T=%lld B=%lld ms=%.1f tok_s=%.0f peak_tensor_mib=%.1f max_rss_mib=%.1f loss=%.6f\n",
              attention.c_str(), impl.c_str(), (long long)T, (long long)B, med, (double)(B * T) / (med / 1e3),
              (double)memory_stats(dev.kind).peak_bytes / (1 << 20), (double)ru.ru_maxrss / 1024.0, loss_v);
  return 0;
}
