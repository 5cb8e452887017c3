// Head mixing (autograd/ops_attention.h): forward against a naive loop from the definition,
// gradients by finite differences and against reshape + matmul,
// causality, thread-count independence, fp32 vs fp64, bad arguments; and a whole MTA
// attention (kq_conv pre, head_mix pre, causal_softmax, kq_conv post, head_mix post)
// checked by finite differences and for causality.
#include <doctest/doctest.h>

#include <algorithm>
#include <cmath>
#include <string>
#include <vector>

#include "autograd/kernels.h"
#include "autograd/ops.h"
#include "gradcheck.h"
#include "autograd/ops_attention.h"

using namespace mtalab;
using testing::gradcheck;
using testing::rand_f64;

namespace {

// The definition, as plain loops: x [B,H,T,T], M [H/ch, ch, ch].
std::vector<double> naive_mix(const std::vector<double>& x, const std::vector<double>& M, int64_t B, int64_t H,
                              int64_t T, int64_t ch) {
  std::vector<double> out(B * H * T * T, 0.0);
  for (int64_t b = 0; b < B; ++b)
    for (int64_t g = 0; g < H / ch; ++g)
      for (int64_t j = 0; j < ch; ++j)
        for (int64_t q = 0; q < T; ++q)
          for (int64_t k = 0; k <= q; ++k) {
            double s = 0;
            for (int64_t i = 0; i < ch; ++i)
              s += M[(g * ch + i) * ch + j] * x[((b * H + g * ch + i) * T + q) * T + k];
            out[((b * H + g * ch + j) * T + q) * T + k] = s;
          }
  return out;
}

Tensor tril_mask(int64_t T, DType dt) {
  std::vector<double> m(T * T, 0.0);
  for (int64_t i = 0; i < T; ++i)
    for (int64_t j = 0; j <= i; ++j) m[i * T + j] = 1.0;
  return from_vector(m, {T, T}, {dt});
}

// head_mix from elementary ops: [B,G,ch,T*T] maps, out_g = M_gᵀ x_g by matmul, masked.
Tensor composed_mix(const Tensor& x, const Tensor& M) {
  const int64_t B = x.size(0), H = x.size(1), T = x.size(2), G = M.size(0), ch = M.size(1);
  const Tensor xs = reshape(x, {B, G, ch, T * T});
  const Tensor y = matmul(transpose(M, 1, 2), xs);  // [G,ch,ch] x [B,G,ch,T*T]
  return mul(reshape(y, {B, H, T, T}), tril_mask(T, x.dtype()));
}

double max_abs_diff(const std::vector<double>& a, const std::vector<double>& b) {
  REQUIRE(a.size() == b.size());
  double d = 0;
  for (size_t i = 0; i < a.size(); ++i) d = std::max(d, std::abs(a[i] - b[i]));
  return d;
}
double max_abs(const std::vector<double>& a) {
  double m = 0;
  for (double v : a) m = std::max(m, std::abs(v));
  return m;
}

}  // namespace

TEST_CASE("head_mix: forward matches the naive loop (c_h = 1, 2, H; f64 and f32)") {
  const int64_t B = 2, H = 4;
  for (int64_t T : {5, 33})
    for (int64_t ch : {1, 2, 4}) {
      CAPTURE(ch);
      CAPTURE(T);
      const Tensor x = rand_f64({B, H, T, T}, 10 + T);
      const Tensor M = rand_f64({H / ch, ch, ch}, 20 + ch);
      const std::vector<double> ref = naive_mix(x.to_vector<double>(), M.to_vector<double>(), B, H, T, ch);
      CHECK(max_abs_diff(head_mix(x, M).to_vector<double>(), ref) < 1e-13);
      CHECK(max_abs_diff(head_mix(x.to(DType::f32), M.to(DType::f32)).to_vector<double>(), ref) <
            1e-5 * (1 + max_abs(ref)));
    }
}

