// CPU elementwise kernels: unary maps, broadcasting binary maps, where.
#include <cmath>
#include <limits>
#include <optional>

#include "autograd/cpu/parallel.h"
#include "autograd/cpu/simd.h"
#include "autograd/bf16_staging.h"
#include "autograd/kernels.h"

namespace mtalab::cpu {

namespace {
namespace simd {

// Phi(x) = (1 + erf(x / sqrt 2)) / 2, the standard normal CDF, and e = exp(-x^2 / 2).
// For a = |x| / sqrt 2 and t = 1 / (1 + a/2), erfc(a) = t Q(t) exp(-a^2), Q a degree-8
// polynomial fitted to relative error 5e-8 for a in [0, 10.6] (beyond it erfc(a)
// underflows, and Q(0) is still the right limit); Phi(x) = erfc(a)/2 for x < 0 and
// 1 - erfc(a)/2 above. Keeping erfc's relative accuracy is what keeps gelu right for
// negative x, where 1 + erf(x) would cancel; the exp is shared with gelu's derivative.
template <class V>
MTALAB_VINLINE V normal_cdf(const V& x, V& e) {
  using I = decltype(V{} < V{});
  e = exp<V, true>(x * x * -0.5f);
  const V a = (V)((I)x & 0x7fffffff) * 0.70710678118654752440f;  // |x| / sqrt 2
  const V t = 1.0f / (a * 0.5f + 1.0f);
  const V t2 = t * t, t4 = t2 * t2, t8 = t4 * t4;
  // Q / 2, by Estrin's scheme.
  const V q = ((t * 1.412317439e-01f + 1.410409187e-01f) + (t * 1.028336985e-01f + 1.212027171e-01f) * t2) +
              ((t * 1.448293336e-01f - 1.707835723e-02f) + (t * 1.449807864e-01f - 2.489322108e-01f) * t2) * t4 +
              t8 * -3.010865562e-02f;
  const V c = t * q * e;  // erfc(a) / 2
  return x >= 0 ? 1.0f - c : c;
}

enum class Map { exp, sigmoid, silu, silu_grad, gelu, gelu_grad };

template <Map K, class V>
MTALAB_VINLINE V map_value(const V& x) {
  if constexpr (K == Map::exp) return exp(x);
  if constexpr (K == Map::sigmoid) return 1.0f / (1.0f + exp(-x));
  if constexpr (K == Map::silu) return x / (1.0f + exp(-x));
  if constexpr (K == Map::silu_grad) {
    const V s = 1.0f / (1.0f + exp(-x));
    return s * (1.0f + x * (1.0f - s));
  }
  if constexpr (K == Map::gelu) {
    V e;
    return x * normal_cdf(x, e);
  }
  if constexpr (K == Map::gelu_grad) {  // Phi(x) + x phi(x)
    V e;
    const V cdf = normal_cdf(x, e);
    return cdf + x * e * 0.39894228040143267794f;
  }
  return x;
}
template <Map K, int L>
MTALAB_VINLINE void map_row(const float* x, float* y, int64_t n) {
  using V = typename Lanes<L>::F;
  int64_t i = 0;
  for (; i + L <= n; i += L) store(y + i, map_value<K>(load<V>(x + i)));
  if (i < n) store_part(y + i, map_value<K>(load_part<V>(x + i, n - i, 0.0f)), n - i);
}
template <int L>
MTALAB_VINLINE void map_impl(Map k, const float* x, float* y, int64_t n) {
  switch (k) {
    case Map::exp: return map_row<Map::exp, L>(x, y, n);
    case Map::sigmoid: return map_row<Map::sigmoid, L>(x, y, n);
    case Map::silu: return map_row<Map::silu, L>(x, y, n);
    case Map::silu_grad: return map_row<Map::silu_grad, L>(x, y, n);
    case Map::gelu: return map_row<Map::gelu, L>(x, y, n);
    case Map::gelu_grad: return map_row<Map::gelu_grad, L>(x, y, n);
  }
}
// map(k, x, y, n): y[i] = k(x[i]) for float32.
MTALAB_SIMD_ENTRY(map, (Map k, const float* x, float* y, int64_t n), (k, x, y, n))

}  // namespace simd

template <typename T>
inline T unary_value(UnaryKind k, T x, T a) {
  constexpr T kInvSqrt2 = (T)0.70710678118654752440;
  constexpr T kInvSqrt2Pi = (T)0.39894228040143267794;
  switch (k) {
    case UnaryKind::neg: return -x;
    case UnaryKind::exp: return std::exp(x);
    case UnaryKind::log: return std::log(x);
    case UnaryKind::sqrt: return std::sqrt(x);
    case UnaryKind::rsqrt: return T(1) / std::sqrt(x);
    case UnaryKind::abs: return std::abs(x);
    case UnaryKind::sign: return (T)((x > 0) - (x < 0));
    case UnaryKind::tanh: return std::tanh(x);
    case UnaryKind::sigmoid: return T(1) / (T(1) + std::exp(-x));
    case UnaryKind::relu: return x > 0 ? x : T(0);
    case UnaryKind::silu: return x / (T(1) + std::exp(-x));
    case UnaryKind::gelu: return T(0.5) * x * (T(1) + std::erf(x * kInvSqrt2));
    case UnaryKind::step: return x > 0 ? T(1) : T(0);
    case UnaryKind::silu_grad: {
      const T s = T(1) / (T(1) + std::exp(-x));
      return s * (T(1) + x * (T(1) - s));
    }
    case UnaryKind::gelu_grad:
      return T(0.5) * (T(1) + std::erf(x * kInvSqrt2)) + x * kInvSqrt2Pi * std::exp(T(-0.5) * x * x);
    case UnaryKind::pow_scalar: return a == T(2) ? x * x : a == T(1) ? x : std::pow(x, a);
    case UnaryKind::add_scalar: return x + a;
    case UnaryKind::mul_scalar: return x * a;
    case UnaryKind::rsub_scalar: return a - x;
    case UnaryKind::rdiv_scalar: return a / x;
  }
  return x;
}

template <typename T, UnaryKind K>
void unary_loop(const T* x, T* y, int64_t n, T a) {
  parallel_for(n, 1 << 14, [&](int64_t b, int64_t e) {
    for (int64_t i = b; i < e; ++i) y[i] = unary_value<T>(K, x[i], a);
  });
}

// The float32 kinds with a hand-vectorised kernel: exp and the maps built on it. The
// others keep the scalar loop (plain arithmetic the compiler vectorises as written;
// log, sqrt, tanh and pow through libm).
std::optional<simd::Map> simd_map(UnaryKind k) {
  switch (k) {
    case UnaryKind::exp: return simd::Map::exp;
    case UnaryKind::sigmoid: return simd::Map::sigmoid;
    case UnaryKind::silu: return simd::Map::silu;
    case UnaryKind::silu_grad: return simd::Map::silu_grad;
    case UnaryKind::gelu: return simd::Map::gelu;
    case UnaryKind::gelu_grad: return simd::Map::gelu_grad;
    default: return std::nullopt;
  }
}

template <typename T>
void unary_typed(UnaryKind k, const Tensor& xt, const Tensor& yt, double alpha) {
  const T* x = static_cast<const T*>(xt.raw());
  T* y = static_cast<T*>(yt.raw());
  const int64_t n = xt.numel();
  const T a = (T)alpha;
  if constexpr (std::is_same_v<T, float>) {
    if (const auto m = simd_map(k)) {
      parallel_for(n, 1 << 14, [&](int64_t b, int64_t e) { simd::map(*m, x + b, y + b, e - b); });
      return;
    }
  }
  // One instantiation per kind keeps the switch out of the inner loop.
  switch (k) {
#define MTALAB_UNARY_CASE(K) \
  case UnaryKind::K: return unary_loop<T, UnaryKind::K>(x, y, n, a);
    MTALAB_UNARY_CASE(neg) MTALAB_UNARY_CASE(exp) MTALAB_UNARY_CASE(log) MTALAB_UNARY_CASE(sqrt)
    MTALAB_UNARY_CASE(rsqrt) MTALAB_UNARY_CASE(abs) MTALAB_UNARY_CASE(sign) MTALAB_UNARY_CASE(tanh)
    MTALAB_UNARY_CASE(sigmoid) MTALAB_UNARY_CASE(relu) MTALAB_UNARY_CASE(silu) MTALAB_UNARY_CASE(gelu)
    MTALAB_UNARY_CASE(step) MTALAB_UNARY_CASE(silu_grad) MTALAB_UNARY_CASE(gelu_grad)
    MTALAB_UNARY_CASE(pow_scalar) MTALAB_UNARY_CASE(add_scalar) MTALAB_UNARY_CASE(mul_scalar)
    MTALAB_UNARY_CASE(rsub_scalar) MTALAB_UNARY_CASE(rdiv_scalar)
#undef MTALAB_UNARY_CASE
  }
}

void unary(UnaryKind k, const Tensor& x, const Tensor& y, double alpha) {
  if (x.dtype() == DType::bf16) {
    Bf16Staging s;
    unary(k, s.in(x), s.out(y), alpha);
    return s.finish();
  }
  if (!x.is_contiguous()) throw std::logic_error("unary kernel: input must be contiguous");
  MTALAB_DISPATCH_FLOAT(x.dtype(), "unary", [&] { unary_typed<scalar_t>(k, x, y, alpha); });
}

template <typename T, BinaryKind K>
inline T binary_value(T a, T b) {
  if constexpr (K == BinaryKind::add) return a + b;
  if constexpr (K == BinaryKind::sub) return a - b;
  if constexpr (K == BinaryKind::mul) return a * b;
  if constexpr (K == BinaryKind::div) return a / b;
  if constexpr (K == BinaryKind::pow) return std::pow(a, b);
  if constexpr (K == BinaryKind::maximum) return a > b ? a : b;
  if constexpr (K == BinaryKind::minimum) return a < b ? a : b;
  if constexpr (K == BinaryKind::eq) return a == b ? T(1) : T(0);
  if constexpr (K == BinaryKind::gt) return a > b ? T(1) : T(0);
  if constexpr (K == BinaryKind::ge) return a >= b ? T(1) : T(0);
  if constexpr (K == BinaryKind::lt) return a < b ? T(1) : T(0);
  return a;
}

// a and b are already expanded (stride 0 on broadcast dims) to out's shape.
template <typename T, BinaryKind K>
void binary_loop(const Tensor& at, const Tensor& bt, const Tensor& ot) {
  const T* a = static_cast<const T*>(at.raw());
  const T* b = static_cast<const T*>(bt.raw());
  T* o = static_cast<T*>(ot.raw());
  const int64_t n = ot.numel();
  if (at.is_contiguous() && bt.is_contiguous()) {
    parallel_for(n, 1 << 14, [&](int64_t s, int64_t e) {
      for (int64_t i = s; i < e; ++i) o[i] = binary_value<T, K>(a[i], b[i]);
    });
    return;
  }
  const Coalesced it = coalesce(ot.shape(), {at.strides(), bt.strides()});
  const int64_t inner = it.shape.back();
  const int64_t sa = it.strides[0].back(), sb = it.strides[1].back();
  StridedIndex ia(it.shape, it.strides[0]), ib(it.shape, it.strides[1]);
  const int64_t rows = inner ? n / inner : 0;
  parallel_for(rows, std::max<int64_t>(1, (1 << 14) / std::max<int64_t>(inner, 1)), [&](int64_t s, int64_t e) {
    for (int64_t r = s; r < e; ++r) {
      const T* ap = a + ia.row_offset(r);
      const T* bp = b + ib.row_offset(r);
      T* op = o + r * inner;
      if (sa == 1 && sb == 0) {
        const T bv = *bp;
        for (int64_t j = 0; j < inner; ++j) op[j] = binary_value<T, K>(ap[j], bv);
      } else if (sa == 0 && sb == 1) {
        const T av = *ap;
        for (int64_t j = 0; j < inner; ++j) op[j] = binary_value<T, K>(av, bp[j]);
      } else {
        for (int64_t j = 0; j < inner; ++j) op[j] = binary_value<T, K>(ap[j * sa], bp[j * sb]);
      }
    }
  });
}

template <typename T>
void binary_typed(BinaryKind k, const Tensor& a, const Tensor& b, const Tensor& out) {
  switch (k) {
#define MTALAB_BINARY_CASE(K) \
  case BinaryKind::K: return binary_loop<T, BinaryKind::K>(a, b, out);
    MTALAB_BINARY_CASE(add) MTALAB_BINARY_CASE(sub) MTALAB_BINARY_CASE(mul) MTALAB_BINARY_CASE(div)
    MTALAB_BINARY_CASE(pow) MTALAB_BINARY_CASE(maximum) MTALAB_BINARY_CASE(minimum)
    MTALAB_BINARY_CASE(eq) MTALAB_BINARY_CASE(gt) MTALAB_BINARY_CASE(ge) MTALAB_BINARY_CASE(lt)
#undef MTALAB_BINARY_CASE
  }
}
void binary(BinaryKind k, const Tensor& a, const Tensor& b, const Tensor& out) {
  if (out.dtype() == DType::bf16) {
    Bf16Staging s;
    binary(k, s.in(a), s.in(b), s.out(out));
    return s.finish();
  }
  MTALAB_DISPATCH_FLOAT(out.dtype(), "binary", [&] { binary_typed<scalar_t>(k, a, b, out); });
}

// cond, a, b expanded to out's shape.
void where(const Tensor& cond, const Tensor& a, const Tensor& b, const Tensor& out) {
  if (out.dtype() == DType::bf16) {
    Bf16Staging s;
    where(s.in(cond), s.in(a), s.in(b), s.out(out));
    return s.finish();
  }
  MTALAB_DISPATCH_FLOAT(out.dtype(), "where", [&] {
    using T = scalar_t;
    const T* c = static_cast<const T*>(cond.raw());
    const T* ap = static_cast<const T*>(a.raw());
    const T* bp = static_cast<const T*>(b.raw());
    T* o = static_cast<T*>(out.raw());
    const Coalesced it = coalesce(out.shape(), {cond.strides(), a.strides(), b.strides()});
    const int64_t inner = it.shape.back();
    const int64_t rows = inner ? out.numel() / inner : 0;
    const int64_t sc = it.strides[0].back(), sa = it.strides[1].back(), sb = it.strides[2].back();
    StridedIndex ic(it.shape, it.strides[0]), ia(it.shape, it.strides[1]), ib(it.shape, it.strides[2]);
    parallel_for(rows, std::max<int64_t>(1, 4096 / std::max<int64_t>(inner, 1)), [&](int64_t s, int64_t e) {
      for (int64_t r = s; r < e; ++r) {
        const T* cr = c + ic.row_offset(r);
        const T* ar = ap + ia.row_offset(r);
        const T* br = bp + ib.row_offset(r);
        for (int64_t j = 0; j < inner; ++j) o[r * inner + j] = cr[j * sc] != T(0) ? ar[j * sa] : br[j * sb];
      }
    });
  });
}

}  // namespace
}  // namespace mtalab::cpu

namespace mtalab {
MTALAB_REGISTER_KERNEL(unary_kernel, cpu, cpu::unary);
MTALAB_REGISTER_KERNEL(binary_kernel, cpu, cpu::binary);
MTALAB_REGISTER_KERNEL(where_kernel, cpu, cpu::where);
}  // namespace mtalab
