// One configuration of the fused-attention benchmark (scripts/bench_attention.sh runs
// every configuration in its own process, so each peak is its own): the training step of
// an n-layer (4), d (256), h-head (4) model at sequence length T with a fixed number of
// tokens per step, for one attention variant with its defaults (MTA: the paper's LM
// setting) and one implementation (--impl fused: no [T, T] maps; maps: the map ops, the
// reference).
//
//   bench_attention --attention mta --impl fused --seq 2048 [--tokens 8192] [--steps 3] [--device cuda]
//                   [--d-model 256] [--layers 4] [--heads 4]
// prints one line:
//   RESULT <attention> <impl> d=<d> L=<layers> H=<heads> T=<T> B=<B> ms=<median ms per step> tok_s=<tokens/s>
//          min_ms=<fastest step> min_cpu_ms=<least CPU time of a step, all threads> peak_tensor_mib=<allocator high-water mark on the device> max_rss_mib=<maximum resident set>
//          loss=<last loss>
#include <sys/resource.h>
#include <time.h>

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
  int64_t T = 1024, tokens = 8192, steps = 3, d_model = 256, layers = 4, heads = 4;
  for (int i = 1; i + 1 < argc; i += 2) {
    const std::string a = argv[i], v = argv[i + 1];
    if (a == "--attention") attention = v;
    else if (a == "--impl") impl = v;
    else if (a == "--seq") T = std::atoll(v.c_str());
    else if (a == "--tokens") tokens = std::atoll(v.c_str());
    else if (a == "--steps") steps = std::atoll(v.c_str());
    else if (a == "--device") device = v;
    else if (a == "--d-model") d_model = std::atoll(v.c_str());
    else if (a == "--layers") layers = std::atoll(v.c_str());
    else if (a == "--heads") heads = std::atoll(v.c_str());
    else {
      std::fprintf(stderr, "bench_attention: unknown option %s\n", a.c_str());
      return 2;
    }
  }
  const int64_t B = std::max<int64_t>(1, tokens / T);
  ModelConfig mc;
  mc.d_model = d_model;
  mc.n_layers = layers;
  mc.n_heads = heads;
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
  // CPU time of the whole process (all threads) per step beside the wall time: on a
  // shared machine the wall time of a step includes the time other processes held the cores.
  auto cpu_now = [] {
    timespec ts{};
    clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts);
    return ts.tv_sec * 1e3 + ts.tv_nsec / 1e6;
  };
  std::vector<double> ms, cpu;
  for (int64_t s = 0; s < steps; ++s) {
    const auto t0 = std::chrono::steady_clock::now();
    const double c0 = cpu_now();
    step();
    ms.push_back(std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count());
    cpu.push_back(cpu_now() - c0);
  }
  std::sort(ms.begin(), ms.end());
  std::sort(cpu.begin(), cpu.end());
  const double med = ms[ms.size() / 2], best = ms.front();
  rusage ru{};
  getrusage(RUSAGE_SELF, &ru);
  std::printf("RESULT %s %s d=%lld L=%lld H=%lld T=%lld B=%lld ms=%.2f min_ms=%.2f min_cpu_ms=%.2f tok_s=%.0f peak_tensor_mib=%.1f max_rss_mib=%.1f loss=%.6f\n",
              attention.c_str(), impl.c_str(), (long long)d_model,
              (long long)layers, (long long)heads, (long long)T, (long long)B, med, best, cpu.front(), (double)(B * T) / (med / 1e3),
              (double)memory_stats(dev.kind).peak_bytes / (1 << 20), (double)ru.ru_maxrss / 1024.0, loss_v);
  return 0;
}
