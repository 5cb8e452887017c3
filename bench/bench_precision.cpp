// Mixed precision against float32, side by side in one process: the training step of one
// model (forward, backward, clipping, AdamW) in --train.precision fp32 and bf16, the two
// timed in alternation so the machine's drift hits both alike, and the matrix products at
// the model's shapes as an op (the mixed product includes its bfloat16 casts).
//
//   bench_precision [--device cpu|cuda] [--d 768 --layers 12 --heads 12 --seq 1024 --batch 8]
//                   [--attention softmax|mta] [--steps 5] [--peak-tflops X]
// prints, per precision, ms per step, tokens/s and (with a peak: --peak-tflops, or a GPU
// the table below knows) the model-FLOPs utilisation MFU = 6 N + 12 L d T FLOPs per token
// (PaLM's count: parameters, plus attention's scores and values) over the dense bf16 peak;
// then the bf16/fp32 speed ratio, and one line per GEMM shape.
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <functional>
#include <string>
#include <vector>

#include "autograd/attention_cost.h"
#include "autograd/autocast.h"
#include "autograd/kernels.h"
#include "autograd/ops.h"
#include "experiments/train/optimizer.h"
#include "layers/attention.h"
#include "layers/transformer.h"

using namespace mtalab;

namespace {

double ms_since(std::chrono::steady_clock::time_point t0) {
  return std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count();
}
double median(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  return v[v.size() / 2];
}

}  // namespace

