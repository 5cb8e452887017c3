// The fused causal attention (autograd/ops_attention.h) against the map ops it replaces:
// values and every gradient on odd shapes and every MTA option set, finite differences in
// float64, causality, thread-count independence, and that no [T, T] tensor is kept.
#include <doctest/doctest.h>

#include <cmath>
#include <string>
#include <vector>

#include "autograd/kernels.h"
#include "autograd/ops.h"
#include "gradcheck.h"

using namespace mtalab;
using testing::gradcheck;

namespace {

struct Setup {
  std::string name;
  int64_t cq = 0, ck = 0, cq_post = 0, ck_post = 0;  // 0: no convolution there
  KqPad pad = KqPad::both;
  int64_t ch = 0;  // 0: no head mixing; else the group size
  bool mix_pre = true, mix_post = true;
};

// Every option set the variant tests use, and the paper's two settings.
std::vector<Setup> setups(int64_t H) {
  return {
      {"plain softmax"},
      {"toy: kq pre 2x9", 2, 9},
      {"LM: kq pre+post 6x11, mix pre+post over all heads", 6, 11, 6, 11, KqPad::both, H},
      {"post only 3x4 left, mix c_h 2", 0, 0, 3, 4, KqPad::left, 2},
      {"pre 2x3 right, mix pre only c_h 1", 2, 3, 0, 0, KqPad::right, 1, true, false},
      {"talking heads: mix only", 0, 0, 0, 0, KqPad::both, H},
      {"mix post only c_h 2, kq pre 4x5", 4, 5, 0, 0, KqPad::both, 2, false, true},
  };
}

struct Inputs {
  TensorList t;  // q, k, v, then the components present, in MtaMaps order
  MtaMaps maps;
};

Inputs make_inputs(const Setup& s, int64_t B, int64_t H, int64_t T, int64_t D, DType dt, uint64_t seed) {
  Generator g(seed);
  auto r = [&](const Shape& sh, double amp) { return uniform(sh, -amp, amp, g, {DType::f64}).to(dt); };
  Inputs in;
  for (int k = 0; k < 3; ++k) in.t.push_back(r({B, H, T, D}, 1.0).set_requires_grad(true));
  auto add = [&](Tensor& slot, const Shape& sh) {
    slot = r(sh, 0.5).set_requires_grad(true);
    in.t.push_back(slot);
  };
  if (s.cq) add(in.maps.kq_pre, {H, s.cq, s.ck});
  if (s.ch && s.mix_pre) add(in.maps.mix_pre, {H / s.ch, s.ch, s.ch});
  if (s.cq_post) add(in.maps.kq_post, {H, s.cq_post, s.ck_post});
  if (s.ch && s.mix_post) add(in.maps.mix_post, {H / s.ch, s.ch, s.ch});
  in.maps.pad = s.pad;
  return in;
}

// max|a - ref| / max|ref|, the denominator at least 1e-3: a gradient that is exactly 0 in
// theory (T = 1: one key, so dq = dk = 0) is rounding noise on both sides.
double norm_error(const Tensor& a, const Tensor& ref) {
  const std::vector<double> x = a.to_vector<double>(), y = ref.to_vector<double>();
  double d = 0, m = 0;
  for (size_t i = 0; i < x.size(); ++i) {
    if (std::isnan(x[i])) return INFINITY;
    d = std::max(d, std::abs(x[i] - y[i]));
    m = std::max(m, std::abs(y[i]));
  }
  return d / std::max(m, 1e-3);
}

// Output and gradient of every input, for sum(o * R).
std::vector<Tensor> run(bool fused, const Inputs& in, double scale) {
  for (auto t : in.t) t.zero_grad();
  Tensor o = fused ? fused_attention(in.t[0], in.t[1], in.t[2], scale, in.maps)
                   : attention_maps(in.t[0], in.t[1], in.t[2], scale, in.maps);
  Generator g(99);
  sum(mul(o, rand(o.shape(), g, o.options()))).backward();
  std::vector<Tensor> r{o.detach()};
  for (auto& t : in.t) r.push_back(t.grad());
  return r;
}

void compare(const Setup& s, int64_t B, int64_t H, int64_t T, int64_t D, DType dt, double tol) {
  CAPTURE(s.name);
  CAPTURE(T);
  CAPTURE(std::string(dtype_name(dt)));
  const Inputs in = make_inputs(s, B, H, T, D, dt, 17 + T);
  const double scale = 1.0 / std::sqrt((double)D);
  const std::vector<Tensor> f = run(true, in, scale), m = run(false, in, scale);
  for (size_t k = 0; k < f.size(); ++k) {
    CAPTURE(k);  // 0: output, then q, k, v and the components
    CHECK(norm_error(f[k], m[k]) <= tol);
  }
}

}  // namespace

TEST_CASE("fused attention: equals the map ops, values and every gradient, float64 (1e-12)") {
  const int64_t H = 4;
  for (const Setup& s : setups(H))
    for (int64_t T : {1, 2, 5, 63, 67}) compare(s, 2, H, T, 8, DType::f64, 1e-12);
  // T = 257: tiles (64 for softmax, 32 rows for MTA) do not divide it
  for (const Setup& s : setups(2)) compare(s, 1, 2, 257, 16, DType::f64, 1e-12);
}