TEST_CASE("head_mix: gradients w.r.t. input and mix by finite differences (c_h = 1, 2, H)") {
  const int64_t B = 2, H = 4, T = 5;
  for (int64_t ch : {1, 2, 4}) {
    CAPTURE(ch);
    const Tensor x = rand_f64({B, H, T, T}, 30 + ch), M = rand_f64({H / ch, ch, ch}, 40 + ch);
    CHECK(gradcheck([](const TensorList& in) { return head_mix(in[0], in[1]); }, {x, M}) <= 1.0);
  }
  // H = 6 in groups of 3, and only one input requiring grad at a time.
  const Tensor x = rand_f64({1, 6, 4, 4}, 50), M = rand_f64({2, 3, 3}, 51);
  CHECK(gradcheck([&](const TensorList& in) { return head_mix(in[0], M.detach()); }, {x}) <= 1.0);
  CHECK(gradcheck([&](const TensorList& in) { return head_mix(x.detach(), in[0]); }, {M}) <= 1.0);
}

TEST_CASE("head_mix: fused op equals reshape + matmul, values and gradients") {
  const int64_t B = 2, H = 4, T = 19;
  for (int64_t ch : {1, 2, 4}) {
    CAPTURE(ch);
    Tensor x1 = rand_f64({B, H, T, T}, 60), M1 = rand_f64({H / ch, ch, ch}, 61);
    Tensor x2 = x1.detach().clone().set_requires_grad(true), M2 = M1.detach().clone().set_requires_grad(true);
    Generator g(5);
    const Tensor R = uniform({B, H, T, T}, -1, 1, g, {DType::f64});
    const Tensor y1 = head_mix(x1, M1), y2 = composed_mix(x2, M2);
    CHECK(max_abs_diff(y1.to_vector<double>(), y2.to_vector<double>()) < 1e-13);
    sum(mul(y1, R)).backward();
    sum(mul(y2, R)).backward();
    CHECK(max_abs_diff(x1.grad().to_vector<double>(), x2.grad().to_vector<double>()) < 1e-13);
    CHECK(max_abs_diff(M1.grad().to_vector<double>(), M2.grad().to_vector<double>()) < 1e-11);
  }
}

TEST_CASE("head_mix: causal, changing row r of one head changes no output row < r") {
  const int64_t B = 1, H = 4, T = 10, ch = 2, r = 6;
  const Tensor x = rand_f64({B, H, T, T}, 80), M = rand_f64({H / ch, ch, ch}, 81);
  const std::vector<double> y0 = head_mix(x, M).to_vector<double>();
  std::vector<double> xv = x.to_vector<double>();
  for (int64_t s = 0; s < T; ++s) xv[(1 * T + r) * T + s] += 2.0;  // head 1 (group 0), row r
  const std::vector<double> y1 = head_mix(from_vector(xv, {B, H, T, T}), M).to_vector<double>();
  int before = 0, other_group = 0, at = 0;
  for (int64_t h = 0; h < H; ++h)
    for (int64_t i = 0; i < T; ++i)
      for (int64_t j = 0; j < T; ++j) {
        const int64_t e = (h * T + i) * T + j;
        if (i < r) before += y1[e] != y0[e];
        if (h >= ch) other_group += y1[e] != y0[e];
        if (i == r && h < ch) at += y1[e] != y0[e];
      }
  CHECK(before == 0);
  CHECK(other_group == 0);
  CHECK(at == 2 * (r + 1));  // both heads of the group, columns 0..r (above the diagonal stays 0)
  // Entries above the diagonal are never read: NaN there (input or upstream gradient)
  // changes no output and leaves the gradients finite.
  std::vector<double> xn = x.to_vector<double>(), gv(B * H * T * T, 1.0);
  for (int64_t h = 0; h < H; ++h)
    for (int64_t i = 0; i < T; ++i)
      for (int64_t j = i + 1; j < T; ++j) xn[(h * T + i) * T + j] = gv[(h * T + i) * T + j] = std::nan("");
  Tensor xt = from_vector(xn, {B, H, T, T}).set_requires_grad(true);
  Tensor Mg = M.detach().clone().set_requires_grad(true);
  const Tensor yn = head_mix(xt, Mg);
  CHECK(max_abs_diff(yn.to_vector<double>(), y0) == 0.0);
  yn.backward(from_vector(gv, {B, H, T, T}));
  int nonfinite = 0;
  for (double v : xt.grad().to_vector<double>()) nonfinite += !std::isfinite(v);
  for (double v : Mg.grad().to_vector<double>()) nonfinite += !std::isfinite(v);
  CHECK(nonfinite == 0);
}

