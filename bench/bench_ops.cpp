// Times the core ops of the engine on the CPU backend, float32, forward and
// forward+backward. bench/bench_ops_torch.py does the same work in PyTorch, case for
// case (same names, same shapes, same repeat rule); scripts/bench_ops.sh runs both and
// prints the comparison.
//
//   bench_ops [--threads N] [--min-time S] [--filter SUBSTR] [--list]
//
// Output: one line per case, whitespace separated, greppable by the leading tag:
//   BENCH <case> <median_ms> <min_ms> <reps>
// Each case: 2 untimed warmup calls, then reps = clamp(min_time / first estimate, 5, 200)
// timed calls; the median is the figure to compare (min is printed for reference).
// A "_fb" case is forward + backward from a fixed upstream gradient (or a scalar loss),
// with leaf gradients cleared before each call so nothing accumulates.
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <functional>
#include <string>
#include <vector>

#include "autograd/kernels.h"
#include "autograd/ops.h"

using namespace mtalab;

namespace {

using Clock = std::chrono::steady_clock;

struct Options {
  int threads = 0;
  double min_time = 0.4;  // seconds of timed calls per case (at least 5 calls)
  std::string filter;
  bool list = false;
};

double now_ms() { return std::chrono::duration<double, std::milli>(Clock::now().time_since_epoch()).count(); }

// Keeps results observable so nothing is optimised away, and checks they are finite.
volatile double g_sink = 0;
void consume(const Tensor& t) {
  if (t.defined() && t.numel() > 0) g_sink = g_sink + (double)t.data<float>()[0];
}

struct Case {
  std::string name;
  std::function<void()> run;
};

void time_case(const Case& c, const Options& o) {
  // Warmup: first touches of fresh allocations, BLAS thread pool spin-up.
  c.run();
  double t0 = now_ms();
  c.run();
  const double est = std::max(now_ms() - t0, 1e-3);
  const int reps = (int)std::clamp(o.min_time * 1000.0 / est, 5.0, 200.0);
  std::vector<double> ts(reps);
  for (int i = 0; i < reps; ++i) {
    t0 = now_ms();
    c.run();
    ts[i] = now_ms() - t0;
  }
  std::sort(ts.begin(), ts.end());
  const double med = reps % 2 ? ts[reps / 2] : 0.5 * (ts[reps / 2 - 1] + ts[reps / 2]);
  std::printf("BENCH %s %.4f %.4f %d\n", c.name.c_str(), med, ts[0], reps);
  std::fflush(stdout);
}

Tensor randn_f(const Shape& s, Generator& g, double std = 1.0) { return normal(s, 0.0, std, g); }

// Clears every leaf's gradient so each timed call does the same work.
void zero(std::initializer_list<Tensor*> ts) {
  for (Tensor* t : ts) t->zero_grad();
}

std::vector<Case> make_cases() {
  std::vector<Case> cs;
  Generator g(1234);

  // --- matmul -----------------------------------------------------------------------
  {
    auto a = std::make_shared<Tensor>(randn_f({1024, 1024}, g));
    auto b = std::make_shared<Tensor>(randn_f({1024, 1024}, g));
    cs.push_back({"matmul_1024", [a, b] { consume(matmul(*a, *b)); }});
    auto ag = std::make_shared<Tensor>(randn_f({1024, 1024}, g).set_requires_grad(true));
    auto bg = std::make_shared<Tensor>(randn_f({1024, 1024}, g).set_requires_grad(true));
    auto gy = std::make_shared<Tensor>(randn_f({1024, 1024}, g));
    cs.push_back({"matmul_1024_fb", [ag, bg, gy] {
                    zero({ag.get(), bg.get()});
                    matmul(*ag, *bg).backward(*gy);
                    consume(ag->grad());
                  }});
  }
  {
    // linear as in a transformer block: [B*T, d] x W[out, d]ᵀ, W stored [out, in].
    auto x = std::make_shared<Tensor>(randn_f({2048, 256}, g));
    auto w = std::make_shared<Tensor>(randn_f({768, 256}, g, 0.05));
    auto bias = std::make_shared<Tensor>(randn_f({768}, g, 0.05));
    cs.push_back({"linear_2048x256x768", [x, w] { consume(linear(*x, *w)); }});
    cs.push_back({"linear_bias_2048x256x768", [x, w, bias] { consume(linear(*x, *w, *bias)); }});
    auto xg = std::make_shared<Tensor>(randn_f({2048, 256}, g).set_requires_grad(true));
    auto wg = std::make_shared<Tensor>(randn_f({768, 256}, g, 0.05).set_requires_grad(true));
    auto bg = std::make_shared<Tensor>(randn_f({768}, g, 0.05).set_requires_grad(true));
    auto gy = std::make_shared<Tensor>(randn_f({2048, 768}, g));
    cs.push_back({"linear_2048x256x768_fb", [xg, wg, gy] {
                    zero({xg.get(), wg.get()});
                    linear(*xg, *wg).backward(*gy);
                    consume(wg->grad());
                  }});
    cs.push_back({"linear_bias_2048x256x768_fb", [xg, wg, bg, gy] {
                    zero({xg.get(), wg.get(), bg.get()});
                    linear(*xg, *wg, *bg).backward(*gy);
                    consume(bg->grad());
                  }});
  }
  {
    // attention scores q kᵀ: [B=8, H=4, T=256, 64] x [8, 4, 64, 256] (k transposed view).
    auto q = std::make_shared<Tensor>(randn_f({8, 4, 256, 64}, g));
    auto k = std::make_shared<Tensor>(randn_f({8, 4, 256, 64}, g));
    cs.push_back({"attn_qkT_8x4x256x64", [q, k] { consume(matmul(*q, k->transpose(-1, -2))); }});
    auto qg = std::make_shared<Tensor>(randn_f({8, 4, 256, 64}, g).set_requires_grad(true));
    auto kg = std::make_shared<Tensor>(randn_f({8, 4, 256, 64}, g).set_requires_grad(true));
    auto gs = std::make_shared<Tensor>(randn_f({8, 4, 256, 256}, g));
    cs.push_back({"attn_qkT_8x4x256x64_fb", [qg, kg, gs] {
                    zero({qg.get(), kg.get()});
                    matmul(*qg, kg->transpose(-1, -2)).backward(*gs);
                    consume(kg->grad());
                  }});
    // probabilities x v: [8,4,256,256] x [8,4,256,64]
    auto p = std::make_shared<Tensor>(randn_f({8, 4, 256, 256}, g));
    auto v = std::make_shared<Tensor>(randn_f({8, 4, 256, 64}, g));
    cs.push_back({"attn_pv_8x4x256x64", [p, v] { consume(matmul(*p, *v)); }});
  }

  // --- softmax ----------------------------------------------------------------------
  {
    auto x = std::make_shared<Tensor>(randn_f({8 * 4 * 256, 256}, g));
    cs.push_back({"softmax_8192x256", [x] { consume(softmax(*x, -1)); }});
    auto xg = std::make_shared<Tensor>(randn_f({8 * 4 * 256, 256}, g).set_requires_grad(true));
    auto gy = std::make_shared<Tensor>(randn_f({8 * 4 * 256, 256}, g));
    cs.push_back({"softmax_8192x256_fb", [xg, gy] {
                    zero({xg.get()});
                    softmax(*xg, -1).backward(*gy);
                    consume(xg->grad());
                  }});
    cs.push_back({"log_softmax_8192x256_fb", [xg, gy] {
                    zero({xg.get()});
                    log_softmax(*xg, -1).backward(*gy);
                    consume(xg->grad());
                  }});
  }

  // --- norms ------------------------------------------------------------------------
  {
    auto x = std::make_shared<Tensor>(randn_f({4096, 512}, g));
    auto w = std::make_shared<Tensor>(uniform({512}, 0.5, 1.5, g));
    auto bn = std::make_shared<Tensor>(randn_f({512}, g, 0.1));
    cs.push_back({"rms_norm_4096x512", [x, w] { consume(rms_norm(*x, *w)); }});
    auto xg = std::make_shared<Tensor>(randn_f({4096, 512}, g).set_requires_grad(true));
    auto wg = std::make_shared<Tensor>(uniform({512}, 0.5, 1.5, g).set_requires_grad(true));
    auto bg = std::make_shared<Tensor>(randn_f({512}, g, 0.1).set_requires_grad(true));
    auto gy = std::make_shared<Tensor>(randn_f({4096, 512}, g));
    cs.push_back({"rms_norm_4096x512_fb", [xg, wg, gy] {
                    zero({xg.get(), wg.get()});
                    rms_norm(*xg, *wg).backward(*gy);
                    consume(wg->grad());
                  }});
    cs.push_back({"layer_norm_4096x512", [x, w, bn] { consume(layer_norm(*x, *w, *bn)); }});
    cs.push_back({"layer_norm_4096x512_fb", [xg, wg, bg, gy] {
                    zero({xg.get(), wg.get(), bg.get()});
                    layer_norm(*xg, *wg, *bg).backward(*gy);
                    consume(wg->grad());
                  }});
  }

  // --- cross-entropy ----------------------------------------------------------------
  {
    auto logits = std::make_shared<Tensor>(randn_f({4096, 256}, g));
    std::vector<int64_t> tv(4096);
    for (auto& t : tv) t = (int64_t)(g.next_u64() % 256);
    auto tgt = std::make_shared<Tensor>(from_vector(tv, {4096}, TensorOptions(DType::i64)));
    cs.push_back({"cross_entropy_4096x256", [logits, tgt] { consume(cross_entropy(*logits, *tgt)); }});
    auto lg = std::make_shared<Tensor>(randn_f({4096, 256}, g).set_requires_grad(true));
    cs.push_back({"cross_entropy_4096x256_fb", [lg, tgt] {
                    zero({lg.get()});
                    cross_entropy(*lg, *tgt).backward();
                    consume(lg->grad());
                  }});
  }

  // --- elementwise, 4M elements -----------------------------------------------------
  {
    const Shape s{2048, 2048};
    auto a = std::make_shared<Tensor>(randn_f(s, g));
    auto b = std::make_shared<Tensor>(randn_f(s, g));
    auto row = std::make_shared<Tensor>(randn_f({2048}, g));
    cs.push_back({"add_4M", [a, b] { consume(add(*a, *b)); }});
    cs.push_back({"mul_4M", [a, b] { consume(mul(*a, *b)); }});
    cs.push_back({"add_bcast_row_4M", [a, row] { consume(add(*a, *row)); }});
    cs.push_back({"mul_scalar_4M", [a] { consume(mul(*a, 0.5)); }});
    cs.push_back({"gelu_4M", [a] { consume(gelu(*a)); }});
    cs.push_back({"exp_4M", [a] { consume(exp(*a)); }});
    auto ag = std::make_shared<Tensor>(randn_f(s, g).set_requires_grad(true));
    auto gy = std::make_shared<Tensor>(randn_f(s, g));
    cs.push_back({"gelu_4M_fb", [ag, gy] {
                    zero({ag.get()});
                    gelu(*ag).backward(*gy);
                    consume(ag->grad());
                  }});
    cs.push_back({"transpose_copy_2048x2048", [a] { consume(contiguous(a->transpose(0, 1))); }});
  }

  // --- reductions -------------------------------------------------------------------
  {
    auto a = std::make_shared<Tensor>(randn_f({2048, 2048}, g));
    cs.push_back({"sum_all_4M", [a] { consume(sum(*a)); }});
    cs.push_back({"sum_lastdim_4096x1024", [a] { consume(sum(reshape(*a, {4096, 1024}), {-1})); }});
    cs.push_back({"sum_dim0_4096x1024", [a] { consume(sum(reshape(*a, {4096, 1024}), {0})); }});
  }

  // --- MLP training step --------------------------------------------------------------
  {
    // 512 -> 2048 (gelu) -> 512 on a batch of 256, MSE loss, SGD via copy_.
    auto x = std::make_shared<Tensor>(randn_f({256, 512}, g));
    auto y = std::make_shared<Tensor>(randn_f({256, 512}, g));
    auto params = std::make_shared<std::vector<Tensor>>(std::vector<Tensor>{
        randn_f({2048, 512}, g, 0.02).set_requires_grad(true), zeros({2048}).set_requires_grad(true),
        randn_f({512, 2048}, g, 0.02).set_requires_grad(true), zeros({512}).set_requires_grad(true)});
    cs.push_back({"mlp_step_256x512x2048", [x, y, params] {
                    auto& p = *params;
                    for (auto& t : p) t.zero_grad();
                    Tensor h = gelu(linear(*x, p[0], p[1]));
                    Tensor out = linear(h, p[2], p[3]);
                    Tensor loss = mean(square(sub(out, *y)));
                    loss.backward();
                    NoGradGuard ng;
                    for (auto& t : p) copy_(t, sub(t, mul(t.grad(), 1e-3)));
                    consume(p[0]);
                  }});
  }
  return cs;
}

}  // namespace

int main(int argc, char** argv) {
  Options o;
  for (int i = 1; i < argc; ++i) {
    const std::string a = argv[i];
    auto next = [&]() -> const char* {
      if (i + 1 >= argc) {
        std::fprintf(stderr, "%s needs a value\n", a.c_str());
        std::exit(2);
      }
      return argv[++i];
    };
    if (a == "--threads") o.threads = std::atoi(next());
    else if (a == "--min-time") o.min_time = std::atof(next());
    else if (a == "--filter") o.filter = next();
    else if (a == "--list") o.list = true;
    else {
      std::fprintf(stderr, "usage: %s [--threads N] [--min-time S] [--filter SUBSTR] [--list]\n", argv[0]);
      return 2;
    }
  }
  if (o.threads > 0) set_num_threads(o.threads);
  const auto cases = make_cases();
  if (o.list) {
    for (const auto& c : cases) std::printf("%s\n", c.name.c_str());
    return 0;
  }
  std::printf("# mtalab bench_ops threads=%d min_time=%.2f\n", get_num_threads(), o.min_time);
  for (const auto& c : cases)
    if (o.filter.empty() || c.name.find(o.filter) != std::string::npos) time_case(c, o);
  return 0;
}
