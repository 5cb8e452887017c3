// Every differentiable op of the engine against central finite differences (float64),
// tolerances as stated in tests/gradcheck.h (|num - ana| <= 1e-6 + 1e-5 |num|).
#include <doctest/doctest.h>

#include <cmath>
#include <vector>

#include "autograd/ops.h"
#include "gradcheck.h"

using namespace mtalab;
using testing::gradcheck;
using testing::rand_f64;

// Checks f's gradients w.r.t. every input (see tests/gradcheck.h for the tolerance).
template <typename F, typename... T>
static void GRADCHECK(F f, const T&... inputs) {
  CHECK(gradcheck(f, TensorList{inputs...}) <= 1.0);
}

TEST_CASE("grad: add/sub/mul/div with broadcasting") {
  auto a = rand_f64({3, 1, 5}, 1), b = rand_f64({4, 1}, 2);
  GRADCHECK([](const TensorList& x) { return add(x[0], x[1]); }, a, b);
  GRADCHECK([](const TensorList& x) { return sub(x[0], x[1]); }, a, b);
  GRADCHECK([](const TensorList& x) { return mul(x[0], x[1]); }, a, b);
  auto pos = rand_f64({4, 1}, 3, 0.5, 2.0);
  GRADCHECK([](const TensorList& x) { return div(x[0], x[1]); }, a, pos);
  auto s = rand_f64({}, 4);  // 0-d broadcast against 2-d
  GRADCHECK([](const TensorList& x) { return mul(x[0], x[1]); }, rand_f64({2, 3}, 5), s);
}

TEST_CASE("grad: scalar forms and operators") {
  auto a = rand_f64({7, 3}, 6, 0.5, 2.0);
  GRADCHECK([](const TensorList& x) { return x[0] + 2.0; }, a);
  GRADCHECK([](const TensorList& x) { return x[0] - 1.5; }, a);
  GRADCHECK([](const TensorList& x) { return 3.0 - x[0]; }, a);
  GRADCHECK([](const TensorList& x) { return x[0] * -0.7; }, a);
  GRADCHECK([](const TensorList& x) { return x[0] / 3.0; }, a);
  GRADCHECK([](const TensorList& x) { return 2.0 / x[0]; }, a);
  GRADCHECK([](const TensorList& x) { return -x[0]; }, a);
}

TEST_CASE("grad: unary maps") {
  auto a = rand_f64({5, 6}, 7, -2, 2);
  auto pos = rand_f64({5, 6}, 8, 0.3, 3);
  GRADCHECK([](const TensorList& x) { return exp(x[0]); }, a);
  GRADCHECK([](const TensorList& x) { return log(x[0]); }, pos);
  GRADCHECK([](const TensorList& x) { return sqrt(x[0]); }, pos);
  GRADCHECK([](const TensorList& x) { return rsqrt(x[0]); }, pos);
  GRADCHECK([](const TensorList& x) { return pow(x[0], 2.5); }, pos);
  GRADCHECK([](const TensorList& x) { return pow(x[0], x[1]); }, pos, rand_f64({6}, 9));
  GRADCHECK([](const TensorList& x) { return tanh(x[0]); }, a);
  GRADCHECK([](const TensorList& x) { return sigmoid(x[0]); }, a);
  GRADCHECK([](const TensorList& x) { return silu(x[0]); }, a);
  GRADCHECK([](const TensorList& x) { return gelu(x[0]); }, a);
  GRADCHECK([](const TensorList& x) { return square(x[0]); }, a);
  // abs and relu have kinks at 0: values kept away from it so differences are valid.
  auto away = rand_f64({5, 6}, 10, 0.1, 2);
  GRADCHECK([](const TensorList& x) { return abs(mul(x[0], x[1])); }, away, rand_f64({6}, 11, -1, -0.2));
  GRADCHECK([](const TensorList& x) { return relu(sub(x[0], 1.0)); }, away);
  GRADCHECK([](const TensorList& x) { return maximum(x[0], x[1]); }, a, rand_f64({6}, 12, -2, 2));
}