TEST_CASE("head_mix: results do not depend on the thread count") {
  const int prev = get_num_threads();
  const int64_t B = 3, H = 4, T = 45;
  std::vector<std::vector<float>> outs, gxs, gms;
  for (int nt : {1, 2, 3}) {
    set_num_threads(nt);
    Generator g(90);
    Tensor x = uniform({B, H, T, T}, -1, 1, g, {DType::f32}).set_requires_grad(true);
    Tensor M = uniform({2, 2, 2}, -1, 1, g, {DType::f32}).set_requires_grad(true);
    const Tensor R = uniform({B, H, T, T}, -1, 1, g, {DType::f32});
    const Tensor y = head_mix(x, M);
    sum(mul(y, R)).backward();
    outs.push_back(y.to_vector<float>());
    gxs.push_back(x.grad().to_vector<float>());
    gms.push_back(M.grad().to_vector<float>());
  }
  set_num_threads(prev);
  for (size_t k = 1; k < outs.size(); ++k) {
    CHECK(outs[k] == outs[0]);
    CHECK(gxs[k] == gxs[0]);
    CHECK(gms[k] == gms[0]);
  }
}

TEST_CASE("head_mix: float32 agrees with float64") {
  const int64_t B = 2, H = 4, T = 40;
  for (int64_t ch : {2, 4}) {
    CAPTURE(ch);
    Tensor x = rand_f64({B, H, T, T}, 100), M = rand_f64({H / ch, ch, ch}, 101);
    Tensor x32 = x.detach().to(DType::f32).set_requires_grad(true);
    Tensor M32 = M.detach().to(DType::f32).set_requires_grad(true);
    Generator g(9);
    const Tensor R = uniform({B, H, T, T}, -1, 1, g, {DType::f64});
    const Tensor y = head_mix(x, M), y32 = head_mix(x32, M32);
    sum(mul(y, R)).backward();
    sum(mul(y32, R.to(DType::f32))).backward();
    const auto rel = [](const Tensor& a, const Tensor& b) {
      const std::vector<double> va = a.to_vector<double>(), vb = b.to_vector<double>();
      return max_abs_diff(va, vb) / (1 + max_abs(vb));
    };
    CHECK(rel(y32, y) < 1e-5);
    CHECK(rel(x32.grad(), x.grad()) < 1e-5);
    CHECK(rel(M32.grad(), M.grad()) < 1e-5);
  }
}

