// float32 SIMD helpers shared by the CPU kernels (elementwise, reduce, softmax, norm,
// cross_entropy; copy.cpp borrows load and store for its 4 x 4 transposes).
//
// The hot float32 loops are written once over GCC vector types of L lanes and compiled
// twice: 4 lanes for the x86-64 baseline (SSE2) and 8 lanes with AVX2+FMA, chosen at run
// time (MTALAB_NO_AVX2=1 forces the baseline). A kernel is written as a template
// NAME_impl<L>, and MTALAB_SIMD_ENTRY below makes the two compilations and the run-time
// switch.
//
// Results never depend on the thread count: every element goes through the vector code,
// a row's tail through a padded vector (see load_part), so a value never depends on where
// a thread's chunk begins; and every sum is taken in an order fixed by the shape alone.
//
// Everything here is a template or `inline`, and sits in an anonymous namespace, as it did
// when each .cpp carried its own copy: each including file gets private instantiations.
// The 8-lane code must only ever be instantiated inside the target("avx2,fma") functions
// that MTALAB_SIMD_ENTRY defines; every helper is always_inline (MTALAB_VINLINE), so the
// compiler rejects any call that would need an out-of-line AVX2 copy from baseline code,
// and no such copy can be shared between files through the linker.
#pragma once

#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <cstring>

#if defined(__GNUC__) && defined(__x86_64__)
#define MTALAB_SIMD_AVX2 1
#define MTALAB_TARGET_AVX2 __attribute__((target("avx2,fma")))
#else
#define MTALAB_SIMD_AVX2 0
#endif
#define MTALAB_VINLINE inline __attribute__((always_inline))
#if defined(__GNUC__) && !defined(__clang__)
// The 8-lane types only ever live inside always-inlined code of the AVX2 functions.
// Deliberately not popped: the including file's kernels are where the 8-lane types appear.
#pragma GCC diagnostic ignored "-Wpsabi"
#endif

// NAME(PARAMS) runs NAME_impl<8> compiled for AVX2+FMA where the CPU has them, else
// NAME_impl<4> for the baseline. Use it inside the including file's namespace simd.
#if MTALAB_SIMD_AVX2
#define MTALAB_SIMD_ENTRY(NAME, PARAMS, ARGS)                               \
  void NAME##_base PARAMS { NAME##_impl<4> ARGS; }                           \
  MTALAB_TARGET_AVX2 void NAME##_avx2 PARAMS { NAME##_impl<8> ARGS; }        \
  void NAME PARAMS {                                                         \
    if (use_avx2()) return NAME##_avx2 ARGS;                                 \
    NAME##_base ARGS;                                                        \
  }
