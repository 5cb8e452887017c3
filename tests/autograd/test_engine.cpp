// The tape: accumulation, shared subexpressions, no-grad, detach, freeing, errors.
#include <doctest/doctest.h>

#include <cmath>

#include "autograd/grad_ready_hook.h"
#include "autograd/ops.h"

using namespace mtalab;
using doctest::Approx;

// cube(x) = x^3, written as a user would write a new op.
struct CubeOp {
  static constexpr const char* name = "cube";
  static Tensor forward(Context& ctx, const Tensor& x) {
    ctx.save({x});
    return mul(mul(x, x), x);
  }
  static TensorList backward(Context& ctx, const Tensor& g) {
    return {mul(g, mul(square(ctx.saved[0]), 3.0))};
  }
};

// An op whose backward returns a gradient of the wrong shape.
struct BadOp {
  static constexpr const char* name = "bad";
  static Tensor forward(Context&, const Tensor& x) { return mul(x, 1.0); }
  static TensorList backward(Context&, const Tensor& g) { return {sum(g, {0}, true)}; }
};

TEST_CASE("engine: gradients accumulate over two backward calls and zero_grad clears") {
  Tensor x = from_vector(std::vector<double>{1, 2, 3}, {3}).set_requires_grad();
  sum(mul(x, x)).backward();
  CHECK(x.grad().to_vector<double>() == std::vector<double>{2, 4, 6});
  sum(mul(x, 3.0)).backward();
  CHECK(x.grad().to_vector<double>() == std::vector<double>{5, 7, 9});
  x.zero_grad();
  CHECK_FALSE(x.grad().defined());
}

TEST_CASE("engine: a diamond graph sums both paths") {
  // y = a*b + a*c with b = c = exp(x): dy/dx = 2 a exp(x), dy/da = 2 exp(x)
  Tensor x = from_vector(std::vector<double>{0.5}, {1}).set_requires_grad();
  Tensor a = from_vector(std::vector<double>{3}, {1}).set_requires_grad();
  Tensor e = exp(x);
  Tensor y = sum(add(mul(a, e), mul(e, a)));
  y.backward();
  CHECK(x.grad().item() == Approx(2 * 3 * std::exp(0.5)));
  CHECK(a.grad().item() == Approx(2 * std::exp(0.5)));
}

TEST_CASE("engine: explicit output gradient for non-scalar outputs") {
  Tensor x = from_vector(std::vector<double>{1, 2}, {2}).set_requires_grad();
  Tensor y = mul(x, x);
  CHECK_THROWS_WITH_AS(y.backward(), doctest::Contains("not a scalar"), std::invalid_argument);
  y.backward(from_vector(std::vector<double>{1, 10}, {2}));
  CHECK(x.grad().to_vector<double>() == std::vector<double>{2, 40});
}

TEST_CASE("engine: no-grad records nothing, detach cuts the graph") {
  Tensor x = ones({3}, {DType::f64}).set_requires_grad();
  {
    NoGradGuard ng;
    Tensor y = mul(x, 2.0);
    CHECK_FALSE(y.requires_grad());
    CHECK_FALSE(static_cast<bool>(y.grad_fn()));
  }
  CHECK(mul(x, 2.0).requires_grad());
  Tensor d = mul(x, 2.0).detach();
  CHECK_FALSE(d.requires_grad());
  Tensor z = sum(mul(x, d));
  z.backward();
  CHECK(x.grad().to_vector<double>() == std::vector<double>{2, 2, 2});
  CHECK_THROWS_AS(sum(d).backward(), std::logic_error);
}

TEST_CASE("engine: the graph and its saved tensors are freed") {
  Generator g(1);
  Tensor w = randn({64, 64}, g).set_requires_grad();
  Tensor x = randn({32, 64}, g);
  const MemoryStats before = memory_stats();
  {
    Tensor h = tanh(matmul(x, w));
    Tensor loss = mean(mul(softmax(h), h));
    // The forward holds intermediates alive...
    CHECK(memory_stats().live_bytes > before.live_bytes);
    loss.backward();
  }
  // ...after backward and dropping the outputs only the new .grad remains.
  CHECK(memory_stats().live_bytes == before.live_bytes + 64 * 64 * 4);
  w.zero_grad();
  CHECK(memory_stats().live_bytes == before.live_bytes);
  CHECK(memory_stats().live_storages == before.live_storages);
}

