// Benchmark of the Multi-Token Attention map ops on the CPU, float32:
//   kqconv  kq_conv forward + backward (gradients of the map and of the kernel) on
//           [B,H,T,T] maps, upstream gradient a fixed tensor
//   mta     a whole MTA attention forward + backward: q,k,v [B,H,T,Dh] -> S = q kᵀ/√Dh
//           -> kq_conv (pre) -> head_mix (pre) -> causal_softmax -> kq_conv (post)
//           -> head_mix (post) -> · v -> sum, backward to q, k, v and all four kernels
// for T = 256, 512, 1024 and kernels c_q x c_k = 6x11 and 2x9 (pad both, c_h = 2).
// bench/bench_mta_torch.py does the same computations the way the paper's reference
// code does (F.pad + grouped F.conv2d with materialised masks, einsum head mixing).
//
// Inputs are deterministic formulas (the same in both programs), so the CHECK lines
// (loss and gradient norms) must agree between the two. Output, one line each:
//   RESULT <case> <median ms> <min ms>
//   CHECK <case> <name> <value>
// Usage: bench_mta [repeats=5] [max_T=1024]
#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <vector>

#include "autograd/kernels.h"
#include "autograd/ops.h"
#include "layers/mta_init.h"

using namespace mtalab;

namespace {

constexpr int64_t kB = 1, kH = 4, kDh = 32, kCh = 2;

// value[i] = amp * sin(freq * i + phase), computed in double, stored as float32.
Tensor pattern(const Shape& s, double amp, double freq, double phase) {
  std::vector<float> v(shape_numel(s));
  for (size_t i = 0; i < v.size(); ++i) v[i] = (float)(amp * std::sin(freq * (double)i + phase));
  return from_vector(v, s, {DType::f32});
}
// Identity kq kernel plus a small deterministic perturbation.
Tensor kq_weights(int64_t cq, int64_t ck, double phase) {
  Tensor id = kq_identity_kernel(kH, cq, ck, KqPad::both, {DType::f32});
  return add(id, pattern({kH, cq, ck}, 0.05, 0.7, phase)).set_requires_grad(true);
}
Tensor mix_weights(double phase) {
  return add(head_mix_identity(kH, kCh, {DType::f32}), pattern({kH / kCh, kCh, kCh}, 0.1, 1.3, phase))
      .set_requires_grad(true);
}

double abs_sum(const Tensor& t) { return sum(abs(t)).item(); }

struct Timing {
  double median, min;
};
// Warm-up: at least 3 runs and 0.5 s (at most 20 runs), so first-touch page faults and
// allocator growth are not timed; then `repeats` timed runs.
template <typename F>
Timing time_ms(int repeats, const F& f) {
  const auto w0 = std::chrono::steady_clock::now();
  for (int w = 0; w < 20; ++w) {
    f();
    if (w >= 2 && std::chrono::steady_clock::now() - w0 > std::chrono::milliseconds(500)) break;
  }
  std::vector<double> ms;
  for (int r = 0; r < repeats; ++r) {
    const auto t0 = std::chrono::steady_clock::now();
    f();
    const auto t1 = std::chrono::steady_clock::now();
    ms.push_back(std::chrono::duration<double, std::milli>(t1 - t0).count());
  }
  std::sort(ms.begin(), ms.end());
  const size_t n = ms.size();
  return {n % 2 ? ms[n / 2] : 0.5 * (ms[n / 2 - 1] + ms[n / 2]), ms[0]};
}

void bench_kqconv(int64_t T, int64_t cq, int64_t ck, int repeats) {
  const std::string name = "kqconv T=" + std::to_string(T) + " " + std::to_string(cq) + "x" + std::to_string(ck);
  Tensor x = pattern({kB, kH, T, T}, 1.0, 0.001, 0.3).set_requires_grad(true);
  Tensor K = kq_weights(cq, ck, 0.1);
  const Tensor G = pattern({kB, kH, T, T}, 1.0, 0.0007, 1.1);
  auto step = [&] {
    x.zero_grad();
    K.zero_grad();
    kq_conv(x, K, KqPad::both).backward(G);
  };
  const Timing t = time_ms(repeats, step);
  std::printf("RESULT %s %.3f %.3f\n", name.c_str(), t.median, t.min);
  std::printf("CHECK %s out_sum %.6e\n", name.c_str(), sum(mul(kq_conv(x.detach(), K.detach(), KqPad::both), G)).item());
  std::printf("CHECK %s gx_l1 %.6e\n", name.c_str(), abs_sum(x.grad()));
  std::printf("CHECK %s gK_l1 %.6e\n", name.c_str(), abs_sum(K.grad()));
  std::fflush(stdout);
}

void bench_mta(int64_t T, int64_t cq, int64_t ck, int repeats) {
  const std::string name = "mta T=" + std::to_string(T) + " " + std::to_string(cq) + "x" + std::to_string(ck);
  Tensor q = pattern({kB, kH, T, kDh}, 1.0, 0.01, 0.0).set_requires_grad(true);
  Tensor k = pattern({kB, kH, T, kDh}, 1.0, 0.013, 0.5).set_requires_grad(true);
  Tensor v = pattern({kB, kH, T, kDh}, 1.0, 0.017, 1.0).set_requires_grad(true);
  Tensor Kpre = kq_weights(cq, ck, 0.2), Kpost = kq_weights(cq, ck, 0.9);
  Tensor Mpre = mix_weights(0.4), Mpost = mix_weights(1.7);
  const double scale = 1.0 / std::sqrt((double)kDh);
  Tensor loss;
  auto step = [&] {
    for (Tensor* t : {&q, &k, &v, &Kpre, &Kpost, &Mpre, &Mpost}) t->zero_grad();
    Tensor s = mul(matmul(q, transpose(k, 2, 3)), scale);
    s = head_mix(kq_conv(s, Kpre, KqPad::both), Mpre);          // pre-softmax
    Tensor p = causal_softmax(s);
    p = head_mix(kq_conv(p, Kpost, KqPad::both), Mpost);        // post-softmax
    loss = sum(matmul(p, v));
    loss.backward();
  };
  const Timing t = time_ms(repeats, step);
  std::printf("RESULT %s %.3f %.3f\n", name.c_str(), t.median, t.min);
  std::printf("CHECK %s loss %.6e\n", name.c_str(), loss.item());
  std::printf("CHECK %s gq_l1 %.6e\n", name.c_str(), abs_sum(q.grad()));
  std::printf("CHECK %s gv_l1 %.6e\n", name.c_str(), abs_sum(v.grad()));
  std::printf("CHECK %s gKpre_l1 %.6e\n", name.c_str(), abs_sum(Kpre.grad()));
  std::printf("CHECK %s gMpre_l1 %.6e\n", name.c_str(), abs_sum(Mpre.grad()));
  std::printf("CHECK %s gKpost_l1 %.6e\n", name.c_str(), abs_sum(Kpost.grad()));
  std::printf("CHECK %s gMpost_l1 %.6e\n", name.c_str(), abs_sum(Mpost.grad()));
  std::fflush(stdout);
}

}  // namespace

int main(int argc, char** argv) {
  const int repeats = argc > 1 ? std::max(1, std::atoi(argv[1])) : 5;
  const int64_t max_T = argc > 2 ? std::atoll(argv[2]) : 1024;
  std::printf("# mtalab bench_mta: B=%lld H=%lld Dh=%lld c_h=%lld float32, threads=%d, median of %d\n",
              (long long)kB, (long long)kH, (long long)kDh, (long long)kCh, get_num_threads(), repeats);
  for (int64_t T : {256, 512, 1024}) {
    if (T > max_T) break;
    for (auto [cq, ck] : {std::pair<int64_t, int64_t>{6, 11}, {2, 9}}) {
      bench_kqconv(T, cq, ck, repeats);
      bench_mta(T, cq, ck, repeats);
    }
  }
  return 0;
}
