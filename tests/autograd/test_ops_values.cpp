// Forward values of the ops against hand-computed or closed-form results.
#include <doctest/doctest.h>

#include <cmath>

#include "autograd/ops.h"

using namespace mtalab;
using doctest::Approx;

static std::vector<double> vals(const Tensor& t) { return t.to_vector<double>(); }

TEST_CASE("forward: broadcasting arithmetic") {
  Tensor a = from_vector(std::vector<float>{1, 2, 3, 4, 5, 6}, {2, 3});
  Tensor b = from_vector(std::vector<float>{10, 20, 30}, {3});
  CHECK(vals(a + b) == std::vector<double>{11, 22, 33, 14, 25, 36});
  CHECK(vals(a * 2.0 - 1.0) == std::vector<double>{1, 3, 5, 7, 9, 11});
  Tensor col = from_vector(std::vector<float>{1, 2}, {2, 1});
  CHECK(vals(a / col) == std::vector<double>{1, 2, 3, 2, 2.5, 3});
  CHECK_THROWS_WITH_AS(add(a, from_vector(std::vector<float>{1, 2}, {2})),
                       doctest::Contains("add: shapes [2, 3] and [2] do not broadcast"), std::invalid_argument);
}

TEST_CASE("forward: mismatches name the op and both shapes") {
  Tensor a = zeros({2, 3}), b = zeros({3}, {DType::f64});
  CHECK_THROWS_WITH_AS(mul(a, b), doctest::Contains("mul: dtype mismatch, float32 [2, 3] vs float64 [3]"),
                       std::invalid_argument);
  CHECK_THROWS_WITH_AS(matmul(zeros({2, 3}), zeros({4, 5})),
                       doctest::Contains("matmul: inner dimensions differ, [2, 3] x [4, 5]"), std::invalid_argument);
  CHECK_THROWS_WITH_AS(reshape(zeros({2, 3}), {4, 2}), doctest::Contains("[2, 3]"), std::invalid_argument);
}

TEST_CASE("forward: reductions") {
  Tensor a = from_vector(std::vector<double>{1, 5, 3, 4, 2, 6}, {2, 3});
  CHECK(vals(sum(a, {1})) == std::vector<double>{9, 12});
  CHECK(vals(sum(a, {0}, true)) == std::vector<double>{5, 7, 9});
  CHECK(sum(a, {0}, true).shape() == Shape{1, 3});
  CHECK(vals(max(a, {1})) == std::vector<double>{5, 6});
  CHECK(mean(a).item() == Approx(3.5));
  CHECK(logsumexp(a, 1).to_vector<double>()[0] == Approx(std::log(std::exp(1) + std::exp(5) + std::exp(3))));
  // A long sum is exact enough and deterministic.
  Tensor big = ones({300000});
  CHECK(sum(big).item() == 300000.0);
}

TEST_CASE("forward: matmul against a naive loop, with transposed and broadcast operands") {
  Generator g(5);
  Tensor a = randn({2, 3, 4}, g, {DType::f64}), b = randn({4, 5}, g, {DType::f64});
  Tensor c = matmul(a, b);
  CHECK(c.shape() == Shape{2, 3, 5});
  auto av = vals(a), bv = vals(b), cv = vals(c);
  for (int n = 0; n < 2; ++n)
    for (int i = 0; i < 3; ++i)
      for (int j = 0; j < 5; ++j) {
        double s = 0;
        for (int k = 0; k < 4; ++k) s += av[n * 12 + i * 4 + k] * bv[k * 5 + j];
        CHECK(cv[n * 15 + i * 5 + j] == Approx(s).epsilon(1e-12));
      }
  Tensor bt = contiguous(transpose(b, 0, 1));  // [5,4] stored; transpose view is [4,5] column-major
  CHECK(vals(matmul(a, transpose(bt, 0, 1))) == cv);
}

TEST_CASE("forward: softmax rows sum to one, log_softmax consistent, masked rows") {
  Generator g(6);
  Tensor x = randn({4, 9}, g, {DType::f64});
  auto s = vals(sum(softmax(x), {-1}));
  for (double v : s) CHECK(v == Approx(1.0));
  auto d = vals(sub(log(softmax(x)), log_softmax(x)));
  for (double v : d) CHECK(std::abs(v) < 1e-12);
  Tensor m = masked_fill(x, from_vector(std::vector<double>{0, 1, 1, 1, 1, 1, 1, 1, 1}, {9}), -INFINITY);
  auto p = vals(softmax(m));
  CHECK(p[0] == Approx(1.0));
  CHECK(p[1] == 0.0);
}

TEST_CASE("forward: causal_softmax equals softmax of the -inf-masked maps") {
  Generator g(8);
  Tensor x = randn({2, 5, 5}, g, {DType::f64});
  std::vector<double> m(25);
  for (int i = 0; i < 5; ++i)
    for (int j = 0; j < 5; ++j) m[i * 5 + j] = j > i;
  Tensor ref = softmax(masked_fill(x, from_vector(m, {5, 5}), -INFINITY));
  auto d = vals(sub(causal_softmax(x), ref));
  for (double v : d) CHECK(std::abs(v) < 1e-15);
}

TEST_CASE("forward: norms") {
  Tensor x = from_vector(std::vector<double>{1, 2, 3, 4}, {1, 4});
  auto r = vals(rms_norm(x, ones({4}, {DType::f64}), 0.0));
  const double rms = std::sqrt((1 + 4 + 9 + 16) / 4.0);
  CHECK(r[3] == Approx(4 / rms));
  auto l = vals(layer_norm(x, Tensor(), Tensor(), 0.0));
  CHECK(l[0] == Approx(-1.5 / std::sqrt(1.25)));
  CHECK_THROWS_WITH_AS(rms_norm(x, ones({3}, {DType::f64})), doctest::Contains("rms_norm: parameter of shape [3]"),
                       std::invalid_argument);
}

TEST_CASE("forward: embedding and cross-entropy") {
  Tensor w = from_vector(std::vector<double>{0, 1, 10, 11, 20, 21}, {3, 2});
  Tensor idx = from_vector<int32_t>({2, 0}, {2}, {DType::i32});
  CHECK(vals(embedding(w, idx)) == std::vector<double>{20, 21, 0, 1});
  CHECK_THROWS_WITH_AS(embedding(w, from_vector<int32_t>({3}, {1}, {DType::i32})),
                       doctest::Contains("index 3 at position 0 is outside [0, 3)"), std::invalid_argument);
  Tensor logits = from_vector(std::vector<double>{0, 0, 0, 0, 5, 0}, {2, 3});
  Tensor tgt = from_vector<int64_t>({1, 1}, {2}, {DType::i64});
  const double l0 = std::log(3.0), l1 = std::log(std::exp(5.0) + 2) - 5;
  CHECK(cross_entropy(logits, tgt).item() == Approx((l0 + l1) / 2));
  Tensor mask = from_vector(std::vector<double>{0, 1}, {2});
  CHECK(cross_entropy(logits, tgt, mask).item() == Approx(l1));
  CHECK(cross_entropy(logits, tgt, zeros({2}, {DType::f64})).item() == 0.0);
}

TEST_CASE("forward: dropout keeps about 1-p and scales survivors") {
  Generator g(7);
  Tensor x = ones({20000});
  auto y = vals(dropout(x, 0.25, g));
  int kept = 0;
  for (double v : y) {
    CHECK((v == 0.0 || v == Approx(1 / 0.75)));
    kept += v != 0.0;
  }
  CHECK(kept / 20000.0 == Approx(0.75).epsilon(0.02));
  CHECK(dropout(x, 0.25, g, false).same(x));
}