TEST_CASE("engine: saved tensors are released by backward even while the output lives") {
  Generator g(2);
  Tensor w = randn({128, 128}, g).set_requires_grad();
  Tensor loss = sum(exp(tanh(w)));
  const int64_t held = memory_stats().live_bytes;
  loss.backward();
  // tanh and exp outputs (2 x 64 KiB) released; w.grad (64 KiB) added.
  CHECK(memory_stats().live_bytes <= held - 128 * 128 * 4);
}

TEST_CASE("engine: a custom op is one forward and one backward") {
  Tensor x = from_vector(std::vector<double>{1, -2}, {2}).set_requires_grad();
  Tensor y = Function<CubeOp>::apply(x);
  CHECK(std::string(y.grad_fn()->name()) == "cube");
  sum(y).backward();
  CHECK(x.grad().to_vector<double>() == std::vector<double>{3, 12});
}

TEST_CASE("engine: a backward returning a wrongly shaped gradient is caught") {
  Tensor x = ones({3, 2}, {DType::f64}).set_requires_grad();
  CHECK_THROWS_WITH_AS(sum(Function<BadOp>::apply(x)).backward(), doctest::Contains("backward of 'bad'"),
                       std::logic_error);
}

TEST_CASE("engine: float32 and float64 graphs, gradients keep the leaf's dtype") {
  Tensor x = ones({2}, {DType::f32}).set_requires_grad();
  sum(mul(to_dtype(x, DType::f64), 2.0)).backward();
  CHECK(x.grad().dtype() == DType::f32);
  CHECK(x.grad().to_vector<float>() == std::vector<float>{2, 2});
}

TEST_CASE("end to end: an MLP learns XOR with plain SGD") {
  Generator g(42);
  Tensor X = from_vector(std::vector<float>{0, 0, 0, 1, 1, 0, 1, 1}, {4, 2});
  Tensor Y = from_vector<int32_t>({0, 1, 1, 0}, {4}, {DType::i32});
  Tensor w1 = mul(randn({16, 2}, g), 1.0).detach().set_requires_grad();
  Tensor b1 = zeros({16}, {DType::f32, kCPU, true});
  Tensor w2 = mul(randn({2, 16}, g), 0.5).detach().set_requires_grad();
  Tensor b2 = zeros({2}, {DType::f32, kCPU, true});
  double first = 0, last = 0;
  for (int step = 0; step < 500; ++step) {
    Tensor loss = cross_entropy(linear(tanh(linear(X, w1, b1)), w2, b2), Y);
    if (step == 0) first = loss.item();
    last = loss.item();
    loss.backward();
    NoGradGuard ng;
    for (Tensor* p : {&w1, &b1, &w2, &b2}) {
      copy_(*p, sub(*p, mul(p->grad(), 0.5)));
      p->zero_grad();
    }
  }
  CHECK(first > 0.5);
  CHECK(last < 0.02);
}

// GradReadyHook (autograd/grad_ready_hook.h), what the overlapped gradient sum relies on: a
// leaf is reported once, only after every node feeding it has run, with its final gradient;
// a leaf the sweep never reaches is not reported.
TEST_CASE("engine: the grad-ready hook reports each reached leaf once, with its final gradient") {
  Tensor a = from_vector(std::vector<double>{1, 2, 3}, {3}).set_requires_grad();
  Tensor b = from_vector(std::vector<double>{4, 5, 6}, {3}).set_requires_grad();
  Tensor unused = from_vector(std::vector<double>{7}, {1}).set_requires_grad();
  // a feeds three nodes (mul(a, b), mul(exp(h), a), mul(a, a)): reported after the last of them.
  Tensor h = mul(a, b);
  Tensor loss = sum(add(mul(exp(h), a), mul(a, a)));
  std::vector<std::pair<const TensorImpl*, std::vector<double>>> seen;
  {
    GradReadyHook hook([&](const TensorImpl* leaf) {
      const Tensor& t = leaf == &a.impl() ? a : b;
      seen.push_back({leaf, t.grad().to_vector<double>()});
    });
    loss.backward();
  }
  REQUIRE(seen.size() == 2);
  CHECK(seen[0].first != seen[1].first);
  for (auto& [leaf, g] : seen) {
    const Tensor& t = leaf == &a.impl() ? a : b;
    CHECK(g == t.grad().to_vector<double>());  // final when reported
  }
  CHECK(!unused.grad().defined());
  // No hook: nothing is called, and a second hook replaced by a nested one is restored.
  int outer = 0, inner = 0;
  GradReadyHook o([&](const TensorImpl*) { ++outer; });
  {
    GradReadyHook i([&](const TensorImpl*) { ++inner; });
    sum(mul(a, b)).backward();
  }
  sum(mul(a, b)).backward();
  CHECK(inner == 2);
  CHECK(outer == 2);
}