TEST_CASE("head_mix: invalid arguments throw naming the sizes or shapes") {
  auto msg = [](auto f) -> std::string {
    try {
      f();
    } catch (const std::invalid_argument& e) {
      return e.what();
    }
    return "no exception";
  };
  // H = 6 not divisible by c_h = 4
  std::string m = msg([] { head_mix(zeros({1, 6, 5, 5}), zeros({1, 4, 4})); });
  CHECK(m.find("H = 6") != std::string::npos);
  CHECK(m.find("c_h = 4") != std::string::npos);
  // divisible, but the wrong number of groups
  m = msg([] { head_mix(zeros({1, 4, 5, 5}), zeros({1, 2, 2})); });
  CHECK(m.find("[1, 2, 2]") != std::string::npos);
  CHECK(m.find("[1, 4, 5, 5]") != std::string::npos);
  // non-square mix
  m = msg([] { head_mix(zeros({1, 4, 5, 5}), zeros({2, 2, 3})); });
  CHECK(m.find("head_mix") != std::string::npos);
  CHECK(m.find("[2, 2, 3]") != std::string::npos);
  // input not [B,H,T,T]
  m = msg([] { head_mix(zeros({4, 5, 5}), zeros({2, 2, 2})); });
  CHECK(m.find("[4, 5, 5]") != std::string::npos);
  // dtype mismatch
  m = msg([] { head_mix(zeros({1, 4, 5, 5}), zeros({2, 2, 2}, {DType::f64})); });
  CHECK(m.find("head_mix") != std::string::npos);
  CHECK(m.find("[2, 2, 2]") != std::string::npos);
}

namespace {
// One MTA attention: S = q kᵀ/√d -> kq_conv -> head_mix -> causal_softmax -> kq_conv ->
// head_mix -> · v.
Tensor mta_attention(const Tensor& q, const Tensor& k, const Tensor& v, const Tensor& Kpre, const Tensor& Mpre,
                     const Tensor& Kpost, const Tensor& Mpost) {
  const double scale = 1.0 / std::sqrt((double)q.size(-1));
  Tensor s = mul(matmul(q, transpose(k, 2, 3)), scale);
  s = head_mix(kq_conv(s, Kpre, KqPad::both), Mpre);
  Tensor p = causal_softmax(s);
  p = head_mix(kq_conv(p, Kpost, KqPad::left), Mpost);
  return matmul(p, v);
}
}  // namespace

TEST_CASE("MTA attention: gradients of every input by finite differences, and causality") {
  const int64_t B = 1, H = 4, T = 6, D = 3;
  const Tensor q = rand_f64({B, H, T, D}, 110), k = rand_f64({B, H, T, D}, 111), v = rand_f64({B, H, T, D}, 112);
  const Tensor Kpre = rand_f64({H, 2, 3}, 113), Mpre = rand_f64({2, 2, 2}, 114);
  const Tensor Kpost = rand_f64({H, 3, 2}, 115), Mpost = rand_f64({1, 4, 4}, 116);
  CHECK(gradcheck([](const TensorList& in) { return mta_attention(in[0], in[1], in[2], in[3], in[4], in[5], in[6]); },
                  {q, k, v, Kpre, Mpre, Kpost, Mpost}) <= 1.0);
  // Token r's q, k, v influence no output row before r.
  NoGradGuard ng;
  const std::vector<double> y0 = mta_attention(q, k, v, Kpre, Mpre, Kpost, Mpost).to_vector<double>();
  const int64_t r = 3;
  std::vector<double> qv = q.to_vector<double>(), kv = k.to_vector<double>(), vv = v.to_vector<double>();
  for (int64_t h = 0; h < H; ++h)
    for (int64_t d = 0; d < D; ++d) {
      const int64_t e = (h * T + r) * D + d;
      qv[e] += 0.5;
      kv[e] -= 0.7;
      vv[e] += 0.3;
    }
  const std::vector<double> y1 = mta_attention(from_vector(qv, {B, H, T, D}), from_vector(kv, {B, H, T, D}),
                                               from_vector(vv, {B, H, T, D}), Kpre, Mpre, Kpost, Mpost)
                                     .to_vector<double>();
  int before = 0, after = 0;
  for (int64_t h = 0; h < H; ++h)
    for (int64_t i = 0; i < T; ++i)
      for (int64_t d = 0; d < D; ++d) {
        const int64_t e = (h * T + i) * D + d;
        (i < r ? before : after) += y1[e] != y0[e];
      }
  CHECK(before == 0);
  CHECK(after > 0);
}
