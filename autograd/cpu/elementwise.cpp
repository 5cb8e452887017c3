// CPU elementwise kernels: unary maps, broadcasting binary maps, where.
#include <cmath>

#include "autograd/cpu/parallel.h"
#include "autograd/kernels.h"

namespace mtalab::cpu {

namespace {

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
    case UnaryKind::pow_scalar: return std::pow(x, a);
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

template <typename T>
void unary_typed(UnaryKind k, const Tensor& xt, const Tensor& yt, double alpha) {
  const T* x = static_cast<const T*>(xt.raw());
  T* y = static_cast<T*>(yt.raw());
  const int64_t n = xt.numel();
  const T a = (T)alpha;
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
  const int64_t inner = ot.dim() ? ot.shape().back() : 1;
  const int64_t sa = at.dim() ? at.strides().back() : 0, sb = bt.dim() ? bt.strides().back() : 0;
  StridedIndex ia(at.shape(), at.strides()), ib(bt.shape(), bt.strides());
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
  MTALAB_DISPATCH_FLOAT(out.dtype(), "binary", [&] { binary_typed<scalar_t>(k, a, b, out); });
}

// cond, a, b expanded to out's shape.
void where(const Tensor& cond, const Tensor& a, const Tensor& b, const Tensor& out) {
  MTALAB_DISPATCH_FLOAT(out.dtype(), "where", [&] {
    using T = scalar_t;
    const T* c = static_cast<const T*>(cond.raw());
    const T* ap = static_cast<const T*>(a.raw());
    const T* bp = static_cast<const T*>(b.raw());
    T* o = static_cast<T*>(out.raw());
    const int64_t inner = out.dim() ? out.shape().back() : 1;
    const int64_t rows = inner ? out.numel() / inner : 0;
    const int64_t sc = cond.dim() ? cond.strides().back() : 0, sa = a.dim() ? a.strides().back() : 0,
                  sb = b.dim() ? b.strides().back() : 0;
    StridedIndex ic(cond.shape(), cond.strides()), ia(a.shape(), a.strides()), ib(b.shape(), b.strides());
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
KernelTable<UnaryFn> unary_kernel("unary", cpu::unary);
KernelTable<BinaryFn> binary_kernel("binary", cpu::binary);
KernelTable<WhereFn> where_kernel("where", cpu::where);
}  // namespace mtalab
