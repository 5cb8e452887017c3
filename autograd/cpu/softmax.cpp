// CPU softmax and log-softmax, forward and backward, plain or causal: a row per loop
// iteration over the last dimension, OpenMP over rows.
#include <algorithm>
#include <cmath>
#include <limits>
#include <vector>

#include "autograd/cpu/parallel.h"
#include "autograd/cpu/simd.h"
#include "autograd/bf16_staging.h"
#include "autograd/kernels.h"

namespace mtalab::cpu {
namespace {
namespace simd {

constexpr float kInf = std::numeric_limits<float>::infinity();

// Rows [r0, r1) of softmax_typed below, same results up to rounding.
template <int L>
MTALAB_VINLINE void softmax_impl(const float* x, float* y, int64_t r0, int64_t r1, int64_t full, int64_t tq, bool log,
                                 bool causal) {
  using F = typename Lanes<L>::F;
  for (int64_t r = r0; r < r1; ++r) {
    const float* xr = x + r * full;
    float* yr = y + r * full;
    const int64_t n = causal ? std::min(full, r % tq + 1) : full;
    for (int64_t j = n; j < full; ++j) yr[j] = log ? -kInf : 0.0f;
    float m = row_max<L>(xr, n);
    if (m == -kInf) m = 0;  // fully masked row: stays 0 / -inf
    F sv = {};
    int64_t j = 0;
    for (; j + L <= n; j += L) {
      const F e = exp<F, true>(load<F>(xr + j) - m);
      if (!log) store(yr + j, e);
      sv += e;
    }
    if (j < n) {  // padding lanes are -inf: they add exp(-inf) = 0
      const F e = exp<F, true>(load_part<F>(xr + j, n - j, -kInf) - m);
      if (!log) store_part(yr + j, e, n - j);
      sv += e;
    }
    const float s = hsum(sv);
    if (log) {
      const float ls = std::log(s) + m;
      for (j = 0; j < n; ++j) yr[j] = xr[j] - ls;
    } else {
      const float inv = s > 0 ? 1.0f / s : 0.0f;
      for (j = 0; j < n; ++j) yr[j] *= inv;
    }
  }
}

template <int L>
MTALAB_VINLINE void softmax_bwd_impl(const float* y, const float* gy, float* gx, int64_t r0, int64_t r1, int64_t full,
                                     int64_t tq, bool log, bool causal) {
  using F = typename Lanes<L>::F;
  for (int64_t r = r0; r < r1; ++r) {
    const float* yr = y + r * full;
    const float* gr = gy + r * full;
    float* out = gx + r * full;
    const int64_t n = causal ? std::min(full, r % tq + 1) : full;
    for (int64_t j = n; j < full; ++j) out[j] = 0;  // masked entries get no gradient
    F sv = {};
    int64_t j = 0;
    if (log) {
      for (; j + L <= n; j += L) sv += load<F>(gr + j);
      if (j < n) sv += load_part<F>(gr + j, n - j, 0.0f);
      const float s = hsum(sv);
      for (j = 0; j + L <= n; j += L) store(out + j, load<F>(gr + j) - exp<F, true>(load<F>(yr + j)) * s);
      if (j < n)
        store_part(out + j, load_part<F>(gr + j, n - j, 0.0f) - exp<F, true>(load_part<F>(yr + j, n - j, 0.0f)) * s, n - j);
    } else {
      for (; j + L <= n; j += L) sv += load<F>(gr + j) * load<F>(yr + j);
      if (j < n) sv += load_part<F>(gr + j, n - j, 0.0f) * load_part<F>(yr + j, n - j, 0.0f);
      const float s = hsum(sv);
      for (j = 0; j < n; ++j) out[j] = yr[j] * (gr[j] - s);
    }
  }
}

MTALAB_SIMD_ENTRY(softmax,
                  (const float* x, float* y, int64_t r0, int64_t r1, int64_t full, int64_t tq, bool log, bool causal),
                  (x, y, r0, r1, full, tq, log, causal))
MTALAB_SIMD_ENTRY(softmax_bwd,
                  (const float* y, const float* gy, float* gx, int64_t r0, int64_t r1, int64_t full, int64_t tq,
                   bool log, bool causal),
                  (y, gy, gx, r0, r1, full, tq, log, causal))

}  // namespace simd

template <typename T>
void softmax_typed(const Tensor& xt, const Tensor& yt, bool log, bool causal) {
  const int64_t full = xt.size(-1), rows = full ? xt.numel() / full : 0, tq = xt.dim() > 1 ? xt.size(-2) : 1;
  const T* x = static_cast<const T*>(xt.raw());
  T* y = static_cast<T*>(yt.raw());
  if constexpr (std::is_same_v<T, float>) {
    parallel_for(rows, row_grain(full),
                 [&](int64_t b, int64_t e) { simd::softmax(x, y, b, e, full, tq, log, causal); });
    return;
  }
  parallel_for(rows, row_grain(full), [&](int64_t b, int64_t e) {
    for (int64_t r = b; r < e; ++r) {
      const T* xr = x + r * full;
      T* yr = y + r * full;
      const int64_t n = causal ? std::min(full, r % tq + 1) : full;
      for (int64_t j = n; j < full; ++j) yr[j] = log ? -std::numeric_limits<T>::infinity() : T(0);
      T m = -std::numeric_limits<T>::infinity();
      for (int64_t j = 0; j < n; ++j) m = std::max(m, xr[j]);
      if (m == -std::numeric_limits<T>::infinity()) m = 0;  // fully masked row: stays 0 / -inf
      T s = 0;
      for (int64_t j = 0; j < n; ++j) {
        const T v = std::exp(xr[j] - m);
        yr[j] = v;
        s += v;
      }
      if (log) {
        const T ls = std::log(s) + m;
        for (int64_t j = 0; j < n; ++j) yr[j] = xr[j] - ls;
      } else {
        const T inv = s > 0 ? T(1) / s : T(0);
        for (int64_t j = 0; j < n; ++j) yr[j] *= inv;
      }
    }
  });
}
void softmax(const Tensor& x, const Tensor& y, bool log, bool causal) {
  if (x.dtype() == DType::bf16) {
    Bf16Staging s;
    softmax(s.in(x), s.out(y), log, causal);
    return s.finish();
  }
  MTALAB_DISPATCH_FLOAT(x.dtype(), "softmax", [&] { softmax_typed<scalar_t>(x, y, log, causal); });
}

// softmax: gx = y * (gy - sum(gy*y)); log_softmax: gx = gy - exp(y) * sum(gy).
template <typename T>
void softmax_bwd_typed(const Tensor& yt, const Tensor& gyt, const Tensor& gxt, bool log, bool causal) {
  const int64_t full = yt.size(-1), rows = full ? yt.numel() / full : 0, tq = yt.dim() > 1 ? yt.size(-2) : 1;
  const T* y = static_cast<const T*>(yt.raw());
  const T* gy = static_cast<const T*>(gyt.raw());
  T* gx = static_cast<T*>(gxt.raw());
  if constexpr (std::is_same_v<T, float>) {
    parallel_for(rows, row_grain(full),
                 [&](int64_t b, int64_t e) { simd::softmax_bwd(y, gy, gx, b, e, full, tq, log, causal); });
    return;
  }
  parallel_for(rows, row_grain(full), [&](int64_t b, int64_t e) {
    for (int64_t r = b; r < e; ++r) {
      const T* yr = y + r * full;
      const T* gr = gy + r * full;
      T* out = gx + r * full;
      const int64_t n = causal ? std::min(full, r % tq + 1) : full;
      for (int64_t j = n; j < full; ++j) out[j] = 0;  // masked entries get no gradient
      T s = 0;
      if (log) {
        for (int64_t j = 0; j < n; ++j) s += gr[j];
        for (int64_t j = 0; j < n; ++j) out[j] = gr[j] - std::exp(yr[j]) * s;
      } else {
        for (int64_t j = 0; j < n; ++j) s += gr[j] * yr[j];
        for (int64_t j = 0; j < n; ++j) out[j] = yr[j] * (gr[j] - s);
      }
    }
  });
}
void softmax_bwd(const Tensor& y, const Tensor& gy, const Tensor& gx, bool log, bool causal) {
  if (y.dtype() == DType::bf16) {
    Bf16Staging s;
    softmax_bwd(s.in(y), s.in(gy), s.out(gx), log, causal);
    return s.finish();
  }
  MTALAB_DISPATCH_FLOAT(y.dtype(), "softmax_backward", [&] { softmax_bwd_typed<scalar_t>(y, gy, gx, log, causal); });
}

}  // namespace

MTALAB_REGISTER_KERNEL(softmax_kernel, cpu, softmax);
MTALAB_REGISTER_KERNEL(softmax_bwd_kernel, cpu, softmax_bwd);

}  // namespace mtalab::cpu
