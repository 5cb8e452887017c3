// Key-query convolution (autograd/ops_attention.h): forward against a naive loop written
// from the definition, gradients against finite differences (tests/gradcheck.h) and
// against the same convolution composed from the engine's elementary ops,
// causality, determinism across thread counts, fp32 vs fp64 and bad arguments.
#include <doctest/doctest.h>

#include <algorithm>
#include <cmath>
#include <string>
#include <vector>

#include "autograd/errors.h"
#include "autograd/kernels.h"
#include "autograd/ops.h"
#include "gradcheck.h"
#include "autograd/ops_attention.h"

using namespace mtalab;
using testing::gradcheck;
using testing::rand_f64;

namespace {

struct KqCase {
  int64_t cq, ck;
  KqPad pad;
};

int64_t offset_of(KqPad pad, int64_t ck) {
  return pad == KqPad::both ? (ck - 1) / 2 : pad == KqPad::left ? ck - 1 : 0;
}

// The definition, as plain loops over std::vector: x [B,H,T,T], K [H,cq,ck].
std::vector<double> naive_kq(const std::vector<double>& x, const std::vector<double>& K, int64_t B, int64_t H,
                             int64_t T, int64_t cq, int64_t ck, int64_t p) {
  auto xt = [&](int64_t b, int64_t h, int64_t r, int64_t s) -> double {
    if (r < 0 || r >= T || s < 0 || s >= T || s > r) return 0.0;  // outside, or Mask_0
    return x[((b * H + h) * T + r) * T + s];
  };
  std::vector<double> out(B * H * T * T, 0.0);
  for (int64_t b = 0; b < B; ++b)
    for (int64_t h = 0; h < H; ++h)
      for (int64_t i = 0; i < T; ++i)
        for (int64_t j = 0; j <= i; ++j) {
          double s = 0;
          for (int64_t a = 0; a < cq; ++a)
            for (int64_t c = 0; c < ck; ++c) s += K[(h * cq + a) * ck + c] * xt(b, h, i - (cq - 1) + a, j - p + c);
          out[((b * H + h) * T + i) * T + j] = s;
        }
  return out;
}

// [T,T] lower-triangular ones (for the composed reference only).
Tensor tril(int64_t T, DType dt) {
  std::vector<double> m(T * T, 0.0);
  for (int64_t i = 0; i < T; ++i)
    for (int64_t j = 0; j <= i; ++j) m[i * T + j] = 1.0;
  return from_vector(m, {T, T}, {dt});
}

// result[k] = x[k - s] along dim, zero-filled: slice + concat with zeros.
Tensor shift(const Tensor& x, int64_t dim, int64_t s) {
  const int64_t n = x.size(dim);
  if (s == 0) return x;
  if (std::abs(s) >= n) return mul(x, 0.0);
  Shape zs = x.shape();
  zs[dim] = std::abs(s);
  const Tensor z = zeros(zs, x.options());
  if (s > 0) return concat({z, slice(x, dim, 0, n - s)}, dim);
  return concat({slice(x, dim, -s, n), z}, dim);
}

// kq_conv composed from elementary ops: Mask_0, shifted copies, per-head scalars, Mask_0.
Tensor composed_kq(const Tensor& x, const Tensor& K, KqPad pad) {
  const int64_t H = x.size(1), T = x.size(2), cq = K.size(1), ck = K.size(2), p = offset_of(pad, ck);
  const Tensor m = tril(T, x.dtype());
  const Tensor xm = mul(x, m);
  Tensor out;
  for (int64_t a = 0; a < cq; ++a)
    for (int64_t c = 0; c < ck; ++c) {
      const Tensor w = reshape(slice(slice(K, 1, a, a + 1), 2, c, c + 1), {1, H, 1, 1});
      const Tensor term = mul(shift(shift(xm, 2, cq - 1 - a), 3, p - c), w);
      out = out.defined() ? add(out, term) : term;
    }
  return mul(out, m);
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

const KqCase kAllCases[] = {
    {1, 1, KqPad::both},  {1, 1, KqPad::left},  {1, 1, KqPad::right}, {2, 3, KqPad::both},
    {2, 3, KqPad::left},  {2, 3, KqPad::right}, {3, 5, KqPad::both},  {4, 2, KqPad::left},
    {4, 2, KqPad::right}, {2, 4, KqPad::left},  {6, 11, KqPad::both}, {1, 7, KqPad::right},
};

std::string case_name(const KqCase& k) {
  return std::to_string(k.cq) + "x" + std::to_string(k.ck) + " pad " + kq_pad_name(k.pad);
}

}  // namespace

TEST_CASE("kq_conv: forward matches the naive loop (every pad, f64 and f32, tiled rows)") {
  // T = 70 makes rows long enough for the register-tiled interior path in both dtypes.
  for (int64_t T : {5, 70}) {
    for (const KqCase& kc : kAllCases) {
      CAPTURE(case_name(kc));
      CAPTURE(T);
      const int64_t B = 2, H = 3;
      const Tensor x = rand_f64({B, H, T, T}, 100 + T);
      const Tensor K = rand_f64({H, kc.cq, kc.ck}, 200 + kc.cq * 17 + kc.ck);
      const std::vector<double> ref = naive_kq(x.to_vector<double>(), K.to_vector<double>(), B, H, T, kc.cq, kc.ck,
                                               offset_of(kc.pad, kc.ck));
      CHECK(max_abs_diff(kq_conv(x, K, kc.pad).to_vector<double>(), ref) < 1e-12);
      const Tensor y32 = kq_conv(x.to(DType::f32), K.to(DType::f32), kc.pad);
      CHECK(y32.dtype() == DType::f32);
      CHECK(max_abs_diff(y32.to_vector<double>(), ref) < 1e-5 * (1 + max_abs(ref)));
    }
  }
}

TEST_CASE("kq_conv: gradients w.r.t. input and kernel by finite differences") {
  // Every pad mode; 1x1, even c_q, even c_k (left/right), c_k > T, c_q > T, and a T long enough
  // for the tiled interior path (W = 16 doubles).
  struct G {
    KqCase k;
    int64_t B, H, T;
  };
  const G cases[] = {
      {{1, 1, KqPad::both}, 2, 2, 5},  {{1, 1, KqPad::left}, 1, 2, 4},   {{1, 1, KqPad::right}, 1, 2, 4},
      {{2, 3, KqPad::both}, 2, 2, 5},  {{2, 3, KqPad::left}, 2, 2, 5},   {{2, 3, KqPad::right}, 2, 2, 5},
      {{4, 2, KqPad::left}, 1, 2, 6},  {{4, 2, KqPad::right}, 1, 2, 6},  {{3, 5, KqPad::both}, 1, 3, 6},
      {{2, 7, KqPad::both}, 1, 2, 4},  {{3, 9, KqPad::left}, 1, 2, 4},   {{2, 6, KqPad::right}, 1, 2, 3},
      {{6, 11, KqPad::both}, 1, 1, 7}, {{5, 3, KqPad::right}, 1, 2, 3}, {{3, 5, KqPad::both}, 1, 1, 40},
      {{2, 3, KqPad::left}, 1, 1, 36},
  };
  for (const G& c : cases) {
    CAPTURE(case_name(c.k));
    CAPTURE(c.T);
    const Tensor x = rand_f64({c.B, c.H, c.T, c.T}, 300 + c.T);
    const Tensor K = rand_f64({c.H, c.k.cq, c.k.ck}, 400 + c.k.ck);
    const KqPad pad = c.k.pad;
    CHECK(gradcheck([pad](const TensorList& in) { return kq_conv(in[0], in[1], pad); }, {x, K}) <= 1.0);
  }
}

TEST_CASE("kq_conv: fused op equals the composition of elementary ops, values and gradients") {
  for (const KqCase& kc : {KqCase{2, 3, KqPad::both}, KqCase{3, 4, KqPad::left}, KqCase{2, 5, KqPad::right},
                           KqCase{6, 11, KqPad::both}}) {
    CAPTURE(case_name(kc));
    for (int64_t T : {7, 40}) {
      CAPTURE(T);
      const int64_t B = 2, H = 2;
      Tensor x1 = rand_f64({B, H, T, T}, 500 + T), K1 = rand_f64({H, kc.cq, kc.ck}, 600);
      Tensor x2 = x1.detach().clone().set_requires_grad(true), K2 = K1.detach().clone().set_requires_grad(true);
      Generator g(7);
      const Tensor R = uniform({B, H, T, T}, -1, 1, g, {DType::f64});
      const Tensor y1 = kq_conv(x1, K1, kc.pad), y2 = composed_kq(x2, K2, kc.pad);
      CHECK(max_abs_diff(y1.to_vector<double>(), y2.to_vector<double>()) < 1e-12);
      sum(mul(y1, R)).backward();
      sum(mul(y2, R)).backward();
      CHECK(max_abs_diff(x1.grad().to_vector<double>(), x2.grad().to_vector<double>()) < 1e-12);
      CHECK(max_abs_diff(K1.grad().to_vector<double>(), K2.grad().to_vector<double>()) < 1e-10);
    }
  }
}

TEST_CASE("kq_conv: causal, changing input row r changes no output row < r, and col > row is never read") {
  const int64_t B = 1, H = 2, T = 12;
  for (const KqCase& kc : {KqCase{3, 5, KqPad::both}, KqCase{2, 4, KqPad::right}, KqCase{4, 3, KqPad::left}}) {
    CAPTURE(case_name(kc));
    const Tensor x = rand_f64({B, H, T, T}, 800);
    const Tensor K = rand_f64({H, kc.cq, kc.ck}, 801);
    const std::vector<double> y0 = kq_conv(x, K, kc.pad).to_vector<double>();
    for (int64_t r : {0, 4, 11}) {
      std::vector<double> xv = x.to_vector<double>();
      for (int64_t h = 0; h < H; ++h)
        for (int64_t s = 0; s < T; ++s) xv[(h * T + r) * T + s] += 1.0 + s;
      const std::vector<double> y1 = kq_conv(from_vector(xv, {B, H, T, T}), K, kc.pad).to_vector<double>();
      int changed_before = 0, changed_at = 0, above = 0;
      for (int64_t h = 0; h < H; ++h)
        for (int64_t i = 0; i < T; ++i)
          for (int64_t j = 0; j < T; ++j) {
            const int64_t e = (h * T + i) * T + j;
            if (i < r) changed_before += y1[e] != y0[e];
            if (i == r) changed_at += y1[e] != y0[e];
            if (j > i) above += y1[e] != 0.0;
          }
      CHECK(changed_before == 0);
      CHECK(changed_at > 0);  // the perturbation is seen (tap a = cq-1 reads row i itself)
      CHECK(above == 0);
    }
    // Entries above the diagonal are never read: NaN there in the input leaves the output
    // unchanged, and NaN there in the upstream gradient leaves both gradients finite.
    std::vector<double> xv = x.to_vector<double>(), gv(B * H * T * T, 1.0);
    for (int64_t h = 0; h < H; ++h)
      for (int64_t i = 0; i < T; ++i)
        for (int64_t j = i + 1; j < T; ++j) xv[(h * T + i) * T + j] = gv[(h * T + i) * T + j] = std::nan("");
    Tensor xn = from_vector(xv, {B, H, T, T}).set_requires_grad(true);
    Tensor Kg = K.detach().clone().set_requires_grad(true);
    const Tensor yn = kq_conv(xn, Kg, kc.pad);
    CHECK(max_abs_diff(yn.to_vector<double>(), y0) == 0.0);
    yn.backward(from_vector(gv, {B, H, T, T}));
    int nonfinite = 0;
    for (double v : xn.grad().to_vector<double>()) nonfinite += !std::isfinite(v);
    for (double v : Kg.grad().to_vector<double>()) nonfinite += !std::isfinite(v);
    CHECK(nonfinite == 0);
  }
}

TEST_CASE("kq_conv: results do not depend on the thread count") {
  const int prev = get_num_threads();
  const int64_t B = 2, H = 3, T = 67;
  std::vector<std::vector<float>> outs, gxs, gks;
  for (int nt : {1, 2, 3}) {
    set_num_threads(nt);
    Generator g(900);
    Tensor x = uniform({B, H, T, T}, -1, 1, g, {DType::f32}).set_requires_grad(true);
    Tensor K = uniform({H, 6, 11}, -1, 1, g, {DType::f32}).set_requires_grad(true);
    const Tensor R = uniform({B, H, T, T}, -1, 1, g, {DType::f32});
    const Tensor y = kq_conv(x, K, KqPad::both);
    sum(mul(y, R)).backward();
    outs.push_back(y.to_vector<float>());
    gxs.push_back(x.grad().to_vector<float>());
    gks.push_back(K.grad().to_vector<float>());
  }
  set_num_threads(prev);
  for (size_t k = 1; k < outs.size(); ++k) {
    CHECK(outs[k] == outs[0]);
    CHECK(gxs[k] == gxs[0]);
    CHECK(gks[k] == gks[0]);
  }
}

TEST_CASE("kq_conv: float32 agrees with float64") {
  for (const KqCase& kc : {KqCase{6, 11, KqPad::both}, KqCase{2, 9, KqPad::both}, KqCase{3, 4, KqPad::left}}) {
    CAPTURE(case_name(kc));
    const int64_t B = 2, H = 2, T = 50;
    Tensor x = rand_f64({B, H, T, T}, 1000), K = rand_f64({H, kc.cq, kc.ck}, 1001);
    Tensor x32 = x.detach().to(DType::f32).set_requires_grad(true);
    Tensor K32 = K.detach().to(DType::f32).set_requires_grad(true);
    Generator g(3);
    const Tensor R = uniform({B, H, T, T}, -1, 1, g, {DType::f64});
    const Tensor y = kq_conv(x, K, kc.pad), y32 = kq_conv(x32, K32, kc.pad);
    sum(mul(y, R)).backward();
    sum(mul(y32, R.to(DType::f32))).backward();
    const auto rel = [](const Tensor& a, const Tensor& b) {
      const std::vector<double> va = a.to_vector<double>(), vb = b.to_vector<double>();
      return max_abs_diff(va, vb) / (1 + max_abs(vb));
    };
    CHECK(rel(y32, y) < 1e-5);
    CHECK(rel(x32.grad(), x.grad()) < 1e-5);
    CHECK(rel(K32.grad(), K.grad()) < 1e-5);
  }
}

TEST_CASE("kq_conv: invalid arguments throw naming the option or the shapes") {
  const Tensor x = zeros({1, 4, 6, 6});
  auto msg = [](auto f) -> std::string {
    try {
      f();
    } catch (const std::invalid_argument& e) {
      return e.what();
    }
    return "no exception";
  };
  // even c_k with centred padding
  std::string m = msg([&] { kq_conv(x, zeros({4, 2, 4}), KqPad::both); });
  CHECK(m.find("c_k = 4") != std::string::npos);
  CHECK(m.find("both") != std::string::npos);
  CHECK_NOTHROW(kq_conv(x, zeros({4, 2, 4}), KqPad::left));
  // kernel heads differ from input heads
  m = msg([&] { kq_conv(x, zeros({3, 2, 3}), KqPad::both); });
  CHECK(m.find("kq_conv") != std::string::npos);
  CHECK(m.find("[3, 2, 3]") != std::string::npos);
  CHECK(m.find("[1, 4, 6, 6]") != std::string::npos);
  // kernel of the wrong rank
  m = msg([&] { kq_conv(x, zeros({4, 3}), KqPad::both); });
  CHECK(m.find("[4, 3]") != std::string::npos);
  CHECK(m.find("[1, 4, 6, 6]") != std::string::npos);
  // non-square maps and the wrong rank of input
  m = msg([&] { kq_conv(zeros({1, 4, 6, 5}), zeros({4, 2, 3}), KqPad::both); });
  CHECK(m.find("[1, 4, 6, 5]") != std::string::npos);
  CHECK_THROWS_AS(kq_conv(zeros({4, 6, 6}), zeros({4, 2, 3}), KqPad::both), std::invalid_argument);
  // dtype mismatch
  m = msg([&] { kq_conv(x, zeros({4, 2, 3}, {DType::f64}), KqPad::both); });
  CHECK(m.find("kq_conv") != std::string::npos);
  CHECK(m.find("[4, 2, 3]") != std::string::npos);
  // pad names
  CHECK(parse_kq_pad("both") == KqPad::both);
  CHECK(parse_kq_pad("left") == KqPad::left);
  CHECK(parse_kq_pad("right") == KqPad::right);
  try {
    parse_kq_pad("centre");
    FAIL("no exception");
  } catch (const InputError& e) {
    CHECK(std::string(e.what()).find("centre") != std::string::npos);
  }
}
