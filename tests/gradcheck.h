// Gradient checking by central finite differences in float64.
//
// The function's output y (any shape) is reduced to L = sum(y * R) with a fixed random
// R, so every element of the Jacobian is exercised. For each input element,
//   dL/dx ≈ (L(x + eps) - L(x - eps)) / (2 eps),
// compared with backward's gradient: |num - ana| <= atol + rtol * |num| must hold.
// With eps = 1e-6 in float64 the truncation error is O(eps²) ≈ 1e-12 and rounding
// ≈ 1e-16/eps ≈ 1e-10, so atol = 1e-6, rtol = 1e-5 leave a wide margin for smooth ops
// while a wrong backward (off by a factor, a sign or a transpose) fails by O(1).
#pragma once
#include <doctest/doctest.h>

#include <cmath>
#include <functional>
#include <sstream>

#include "autograd/ops.h"

namespace mtalab::testing {

struct GradCheckOptions {
  double eps = 1e-6;
  double atol = 1e-6;
  double rtol = 1e-5;
};

inline Tensor rand_f64(const Shape& s, uint64_t seed, double lo = -1, double hi = 1) {
  Generator g(seed);
  return uniform(s, lo, hi, g, {DType::f64}).set_requires_grad(true);
}

// Returns the largest violation ratio |num-ana| / (atol + rtol|num|) (must be <= 1).
inline double gradcheck(const std::function<Tensor(const TensorList&)>& f, TensorList inputs,
                        GradCheckOptions o = {}) {
  for (auto& x : inputs) {
    REQUIRE(x.dtype() == DType::f64);
    x.zero_grad();
  }
  Tensor y = f(inputs);
  Generator g(12345);
  const Tensor R = uniform(y.shape(), 0.5, 1.5, g, {DType::f64});
  auto loss = [&](const TensorList& in) { return sum(mul(f(in), R)); };
  loss(inputs).backward();
  double worst = 0;
  for (size_t k = 0; k < inputs.size(); ++k) {
    Tensor& x = inputs[k];
    if (!x.requires_grad()) continue;
    REQUIRE_MESSAGE(x.grad().defined(), "input " << k << " got no gradient");
    const std::vector<double> ana = x.grad().to_vector<double>();
    REQUIRE(x.is_contiguous());
    double* p = x.data<double>();
    for (int64_t i = 0; i < x.numel(); ++i) {
      const double orig = p[i];
      double lp, lm;
      {
        NoGradGuard ng;
        p[i] = orig + o.eps;
        lp = loss(inputs).item();
        p[i] = orig - o.eps;
        lm = loss(inputs).item();
        p[i] = orig;
      }
      const double num = (lp - lm) / (2 * o.eps);
      const double ratio = std::abs(num - ana[i]) / (o.atol + o.rtol * std::abs(num));
      if (ratio > worst) worst = ratio;
      if (ratio > 1)
        FAIL_CHECK("input " << k << " " << shape_str(x.shape()) << " element " << i << ": numeric " << num
                            << " vs backward " << ana[i]);
    }
  }
  return worst;
}

}  // namespace mtalab::testing