TEST_CASE("grad: reductions") {
  auto a = rand_f64({3, 5, 7}, 13);
  GRADCHECK([](const TensorList& x) { return sum(x[0]); }, a);
  GRADCHECK([](const TensorList& x) { return sum(x[0], {1}); }, a);
  GRADCHECK([](const TensorList& x) { return sum(x[0], {0, 2}, true); }, a);
  GRADCHECK([](const TensorList& x) { return mean(x[0], {-1}); }, a);
  GRADCHECK([](const TensorList& x) { return mean(x[0], {0, 1}, true); }, a);
  GRADCHECK([](const TensorList& x) { return max(x[0], {1}); }, a);
  GRADCHECK([](const TensorList& x) { return max(x[0], {0, 2}, true); }, a);
  GRADCHECK([](const TensorList& x) { return max(x[0]); }, a);
  GRADCHECK([](const TensorList& x) { return logsumexp(x[0], -1); }, a);
  GRADCHECK([](const TensorList& x) { return logsumexp(x[0], 1, true); }, a);
}

TEST_CASE("grad: shape ops") {
  auto a = rand_f64({2, 3, 5}, 14);
  GRADCHECK([](const TensorList& x) { return reshape(x[0], {6, -1}); }, a);
  GRADCHECK([](const TensorList& x) { return mul(permute(x[0], {2, 0, 1}), 1.0); }, a);
  GRADCHECK([](const TensorList& x) { return contiguous(transpose(x[0], 0, 2)); }, a);
  GRADCHECK([](const TensorList& x) { return slice(x[0], 2, 1, 4); }, a);
  GRADCHECK([](const TensorList& x) { return slice(x[0], -2, 1, -1); }, a);
  GRADCHECK([](const TensorList& x) { return expand(slice(x[0], 1, 0, 1), {4, 2, 3, 5}); }, a);
  GRADCHECK([](const TensorList& x) { return concat({x[0], x[1], x[0]}, 1); }, a, rand_f64({2, 4, 5}, 15));
  GRADCHECK(
      [](const TensorList& x) {
        auto parts = split(x[0], {1, 4}, -1);
        return mul(parts[0], sum(parts[1], {-1}, true));
      },
      a);
  // Reshape of a non-contiguous view copies, and still differentiates.
  GRADCHECK([](const TensorList& x) { return reshape(transpose(x[0], 1, 2), {2, 15}); }, a);
}

TEST_CASE("grad: where and masked_fill") {
  auto a = rand_f64({4, 6}, 16), b = rand_f64({6}, 17);
  Generator g(3);
  Tensor cond = gt(rand({4, 6}, g, {DType::f64}), full({}, 0.5, {DType::f64}));
  GRADCHECK([cond](const TensorList& x) { return where(cond, x[0], x[1]); }, a, b);
  Tensor mask = gt(rand({4, 1}, g, {DType::f64}), full({}, 0.5, {DType::f64}));
  GRADCHECK([mask](const TensorList& x) { return masked_fill(x[0], mask, -3.0); }, a);
}

TEST_CASE("grad: batched matmul, broadcasting and transposed operands") {
  GRADCHECK([](const TensorList& x) { return matmul(x[0], x[1]); }, rand_f64({3, 5}, 18), rand_f64({5, 7}, 19));
  GRADCHECK([](const TensorList& x) { return matmul(x[0], x[1]); }, rand_f64({2, 3, 4, 5}, 20),
            rand_f64({3, 5, 6}, 21));
  GRADCHECK([](const TensorList& x) { return matmul(x[0], transpose(x[1], -1, -2)); }, rand_f64({2, 3, 5}, 22),
            rand_f64({2, 7, 5}, 23));
  GRADCHECK([](const TensorList& x) { return matmul(transpose(x[0], -1, -2), x[1]); }, rand_f64({2, 5, 3}, 24),
            rand_f64({5, 7}, 25));
  GRADCHECK([](const TensorList& x) { return matmul(x[0], x[1]); }, rand_f64({5}, 26), rand_f64({3, 5, 2}, 27));
  GRADCHECK([](const TensorList& x) { return linear(x[0], x[1], x[2]); }, rand_f64({2, 3, 5}, 28),
            rand_f64({7, 5}, 29), rand_f64({7}, 30));
}