TEST_CASE("fused attention: equals the map ops in float32 (2e-5)") {
  for (const Setup& s : setups(4)) compare(s, 2, 4, 67, 16, DType::f32, 2e-5);
}

TEST_CASE("fused attention: kernels wider and taller than the maps, every pad mode, c_h = 1, 2 and all") {
  for (KqPad pad : {KqPad::both, KqPad::left, KqPad::right})
    for (int64_t ch : {1, 2, 4}) {
      Setup s{"c_q > T and c_k > T", 9, 13, 7, 15, pad, ch};
      if (pad != KqPad::both) s.ck = 12, s.ck_post = 6;  // even sizes where the pad allows them
      compare(s, 1, 4, 5, 4, DType::f64, 1e-12);
      compare(s, 1, 4, 37, 4, DType::f64, 1e-12);
    }
}

TEST_CASE("fused attention: float64 gradients by finite differences") {
  for (const Setup& s : setups(2)) {
    CAPTURE(s.name);
    const Inputs in = make_inputs(s, 1, 2, 7, 3, DType::f64, 5);
    const MtaMaps shape = in.maps;
    auto f = [&](const TensorList& x) {
      MtaMaps m;
      m.pad = shape.pad;
      size_t i = 3;
      if (shape.kq_pre.defined()) m.kq_pre = x[i++];
      if (shape.mix_pre.defined()) m.mix_pre = x[i++];
      if (shape.kq_post.defined()) m.kq_post = x[i++];
      if (shape.mix_post.defined()) m.mix_post = x[i++];
      return fused_attention(x[0], x[1], x[2], 0.6, m);
    };
    CHECK(gradcheck(f, in.t) <= 1.0);
  }
}

TEST_CASE("fused attention: causal, changing token t leaves every output before t bit-identical") {
  const int64_t B = 1, H = 4, T = 40, D = 8, t = 23;
  for (const Setup& s : setups(H)) {
    CAPTURE(s.name);
    NoGradGuard ng;
    Inputs in = make_inputs(s, B, H, T, D, DType::f32, 3);
    const std::vector<float> y0 = fused_attention(in.t[0], in.t[1], in.t[2], 0.3, in.maps).to_vector<float>();
    TensorList changed = in.t;
    for (int k = 0; k < 3; ++k) {
      std::vector<float> x = in.t[k].to_vector<float>();
      for (int64_t h = 0; h < H; ++h)
        for (int64_t d = 0; d < D; ++d) x[(h * T + t) * D + d] += 0.7f * (float)(k + 1);
      changed[k] = from_vector(x, in.t[k].shape());
    }
    const std::vector<float> y1 = fused_attention(changed[0], changed[1], changed[2], 0.3, in.maps).to_vector<float>();
    int before = 0, at = 0;
    for (int64_t h = 0; h < H; ++h)
      for (int64_t i = 0; i < T; ++i)
        for (int64_t d = 0; d < D; ++d) {
          const int64_t e = (h * T + i) * D + d;
          if (i < t) before += y0[e] != y1[e];
          if (i == t) at += y0[e] != y1[e];
        }
    CHECK(before == 0);
    CHECK(at > 0);
  }
}

TEST_CASE("fused attention: the same bits for 1, 2 and 3 threads") {
  const int saved = get_num_threads();
  for (const Setup& s : setups(4)) {
    CAPTURE(s.name);
    std::vector<std::vector<float>> runs;
    for (int threads : {1, 2, 3}) {
      set_num_threads(threads);
      const Inputs in = make_inputs(s, 2, 4, 100, 16, DType::f32, 8);
      std::vector<float> all;
      for (const Tensor& r : run(true, in, 0.25)) {
        const std::vector<float> v = r.to_vector<float>();
        all.insert(all.end(), v.begin(), v.end());
      }
      runs.push_back(all);
    }
    CHECK(runs[0] == runs[1]);
    CHECK(runs[0] == runs[2]);
  }
  set_num_threads(saved);
}

TEST_CASE("fused attention: keeps no [T, T] tensor for the backward, and peaks far below the map ops") {
  const int64_t B = 1, H = 4, T = 512, D = 16;
  const Setup s = setups(H)[2];  // the LM setting: every component
  for (bool fused : {true, false}) {
    CAPTURE(fused);
    const Inputs in = make_inputs(s, B, H, T, D, DType::f32, 1);
    const int64_t map_bytes = B * H * T * T * 4, qkv_bytes = 3 * B * H * T * D * 4;
    const int64_t before = memory_stats().live_bytes;
    Tensor o = fused ? fused_attention(in.t[0], in.t[1], in.t[2], 0.25, in.maps)
                     : attention_maps(in.t[0], in.t[1], in.t[2], 0.25, in.maps);
    const int64_t kept = memory_stats().live_bytes - before;  // the output and what backward keeps
    MESSAGE(std::string(fused ? "fused" : "maps") << ": kept " << kept / 1024 << " KiB for backward (one map is "
                                       << map_bytes / 1024 << " KiB)");
    if (fused) CHECK(kept < qkv_bytes);  // o and the per-row log-sum-exp
    else CHECK(kept > 4 * map_bytes);    // the reference keeps several maps
    sum(o).backward();
  }
}
