// CUDA elementwise kernels: unary maps (contiguous), broadcasting binary maps and where
// (inputs strided, stride 0 on broadcast dims), one thread per element in grid-stride
// loops. The formulas are the CPU's (autograd/cpu/elementwise.cpp), term for term.
#include "cuda/common.cuh"

namespace mtalab::cuda {
namespace {

template <typename T>
__device__ __forceinline__ T sigmoid_of(T x) {
  return T(1) / (T(1) + dev::exp(-x));
}

template <typename T, UnaryKind K>
__device__ __forceinline__ T unary_value(T x, T a) {
  constexpr T kInvSqrt2 = (T)0.70710678118654752440;
  constexpr T kInvSqrt2Pi = (T)0.39894228040143267794;
  if constexpr (K == UnaryKind::neg) return -x;
  if constexpr (K == UnaryKind::exp) return dev::exp(x);
  if constexpr (K == UnaryKind::log) return dev::log(x);
  if constexpr (K == UnaryKind::sqrt) return dev::sqrt(x);
  if constexpr (K == UnaryKind::rsqrt) return T(1) / dev::sqrt(x);
  if constexpr (K == UnaryKind::abs) return dev::abs(x);
  if constexpr (K == UnaryKind::sign) return (T)((x > 0) - (x < 0));
  if constexpr (K == UnaryKind::tanh) return dev::tanh(x);
  if constexpr (K == UnaryKind::sigmoid) return sigmoid_of(x);
  if constexpr (K == UnaryKind::relu) return x > 0 ? x : T(0);
  if constexpr (K == UnaryKind::silu) return x / (T(1) + dev::exp(-x));
  if constexpr (K == UnaryKind::gelu) return T(0.5) * x * (T(1) + dev::erf(x * kInvSqrt2));
  if constexpr (K == UnaryKind::step) return x > 0 ? T(1) : T(0);
  if constexpr (K == UnaryKind::silu_grad) {
    const T s = sigmoid_of(x);
    return s * (T(1) + x * (T(1) - s));
  }
  if constexpr (K == UnaryKind::gelu_grad)
    return T(0.5) * (T(1) + dev::erf(x * kInvSqrt2)) + x * kInvSqrt2Pi * dev::exp(T(-0.5) * x * x);
  if constexpr (K == UnaryKind::pow_scalar) return a == T(2) ? x * x : a == T(1) ? x : dev::pow(x, a);
  if constexpr (K == UnaryKind::add_scalar) return x + a;
  if constexpr (K == UnaryKind::mul_scalar) return x * a;
  if constexpr (K == UnaryKind::rsub_scalar) return a - x;
  if constexpr (K == UnaryKind::rdiv_scalar) return a / x;
  return x;
}

// T is the storage type; values are computed in acc_t<T> (float for bfloat16) and
// rounded once when stored.
template <typename T, UnaryKind K>
__global__ void unary_kernel_t(const T* x, T* y, int64_t n, acc_t<T> a) {
  for (int64_t i = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; i < n; i += (int64_t)gridDim.x * blockDim.x)
    y[i] = T(unary_value<acc_t<T>, K>((acc_t<T>)x[i], a));
}

template <typename T, UnaryKind K>
void unary_run(const Tensor& x, const Tensor& y, double alpha) {
  const int64_t n = x.numel();
  launch("unary", unary_kernel_t<T, K>, grid_for(n), kThreads, 0, ptr<const T>(x), ptr<T>(y), n, (acc_t<T>)alpha);
}

template <typename T>
void unary_typed(UnaryKind k, const Tensor& x, const Tensor& y, double alpha) {
  switch (k) {
#define MTALAB_UNARY_CASE(K) \
  case UnaryKind::K: return unary_run<T, UnaryKind::K>(x, y, alpha);
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
  MTALAB_DISPATCH_FLOATING(x.dtype(), "unary", [&] { unary_typed<scalar_t>(k, x, y, alpha); });
}

template <typename T, BinaryKind K>
__device__ __forceinline__ T binary_value(T a, T b) {
  if constexpr (K == BinaryKind::add) return a + b;
  if constexpr (K == BinaryKind::sub) return a - b;
  if constexpr (K == BinaryKind::mul) return a * b;
  if constexpr (K == BinaryKind::div) return a / b;
  if constexpr (K == BinaryKind::pow) return dev::pow(a, b);
  if constexpr (K == BinaryKind::maximum) return a > b ? a : b;
  if constexpr (K == BinaryKind::minimum) return a < b ? a : b;
  if constexpr (K == BinaryKind::eq) return a == b ? T(1) : T(0);
  if constexpr (K == BinaryKind::gt) return a > b ? T(1) : T(0);
  if constexpr (K == BinaryKind::ge) return a >= b ? T(1) : T(0);
  if constexpr (K == BinaryKind::lt) return a < b ? T(1) : T(0);
  return a;
}

template <typename T, BinaryKind K>
__global__ void binary_kernel_t(const T* a, const T* b, T* o, Strided<2> it, int64_t n) {
  for (int64_t i = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; i < n; i += (int64_t)gridDim.x * blockDim.x) {
    int64_t off[2];
    it.offsets(i, off);
    o[i] = T(binary_value<acc_t<T>, K>((acc_t<T>)a[off[0]], (acc_t<T>)b[off[1]]));
  }
}

template <typename T, BinaryKind K>
void binary_run(const Tensor& a, const Tensor& b, const Tensor& out) {
  const int64_t n = out.numel();
  const Strided<2> it = make_strided<2>(out.shape(), {a.strides(), b.strides()}, "binary");
  launch("binary", binary_kernel_t<T, K>, grid_for(n), kThreads, 0, ptr<const T>(a), ptr<const T>(b), ptr<T>(out),
         it, n);
}

template <typename T>
void binary_typed(BinaryKind k, const Tensor& a, const Tensor& b, const Tensor& out) {
  switch (k) {
#define MTALAB_BINARY_CASE(K) \
  case BinaryKind::K: return binary_run<T, BinaryKind::K>(a, b, out);
    MTALAB_BINARY_CASE(add) MTALAB_BINARY_CASE(sub) MTALAB_BINARY_CASE(mul) MTALAB_BINARY_CASE(div)
    MTALAB_BINARY_CASE(pow) MTALAB_BINARY_CASE(maximum) MTALAB_BINARY_CASE(minimum)
    MTALAB_BINARY_CASE(eq) MTALAB_BINARY_CASE(gt) MTALAB_BINARY_CASE(ge) MTALAB_BINARY_CASE(lt)
#undef MTALAB_BINARY_CASE
  }
}

void binary(BinaryKind k, const Tensor& a, const Tensor& b, const Tensor& out) {
  MTALAB_DISPATCH_FLOATING(out.dtype(), "binary", [&] { binary_typed<scalar_t>(k, a, b, out); });
}

template <typename T>
__global__ void where_kernel_t(const T* c, const T* a, const T* b, T* o, Strided<3> it, int64_t n) {
  for (int64_t i = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; i < n; i += (int64_t)gridDim.x * blockDim.x) {
    int64_t off[3];
    it.offsets(i, off);
    o[i] = (acc_t<T>)c[off[0]] != acc_t<T>(0) ? a[off[1]] : b[off[2]];
  }
}

void where(const Tensor& cond, const Tensor& a, const Tensor& b, const Tensor& out) {
  MTALAB_DISPATCH_FLOATING(out.dtype(), "where", [&] {
    using T = scalar_t;
    const int64_t n = out.numel();
    const Strided<3> it = make_strided<3>(out.shape(), {cond.strides(), a.strides(), b.strides()}, "where");
    launch("where", where_kernel_t<T>, grid_for(n), kThreads, 0, ptr<const T>(cond), ptr<const T>(a),
           ptr<const T>(b), ptr<T>(out), it, n);
  });
}

}  // namespace

MTALAB_REGISTER_KERNEL(unary_kernel, cuda, unary);
MTALAB_REGISTER_KERNEL(binary_kernel, cuda, binary);
MTALAB_REGISTER_KERNEL(where_kernel, cuda, where);

}  // namespace mtalab::cuda