TEST_CASE("grad: softmax, log_softmax") {
  auto a = rand_f64({3, 4, 7}, 31, -3, 3);
  GRADCHECK([](const TensorList& x) { return softmax(x[0]); }, a);
  GRADCHECK([](const TensorList& x) { return log_softmax(x[0]); }, a);
  GRADCHECK([](const TensorList& x) { return softmax(transpose(x[0], 1, 2)); }, a);
  GRADCHECK([](const TensorList& x) { return causal_softmax(x[0]); }, rand_f64({2, 3, 6, 6}, 38, -3, 3));
}

TEST_CASE("grad: rms_norm and layer_norm") {
  auto x = rand_f64({3, 5, 11}, 32), w = rand_f64({11}, 33), b = rand_f64({11}, 34);
  GRADCHECK([](const TensorList& t) { return rms_norm(t[0], t[1]); }, x, w);
  GRADCHECK([](const TensorList& t) { return rms_norm(t[0], Tensor()); }, x);
  GRADCHECK([](const TensorList& t) { return layer_norm(t[0], t[1], t[2]); }, x, w, b);
}

TEST_CASE("grad: swiglu, and equal to silu(a) * b") {
  auto a = rand_f64({3, 5, 11}, 44, -4, 4), b = rand_f64({3, 5, 11}, 45);
  GRADCHECK([](const TensorList& t) { return swiglu(t[0], t[1]); }, a, b);
  GRADCHECK([](const TensorList& t) { return swiglu(transpose(t[0], 0, 2), t[1]); }, rand_f64({11, 5, 3}, 46), b);
  const auto y = swiglu(a, b).to_vector<double>(), ref = mul(silu(a), b).to_vector<double>();
  for (size_t i = 0; i < y.size(); ++i) CHECK(y[i] == doctest::Approx(ref[i]).epsilon(1e-14));
}

TEST_CASE("grad: rotary_embedding, on split heads (a permuted view) and on a contiguous input") {
  // Tables as Rope builds them (cos and sin of angles); the backward is the transposed map,
  // right for any table.
  std::vector<double> cv, sv;
  for (int i = 0; i < 21; ++i) cv.push_back(std::cos(0.37 * i * i - 1.1)), sv.push_back(std::sin(0.37 * i * i - 1.1));
  const Tensor c = from_vector(cv, {7, 3}), s = from_vector(sv, {7, 3});
  GRADCHECK([&](const TensorList& t) { return rotary_embedding(permute(t[0], {0, 2, 1, 3}), c, s); },
            rand_f64({2, 7, 4, 6}, 42));
  GRADCHECK([&](const TensorList& t) { return rotary_embedding(t[0], c, s); }, rand_f64({3, 7, 6}, 43));
  GRADCHECK([&](const TensorList& t) { return rotary_embedding(t[0], mul(c, 1.7), s); }, rand_f64({3, 7, 6}, 47));
  CHECK_THROWS_AS(rotary_embedding(rand_f64({3, 7, 6}, 48), rand_f64({7, 3}, 49), s), std::invalid_argument);
}

TEST_CASE("grad: embedding and cross_entropy with a loss mask") {
  auto w = rand_f64({9, 5}, 35);
  Tensor idx = from_vector<int64_t>({1, 8, 1, 0, 3, 3}, {2, 3}, {DType::i64});
  GRADCHECK([idx](const TensorList& t) { return embedding(t[0], idx); }, w);
  auto logits = rand_f64({2, 3, 7}, 36, -2, 2);
  Tensor tgt = from_vector<int32_t>({0, 6, 3, 2, 2, 5}, {2, 3}, {DType::i32});
  Tensor mask = from_vector<double>({1, 0, 1, 1, 0, 1}, {2, 3}, {DType::f64});
  GRADCHECK([tgt, mask](const TensorList& t) { return cross_entropy(t[0], tgt, mask); }, logits);
  GRADCHECK([tgt](const TensorList& t) { return cross_entropy(t[0], tgt); }, logits);
}

TEST_CASE("grad: dropout uses a fixed mask for a fixed generator state") {
  auto a = rand_f64({6, 7}, 37);
  GRADCHECK(
      [](const TensorList& x) {
        Generator g(99);  // same state each call, so the mask is the same
        return dropout(x[0], 0.3, g);
      },
      a);
}