#else
#define MTALAB_SIMD_ENTRY(NAME, PARAMS, ARGS) \
  void NAME PARAMS { NAME##_impl<4> ARGS; }
#endif

namespace mtalab::cpu {
namespace {
namespace simd {

template <int L>
struct Lanes;
template <>
struct Lanes<4> {
  typedef float F __attribute__((vector_size(16)));
  typedef double D __attribute__((vector_size(16)));  // half the lanes, in double
};
template <>
struct Lanes<8> {
  typedef float F __attribute__((vector_size(32)));
  typedef double D __attribute__((vector_size(32)));
};

inline bool use_avx2() {
#if MTALAB_SIMD_AVX2
  static const bool v = __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma") &&
                        !std::getenv("MTALAB_NO_AVX2");
  return v;
#else
  return false;
#endif
}

// Unaligned vector load and store; T is float for Lanes<L>::F, double for Lanes<L>::D.
template <class V, class T>
MTALAB_VINLINE V load(const T* p) {
  V v;
  std::memcpy(&v, p, sizeof v);
  return v;
}
template <class V, class T>
MTALAB_VINLINE void store(T* p, const V& v) {
  std::memcpy(p, &v, sizeof v);
}
// The first n (< lanes) elements of p, the other lanes set to `fill`.
template <class V>
MTALAB_VINLINE V load_part(const float* p, int64_t n, float fill) {
  float buf[sizeof(V) / sizeof(float)];
  for (auto& b : buf) b = fill;
  std::memcpy(buf, p, n * sizeof(float));
  return load<V>(buf);
}
template <class V>
MTALAB_VINLINE void store_part(float* p, const V& v, int64_t n) {
  float buf[sizeof(V) / sizeof(float)];
  store(buf, v);
  std::memcpy(p, buf, n * sizeof(float));
}

// exp for float lanes: Cody-Waite reduction to r in [-ln2/2, ln2/2], the Cephes degree-5
// polynomial (Estrin's scheme, for a short dependency chain), and 2^n applied in two
// halves so that results down to the smallest denormal come out right. At most 1.03 ulp
// from the exact value over the whole float range (measured against double exp on 6e7
// samples, both code paths); exp(-inf) = 0, exp(inf) = inf, and nan stays nan (the
// clamps let it through, and it poisons the product).
// nonpositive: the caller knows x <= 0 (or nan), which saves the upper clamp.
template <class V, bool nonpositive = false>
MTALAB_VINLINE V exp(const V& x) {
  using I = decltype(V{} < V{});
  V xc = x < -104.0f ? V{} - 104.0f : x;               // exp(-104) rounds to 0
  if (!nonpositive) xc = xc > 88.8f ? V{} + 88.8f : xc;  // exp(88.8) overflows to inf
  const V shifted = xc * 1.44269504088896341f + 12582912.0f;  // 1.5 * 2^23: rounds to an integer
  const V n = shifted - 12582912.0f;
  const I ni = (I)shifted - (I)(V{} + 12582912.0f);  // that integer, read from the mantissa bits
  V r = xc - n * 0.693359375f;
  r = r - n * -2.12194440e-4f;
  const V r2 = r * r, r4 = r2 * r2;
  const V p = (r * 1.6666665459e-1f + 5.0000001201e-1f) + (r * 8.3334519073e-3f + 4.1665795894e-2f) * r2 +
              (r * 1.9875691500e-4f + 1.3981999507e-3f) * r4;
  const V y = p * r2 + r + 1.0f;
  const I n1 = ni >> 1, n2 = ni - n1;
  return y * (V)((n1 + 127) << 23) * (V)((n2 + 127) << 23);
}

// Horizontal reductions, lanes taken in a fixed order.
template <class V>
MTALAB_VINLINE float hsum(const V& v) {
  float s = v[0];
  for (size_t l = 1; l < sizeof(V) / sizeof(float); ++l) s += v[l];
  return s;
}
template <class V>
MTALAB_VINLINE float hmax(const V& v) {  // nan lanes never get in: max ignores nan, as std::max did
  float m = v[0];
  for (size_t l = 1; l < sizeof(V) / sizeof(float); ++l) m = m < v[l] ? v[l] : m;
  return m;
}
template <class D>
MTALAB_VINLINE double hsum_d(const D& v) {
  double s = v[0];
  for (size_t l = 1; l < sizeof(D) / sizeof(double); ++l) s += v[l];
  return s;
}

// The low (H = 0) or high (H = 1) half of a float vector, widened to double.
template <int L, int H>
MTALAB_VINLINE typename Lanes<L>::D half(const typename Lanes<L>::F& f) {
  constexpr int h = H * L / 2;
  if constexpr (L == 4)
    return __builtin_convertvector(__builtin_shufflevector(f, f, h, h + 1), typename Lanes<L>::D);
  else
    return __builtin_convertvector(__builtin_shufflevector(f, f, h, h + 1, h + 2, h + 3), typename Lanes<L>::D);
}
template <int L>
MTALAB_VINLINE typename Lanes<L>::D lo(const typename Lanes<L>::F& f) {
  return half<L, 0>(f);
}
template <int L>
MTALAB_VINLINE typename Lanes<L>::D hi(const typename Lanes<L>::F& f) {
  return half<L, 1>(f);
}
// acc[0, L) += f, widened to double.
template <int L>
MTALAB_VINLINE void add_wide(double* acc, const typename Lanes<L>::F& f) {
  using D = typename Lanes<L>::D;
  // Both loads before both stores: GCC keeps the pair in registers better (sum_cols AVX2).
  const D a0 = load<D>(acc) + lo<L>(f), a1 = load<D>(acc + L / 2) + hi<L>(f);
  store(acc, a0);
  store(acc + L / 2, a1);
}

// max of x[0, n) (-inf for n = 0); nan elements are skipped, as in hmax.
template <int L>
MTALAB_VINLINE float row_max(const float* x, int64_t n) {
  using F = typename Lanes<L>::F;
  constexpr float kInf = __builtin_inff();
  F mv = F{} - kInf;
  int64_t j = 0;
  for (; j + L <= n; j += L) {
    const F v = load<F>(x + j);
    mv = mv < v ? v : mv;
  }
  if (j < n) {
    const F v = load_part<F>(x + j, n - j, -kInf);
    mv = mv < v ? v : mv;
  }
  return hmax(mv);
}

}  // namespace simd
}  // namespace
}  // namespace mtalab::cpu
