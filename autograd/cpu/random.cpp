// Counter-based random fills (Philox4x32-10, Salmon et al. 2011). Element i of a draw
// reads lane i%4 of block counter+i/4, so any split of the work over threads gives the
// same values.
#include <cmath>

#include "autograd/cpu/parallel.h"
#include "autograd/kernels.h"
#include "autograd/random.h"

namespace mtalab {

void philox4x32(uint64_t seed, uint64_t counter, uint32_t out[4]) {
  uint32_t c0 = (uint32_t)counter, c1 = (uint32_t)(counter >> 32), c2 = 0, c3 = 0;
  uint32_t k0 = (uint32_t)seed, k1 = (uint32_t)(seed >> 32);
  for (int r = 0; r < 10; ++r) {
    const uint64_t p0 = (uint64_t)0xD2511F53u * c0, p1 = (uint64_t)0xCD9E8D57u * c2;
    const uint32_t n0 = (uint32_t)(p1 >> 32) ^ c1 ^ k0, n2 = (uint32_t)(p0 >> 32) ^ c3 ^ k1;
    c1 = (uint32_t)p1;
    c3 = (uint32_t)p0;
    c0 = n0;
    c2 = n2;
    k0 += 0x9E3779B9u;
    k1 += 0xBB67AE85u;
  }
  out[0] = c0;
  out[1] = c1;
  out[2] = c2;
  out[3] = c3;
}

uint64_t Generator::next_u64() {
  uint32_t o[4];
  philox4x32(st_.seed, st_.counter++, o);
  return ((uint64_t)o[0] << 32) | o[1];
}

namespace cpu {
namespace {

// Inverse error function (Giles 2010, "Approximating the erfinv function"), refined by
// two Newton steps so it is accurate to double precision.
double erfinv(double x) {
  double w = -std::log((1.0 - x) * (1.0 + x)), p;
  if (w < 5.0) {
    w -= 2.5;
    p = 2.81022636e-08;
    p = 3.43273939e-07 + p * w; p = -3.5233877e-06 + p * w; p = -4.39150654e-06 + p * w;
    p = 0.00021858087 + p * w;  p = -0.00125372503 + p * w; p = -0.00417768164 + p * w;
    p = 0.246640727 + p * w;    p = 1.50140941 + p * w;
  } else {
    w = std::sqrt(w) - 3.0;
    p = -0.000200214257;
    p = 0.000100950558 + p * w; p = 0.00134934322 + p * w;  p = -0.00367342844 + p * w;
    p = 0.00573950773 + p * w;  p = -0.0076224613 + p * w;  p = 0.00943887047 + p * w;
    p = 1.00167406 + p * w;     p = 2.83297682 + p * w;
  }
  double y = p * x;
  for (int i = 0; i < 2; ++i) y -= (std::erf(y) - x) / (2.0 / std::sqrt(M_PI) * std::exp(-y * y));
  return y;
}

inline double u01(uint32_t v) { return (v + 0.5) * (1.0 / 4294967296.0); }  // in (0, 1)

template <typename T>
void random_typed(RandomKind k, const Tensor& out, PhiloxState st, double a, double b) {
  T* o = static_cast<T*>(out.raw());
  const int64_t n = out.numel(), blocks = (n + 3) / 4;
  const double lo = k == RandomKind::trunc_normal ? std::erf(-b / std::sqrt(2.0)) : 0.0;
  const double hi = k == RandomKind::trunc_normal ? std::erf(b / std::sqrt(2.0)) : 0.0;
  parallel_for(blocks, 1024, [&](int64_t s, int64_t e) {
    for (int64_t blk = s; blk < e; ++blk) {
      uint32_t r[4];
      philox4x32(st.seed, st.counter + blk, r);
      double v[4];
      if (k == RandomKind::uniform) {
        for (int l = 0; l < 4; ++l) v[l] = a + (b - a) * (r[l] * (1.0 / 4294967296.0));
      } else if (k == RandomKind::normal) {
        for (int l = 0; l < 4; l += 2) {  // Box-Muller on lane pairs
          const double rad = std::sqrt(-2.0 * std::log(u01(r[l]))), th = 2.0 * M_PI * u01(r[l + 1]);
          v[l] = a + b * rad * std::cos(th);
          v[l + 1] = a + b * rad * std::sin(th);
        }
      } else {  // truncated normal by inverse CDF: std a, bound b (in units of std)
        for (int l = 0; l < 4; ++l) v[l] = a * std::sqrt(2.0) * erfinv(lo + (hi - lo) * u01(r[l]));
      }
      for (int l = 0; l < 4 && blk * 4 + l < n; ++l) o[blk * 4 + l] = (T)v[l];
    }
  });
}

void random_fill(RandomKind k, const Tensor& out, PhiloxState st, double a, double b) {
  MTALAB_DISPATCH_FLOAT(out.dtype(), "random", [&] { random_typed<scalar_t>(k, out, st, a, b); });
}

}  // namespace
}  // namespace cpu

KernelTable<RandomFn> random_kernel("random", cpu::random_fill);

namespace {
Tensor draw(RandomKind k, const Shape& s, double a, double b, Generator& g, TensorOptions o) {
  Tensor t = Tensor::empty(s, {o.dtype, o.device});
  random_kernel(o.device)(k, t, g.take(t.numel()), a, b);
  if (o.requires_grad) t.set_requires_grad(true);
  return t;
}
}  // namespace

Tensor rand(const Shape& s, Generator& g, TensorOptions o) { return draw(RandomKind::uniform, s, 0, 1, g, o); }
Tensor uniform(const Shape& s, double lo, double hi, Generator& g, TensorOptions o) {
  return draw(RandomKind::uniform, s, lo, hi, g, o);
}
Tensor randn(const Shape& s, Generator& g, TensorOptions o) { return draw(RandomKind::normal, s, 0, 1, g, o); }
Tensor normal(const Shape& s, double mean, double std, Generator& g, TensorOptions o) {
  return draw(RandomKind::normal, s, mean, std, g, o);
}
Tensor trunc_normal(const Shape& s, double std, double bound, Generator& g, TensorOptions o) {
  return draw(RandomKind::trunc_normal, s, std, bound, g, o);
}

}  // namespace mtalab