int main(int argc, char** argv) {
  std::string device = "cpu", attention = "softmax";
  int64_t d = 768, layers = 12, heads = 12, T = 1024, B = 8, steps = 5;
  double peak = 0;
  for (int i = 1; i + 1 < argc; i += 2) {
    const std::string a = argv[i], v = argv[i + 1];
    if (a == "--device") device = v;
    else if (a == "--attention") attention = v;
    else if (a == "--d") d = std::atoll(v.c_str());
    else if (a == "--layers") layers = std::atoll(v.c_str());
    else if (a == "--heads") heads = std::atoll(v.c_str());
    else if (a == "--seq") T = std::atoll(v.c_str());
    else if (a == "--batch") B = std::atoll(v.c_str());
    else if (a == "--steps") steps = std::atoll(v.c_str());
    else if (a == "--peak-tflops") peak = std::atof(v.c_str());
    else {
      std::fprintf(stderr, "bench_precision: unknown option %s\n", a.c_str());
      return 2;
    }
  }
  const Device dev = Device::parse(device);
  const std::string dev_name = dev.is_cpu() ? "cpu" : cuda_device_name(dev.index);
  if (peak == 0 && !dev.is_cpu()) peak = bf16_peak_tflops(dev_name);

  // One model per precision, from the same seed: the same parameters.
  ModelConfig mc;
  mc.d_model = d, mc.n_layers = layers, mc.n_heads = heads, mc.max_seq_len = T;
  mc.attention = attention;
  mc.attention_options = AttentionRegistry::options_for(attention);
  struct Run {
    DType precision;
    std::unique_ptr<Transformer> model;
    std::unique_ptr<Optimizer> opt;
    std::vector<double> ms;
    double loss = 0;
  };
  std::vector<Run> runs;
  for (DType p : {DType::f32, DType::bf16}) {
    mc.precision = p;
    Run r{p, std::make_unique<Transformer>(mc), nullptr, {}, 0};
    r.model->to(dev);
    r.opt = std::make_unique<Optimizer>(r.model->named_parameters(), OptimizerConfig{});
    runs.push_back(std::move(r));
  }
  int64_t n_params = 0;
  for (auto& [n, p] : runs[0].model->named_parameters()) n_params += p.numel();
  std::vector<int32_t> toks(B * T), next(B * T);
  for (size_t i = 0; i < toks.size(); ++i) toks[i] = (int32_t)((i * 7919 + i / 13) % 256);
  for (size_t i = 0; i < toks.size(); ++i) next[i] = toks[i / T * T + (i % T + 1) % T];
  const Tensor input = from_vector<int32_t>(toks, {B, T}, {DType::i32, dev});
  const Tensor target = from_vector<int32_t>(next, {B, T}, {DType::i32, dev});
  auto step = [&](Run& r) {
    Generator g(0);
    r.model->zero_grad();
    Tensor loss = cross_entropy(r.model->forward(input, g), target);
    loss.backward();
    clip_grad_norm(r.model->named_parameters(), 1.0);
    r.opt->step(1e-4);
    r.loss = loss.item();  // reads back: the step has finished on the device
  };
  for (Run& r : runs) step(r);  // warm-up
  for (int64_t s = 0; s < steps; ++s)
    for (Run& r : runs) {
      const auto t0 = std::chrono::steady_clock::now();
      step(r);
      r.ms.push_back(ms_since(t0));
    }
  const double flops_per_token = 6.0 * n_params + 12.0 * layers * d * T;
  std::printf("# bench_precision on %s: d=%lld layers=%lld heads=%lld T=%lld B=%lld %s, %.1fM parameters, %lld steps\n",
              dev_name.c_str(), (long long)d, (long long)layers, (long long)heads, (long long)T, (long long)B,
              attention.c_str(), n_params / 1e6, (long long)steps);
  std::vector<double> tok_s;
  for (Run& r : runs) {
    const double med = median(r.ms), tps = B * T / (med / 1e3);
    tok_s.push_back(tps);
    std::printf("RESULT step precision=%s ms=%.1f tok_s=%.0f model_tflops=%.2f mfu=%s loss=%.5f\n",
                precision_name(r.precision), med, tps, tps * flops_per_token / 1e12,
                peak > 0 ? (std::to_string(100 * tps * flops_per_token / (peak * 1e12)).substr(0, 5) + "%").c_str() : "-",
                r.loss);
  }
  std::printf("RESULT step bf16/fp32 speed = %.2fx%s\n", tok_s[1] / tok_s[0],
              peak > 0 ? (" (peak " + std::to_string(peak).substr(0, 6) + " TFLOP/s dense bf16, " + dev_name + ")").c_str() : "");

  // The products of one block at these shapes: x [B T, d] times each weight, as the op.
  const int64_t N = B * T, hidden = mc.ffn_hidden_size();
  struct Shape3 {
    const char* what;
    int64_t m, k, n;
  };
  for (const Shape3& s : {Shape3{"qkv/out projection", N, d, d}, Shape3{"ffn in (w1, w3)", N, d, hidden},
                          Shape3{"ffn out (w2)", N, hidden, d}, Shape3{"lm head", N, d, 256}}) {
    Generator g(1);
    const Tensor a = uniform({s.m, s.k}, -1, 1, g, {DType::f32, dev}), b = uniform({s.k, s.n}, -1, 1, g, {DType::f32, dev});
    std::vector<double> t32, t16;
    for (int64_t r = 0; r < steps + 1; ++r)
      for (DType p : {DType::f32, DType::bf16}) {
        AutocastGuard guard(p);
        const auto t0 = std::chrono::steady_clock::now();
        Tensor c = matmul(a, b);
        if (!dev.is_cpu()) cuda_synchronize();
        if (r > 0) (p == DType::f32 ? t32 : t16).push_back(ms_since(t0));
      }
    const double f = 2.0 * s.m * s.k * s.n;
    std::printf("RESULT gemm %-20s %6lld x %5lld x %5lld  fp32 %8.3f ms %7.2f TFLOP/s | bf16 (casts included) %8.3f ms %7.2f TFLOP/s\n",
                s.what, (long long)s.m, (long long)s.k, (long long)s.n, median(t32), f / median(t32) / 1e9, median(t16),
                f / median(t16) / 1e9);
  }
  return 0;
}
