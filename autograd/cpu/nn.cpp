// CPU kernels for the fused neural-net ops: softmax, norms, embedding, cross-entropy.
// All work row by row over the last dimension, one row per loop iteration, OpenMP over rows.
#include <algorithm>
#include <cmath>
#include <limits>
#include <vector>

#include "autograd/cpu/parallel.h"
#include "autograd/cpu/simd.h"
#include "autograd/kernels.h"

namespace mtalab::cpu {
namespace {
namespace simd {

constexpr float kInf = std::numeric_limits<float>::infinity();

// max of x[0, n) (-inf for n = 0); nan elements are skipped, as in hmax.
template <int L>
MTALAB_VINLINE float row_max(const float* x, int64_t n) {
  using F = typename Lanes<L>::F;
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

// sum_j (x[j] - mu) and sum_j (x[j] - mu)^2 over one row, in double.
template <int L>
MTALAB_VINLINE double sum_d(const float* x, int64_t n, double mu, bool square) {
  using F = typename Lanes<L>::F;
  using D = typename Lanes<L>::D;
  D a = {}, b = {}, c = {}, d = {};
  int64_t j = 0;
  for (; j + 2 * L <= n; j += 2 * L) {
    const F f0 = load<F>(x + j), f1 = load<F>(x + j + L);
    const D v0 = lo<L>(f0) - mu, v1 = hi<L>(f0) - mu, v2 = lo<L>(f1) - mu, v3 = hi<L>(f1) - mu;
    if (square) {
      a += v0 * v0, b += v1 * v1, c += v2 * v2, d += v3 * v3;
    } else {
      a += v0, b += v1, c += v2, d += v3;
    }
  }
  double s = hsum_d((a + b) + (c + d));
  for (; j < n; ++j) s += square ? ((double)x[j] - mu) * ((double)x[j] - mu) : (double)x[j] - mu;
  return s;
}

template <int L>
MTALAB_VINLINE void norm_impl(bool layer, const float* x, const float* w, const float* bias, double eps, float* y,
                              float* mean, float* rstd, int64_t r0, int64_t r1, int64_t n) {
  for (int64_t r = r0; r < r1; ++r) {
    const float* xr = x + r * n;
    float* yr = y + r * n;
    const double mu = layer ? sum_d<L>(xr, n, 0.0, false) / n : 0.0;
    const double ss = sum_d<L>(xr, n, mu, true);
    const float rs = (float)(1.0 / std::sqrt(ss / n + eps));
    const float m = (float)mu;
    mean[r] = m;
    rstd[r] = rs;
    if (w && bias)
      for (int64_t j = 0; j < n; ++j) yr[j] = (xr[j] - m) * rs * w[j] + bias[j];
    else if (w)
      for (int64_t j = 0; j < n; ++j) yr[j] = (xr[j] - m) * rs * w[j];
    else if (bias)
      for (int64_t j = 0; j < n; ++j) yr[j] = (xr[j] - m) * rs + bias[j];
    else
      for (int64_t j = 0; j < n; ++j) yr[j] = (xr[j] - m) * rs;
  }
}

// gx rows of norm_bwd_typed below: h = w*gy, xh = (x - mean)*rstd, sums in double.
template <int L>
MTALAB_VINLINE void norm_bwd_impl(bool layer, const float* x, const float* w, const float* mean, const float* rstd,
                                  const float* gy, float* gx, int64_t r0, int64_t r1, int64_t n) {
  using F = typename Lanes<L>::F;
  using D = typename Lanes<L>::D;
  for (int64_t r = r0; r < r1; ++r) {
    const float *xr = x + r * n, *gr = gy + r * n;
    const float m = mean[r], rs = rstd[r];
    D sh = {}, shx = {}, sh2 = {}, shx2 = {};
    int64_t j = 0;
    for (; j + L <= n; j += L) {
      const F h = w ? load<F>(gr + j) * load<F>(w + j) : load<F>(gr + j);
      const F xh = (load<F>(xr + j) - m) * rs;
      const D hl = lo<L>(h), hh = hi<L>(h);
      sh += hl, sh2 += hh;
      shx += hl * lo<L>(xh), shx2 += hh * hi<L>(xh);
    }
    double s_h = hsum_d(sh + sh2), s_hx = hsum_d(shx + shx2);
    for (; j < n; ++j) {
      const double h = (double)(gr[j] * (w ? w[j] : 1.0f));
      s_h += h;
      s_hx += h * ((xr[j] - m) * rs);
    }
    const float mh = layer ? (float)(s_h / n) : 0.0f, mhx = (float)(s_hx / n);
    float* out = gx + r * n;
    if (w)
      for (j = 0; j < n; ++j) out[j] = rs * (gr[j] * w[j] - mh - (xr[j] - m) * rs * mhx);
    else
      for (j = 0; j < n; ++j) out[j] = rs * (gr[j] - mh - (xr[j] - m) * rs * mhx);
  }
}

// Partial column sums for gw = sum_rows(gy * xh) and gb = sum_rows(gy): block k of bs
// rows writes pw[k * n + j] and pb[k * n + j], each column summed over the block's rows in
// order, in double (as the scalar code does over all rows). Whole rows are streamed, so
// the reads are contiguous.
template <int L>
MTALAB_VINLINE void norm_cols_impl(const float* x, const float* mean, const float* rstd, const float* gy, double* pw,
                                   double* pb, int64_t k0, int64_t k1, int64_t bs, int64_t rows, int64_t n) {
  using F = typename Lanes<L>::F;
  using D = typename Lanes<L>::D;
  constexpr int64_t H = L / 2;
  for (int64_t k = k0; k < k1; ++k) {
    double* aw = pw + k * n;
    double* ab = pb + k * n;
    std::fill(aw, aw + n, 0.0);
    std::fill(ab, ab + n, 0.0);
    for (int64_t r = k * bs, re = std::min(rows, r + bs); r < re; ++r) {
      const float *xr = x + r * n, *gr = gy + r * n;
      const float m = mean[r], rs = rstd[r];
      int64_t j = 0;
      for (; j + L <= n; j += L) {
        const F g = load<F>(gr + j), xh = (load<F>(xr + j) - m) * rs;
        const D gl = lo<L>(g), gh = hi<L>(g);
        store(aw + j, load<D>(aw + j) + gl * lo<L>(xh));
        store(aw + j + H, load<D>(aw + j + H) + gh * hi<L>(xh));
        add_wide<L>(ab + j, g);
      }
      for (; j < n; ++j) {
        aw[j] += (double)gr[j] * ((xr[j] - m) * rs);
        ab[j] += gr[j];
      }
    }
  }
}

// lse[i] = log sum_j exp(logits[i, j]) for rows [r0, r1); the sum in double.
template <int L>
MTALAB_VINLINE void lse_impl(const float* logits, float* lse, int64_t r0, int64_t r1, int64_t V) {
  using F = typename Lanes<L>::F;
  using D = typename Lanes<L>::D;
  for (int64_t i = r0; i < r1; ++i) {
    const float* row = logits + i * V;
    const float m = row_max<L>(row, V);
    D s0 = {}, s1 = {};
    int64_t j = 0;
    for (; j + L <= V; j += L) {
      const F e = exp<F, true>(load<F>(row + j) - m);
      s0 += lo<L>(e), s1 += hi<L>(e);
    }
    if (j < V) {
      const F e = exp<F, true>(load_part<F>(row + j, V - j, -kInf) - m);
      s0 += lo<L>(e), s1 += hi<L>(e);
    }
    lse[i] = m + (float)std::log(hsum_d(s0 + s1));
  }
}

// g[i, :] = scale[i] * exp(logits[i, :] - lse[i]) for rows [r0, r1).
template <int L>
MTALAB_VINLINE void ce_bwd_impl(const float* logits, const float* lse, const float* scale, float* g, int64_t r0,
                                int64_t r1, int64_t V) {
  using F = typename Lanes<L>::F;
  for (int64_t i = r0; i < r1; ++i) {
    const float* row = logits + i * V;
    float* gr = g + i * V;
    const float s = scale[i], l = lse[i];
    if (s == 0.0f) {
      std::fill(gr, gr + V, 0.0f);
      continue;
    }
    int64_t j = 0;
    for (; j + L <= V; j += L) store(gr + j, exp<F, true>(load<F>(row + j) - l) * s);
    if (j < V) store_part(gr + j, exp<F, true>(load_part<F>(row + j, V - j, 0.0f) - l) * s, V - j);
  }
}

MTALAB_SIMD_ENTRY(softmax,
                  (const float* x, float* y, int64_t r0, int64_t r1, int64_t full, int64_t tq, bool log, bool causal),
                  (x, y, r0, r1, full, tq, log, causal))
MTALAB_SIMD_ENTRY(softmax_bwd,
                  (const float* y, const float* gy, float* gx, int64_t r0, int64_t r1, int64_t full, int64_t tq,
                   bool log, bool causal),
                  (y, gy, gx, r0, r1, full, tq, log, causal))
MTALAB_SIMD_ENTRY(norm,
                  (bool layer, const float* x, const float* w, const float* bias, double eps, float* y, float* mean,
                   float* rstd, int64_t r0, int64_t r1, int64_t n),
                  (layer, x, w, bias, eps, y, mean, rstd, r0, r1, n))
MTALAB_SIMD_ENTRY(norm_bwd,
                  (bool layer, const float* x, const float* w, const float* mean, const float* rstd, const float* gy,
                   float* gx, int64_t r0, int64_t r1, int64_t n),
                  (layer, x, w, mean, rstd, gy, gx, r0, r1, n))
MTALAB_SIMD_ENTRY(norm_cols,
                  (const float* x, const float* mean, const float* rstd, const float* gy, double* pw, double* pb,
                   int64_t k0, int64_t k1, int64_t bs, int64_t rows, int64_t n),
                  (x, mean, rstd, gy, pw, pb, k0, k1, bs, rows, n))
MTALAB_SIMD_ENTRY(lse, (const float* logits, float* lse, int64_t r0, int64_t r1, int64_t V),
                  (logits, lse, r0, r1, V))
MTALAB_SIMD_ENTRY(ce_bwd,
                  (const float* logits, const float* lse, const float* scale, float* g, int64_t r0, int64_t r1,
                   int64_t V),
                  (logits, lse, scale, g, r0, r1, V))

}  // namespace simd

int64_t row_grain(int64_t n) { return std::max<int64_t>(1, 16384 / std::max<int64_t>(n, 1)); }

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
  MTALAB_DISPATCH_FLOAT(y.dtype(), "softmax_backward", [&] { softmax_bwd_typed<scalar_t>(y, gy, gx, log, causal); });
}

template <typename T>
void norm_typed(bool layer, const Tensor& xt, const Tensor& wt, const Tensor& bt, double eps, const Tensor& yt,
                const Tensor& meant, const Tensor& rstdt) {
  const int64_t n = xt.size(-1), rows = n ? xt.numel() / n : 0;
  const T* x = static_cast<const T*>(xt.raw());
  const T* w = wt.defined() ? static_cast<const T*>(wt.raw()) : nullptr;
  const T* bias = bt.defined() ? static_cast<const T*>(bt.raw()) : nullptr;
  T* y = static_cast<T*>(yt.raw());
  T* mean = static_cast<T*>(meant.raw());
  T* rstd = static_cast<T*>(rstdt.raw());
  if constexpr (std::is_same_v<T, float>) {
    parallel_for(rows, row_grain(n),
                 [&](int64_t b, int64_t e) { simd::norm(layer, x, w, bias, eps, y, mean, rstd, b, e, n); });
    return;
  }
  parallel_for(rows, row_grain(n), [&](int64_t b, int64_t e) {
    for (int64_t r = b; r < e; ++r) {
      const T* xr = x + r * n;
      T* yr = y + r * n;
      double mu = 0;
      if (layer) {
        for (int64_t j = 0; j < n; ++j) mu += xr[j];
        mu /= n;
      }
      double ss = 0;
      for (int64_t j = 0; j < n; ++j) ss += ((double)xr[j] - mu) * ((double)xr[j] - mu);
      const T rs = (T)(1.0 / std::sqrt(ss / n + eps));
      const T m = (T)mu;
      mean[r] = m;
      rstd[r] = rs;
      for (int64_t j = 0; j < n; ++j) {
        T v = (xr[j] - m) * rs;
        if (w) v *= w[j];
        if (bias) v += bias[j];
        yr[j] = v;
      }
    }
  });
}
void norm(bool layer, const Tensor& x, const Tensor& w, const Tensor& b, double eps, const Tensor& y,
          const Tensor& mean, const Tensor& rstd) {
  MTALAB_DISPATCH_FLOAT(x.dtype(), "norm", [&] { norm_typed<scalar_t>(layer, x, w, b, eps, y, mean, rstd); });
}

// With xh = (x - mean) * rstd and h = w * gy:
//   rms:   gx = rstd * (h - xh * mean(h * xh))
//   layer: gx = rstd * (h - mean(h) - xh * mean(h * xh))
//   gw = sum_rows(gy * xh), gbias = sum_rows(gy)
template <typename T>
void norm_bwd_typed(bool layer, const Tensor& xt, const Tensor& wt, const Tensor& meant, const Tensor& rstdt,
                    const Tensor& gyt, const Tensor& gxt, const Tensor& gwt, const Tensor& gbt) {
  const int64_t n = xt.size(-1), rows = n ? xt.numel() / n : 0;
  const T* x = static_cast<const T*>(xt.raw());
  const T* w = wt.defined() ? static_cast<const T*>(wt.raw()) : nullptr;
  const T* mean = static_cast<const T*>(meant.raw());
  const T* rstd = static_cast<const T*>(rstdt.raw());
  const T* gy = static_cast<const T*>(gyt.raw());
  if (gxt.defined()) {
    T* gx = static_cast<T*>(gxt.raw());
    if constexpr (std::is_same_v<T, float>) {
      parallel_for(rows, row_grain(n),
                   [&](int64_t b, int64_t e) { simd::norm_bwd(layer, x, w, mean, rstd, gy, gx, b, e, n); });
    } else {
      parallel_for(rows, row_grain(n), [&](int64_t b, int64_t e) {
        for (int64_t r = b; r < e; ++r) {
          const T *xr = x + r * n, *gr = gy + r * n;
          const T m = mean[r], rs = rstd[r];
          double sh = 0, shx = 0;
          for (int64_t j = 0; j < n; ++j) {
            const double h = (double)gr[j] * (w ? w[j] : T(1));
            sh += h;
            shx += h * ((xr[j] - m) * rs);
          }
          const T mh = layer ? (T)(sh / n) : T(0), mhx = (T)(shx / n);
          T* out = gx + r * n;
          for (int64_t j = 0; j < n; ++j) {
            const T h = gr[j] * (w ? w[j] : T(1));
            out[j] = rs * (h - mh - (xr[j] - m) * rs * mhx);
          }
        }
      });
    }
  }
  if (gwt.defined() || gbt.defined()) {
    // Column sums: parallel over columns so each output has one writer (deterministic).
    T* gw = gwt.defined() ? static_cast<T*>(gwt.raw()) : nullptr;
    T* gb = gbt.defined() ? static_cast<T*>(gbt.raw()) : nullptr;
    if constexpr (std::is_same_v<T, float>) {
      // Column sums by blocks of rows (at most 64 blocks, their size set by the shape
      // alone), then the blocks added in order: deterministic, and every pass over x and
      // gy reads whole rows. (Splitting by columns, each thread striding down every row,
      // made layer_norm's w/b backward ~4x slower on 2 threads, and slower than on 1.)
      const int64_t bs = std::max<int64_t>(64, (rows + 63) / 64), nb = (rows + bs - 1) / bs;
      std::vector<double> pw(nb * n), pb(nb * n);
      parallel_for(nb, 1, [&](int64_t b, int64_t e) {
        simd::norm_cols(x, mean, rstd, gy, pw.data(), pb.data(), b, e, bs, rows, n);
      });
      parallel_for(n, 256, [&](int64_t b, int64_t e) {
        for (int64_t j = b; j < e; ++j) {
          double aw = 0, ab = 0;
          for (int64_t k = 0; k < nb; ++k) aw += pw[k * n + j], ab += pb[k * n + j];
          if (gw) gw[j] = (float)aw;
          if (gb) gb[j] = (float)ab;
        }
      });
      return;
    }
    parallel_for(n, 16, [&](int64_t b, int64_t e) {
      std::vector<double> aw(e - b, 0.0), ab(e - b, 0.0);
      for (int64_t r = 0; r < rows; ++r) {
        const T *xr = x + r * n, *gr = gy + r * n;
        const T m = mean[r], rs = rstd[r];
        for (int64_t j = b; j < e; ++j) {
          aw[j - b] += (double)gr[j] * ((xr[j] - m) * rs);
          ab[j - b] += gr[j];
        }
      }
      for (int64_t j = b; j < e; ++j) {
        if (gw) gw[j] = (T)aw[j - b];
        if (gb) gb[j] = (T)ab[j - b];
      }
    });
  }
}
void norm_bwd(bool layer, const Tensor& x, const Tensor& w, const Tensor& mean, const Tensor& rstd, const Tensor& gy,
              const Tensor& gx, const Tensor& gw, const Tensor& gb) {
  MTALAB_DISPATCH_FLOAT(x.dtype(), "norm_backward",
                        [&] { norm_bwd_typed<scalar_t>(layer, x, w, mean, rstd, gy, gx, gw, gb); });
}

template <typename T, typename I>
void embedding_typed(const Tensor& wt, const Tensor& it, const Tensor& ot) {
  const int64_t V = wt.size(0), d = wt.size(1), n = it.numel();
  const T* w = static_cast<const T*>(wt.raw());
  const I* idx = static_cast<const I*>(it.raw());
  T* o = static_cast<T*>(ot.raw());
  for (int64_t i = 0; i < n; ++i)
    if (idx[i] < 0 || idx[i] >= V)
      throw std::invalid_argument("embedding: index " + std::to_string((int64_t)idx[i]) + " at position " +
                                  std::to_string(i) + " is outside [0, " + std::to_string(V) + ")");
  parallel_for(n, row_grain(d), [&](int64_t b, int64_t e) {
    for (int64_t i = b; i < e; ++i) std::copy(w + idx[i] * d, w + idx[i] * d + d, o + i * d);
  });
}
void embedding(const Tensor& w, const Tensor& idx, const Tensor& out) {
  MTALAB_DISPATCH_FLOAT(w.dtype(), "embedding", [&] {
    MTALAB_DISPATCH_INDEX(idx.dtype(), "embedding", [&] { embedding_typed<scalar_t, index_t>(w, idx, out); });
  });
}
// Scatter-add, parallel over columns so every weight row has one writer per column.
template <typename T, typename I>
void embedding_bwd_typed(const Tensor& gt, const Tensor& it, const Tensor& gwt) {
  const int64_t d = gwt.size(1), n = it.numel();
  const T* g = static_cast<const T*>(gt.raw());
  const I* idx = static_cast<const I*>(it.raw());
  T* gw = static_cast<T*>(gwt.raw());
  std::fill(gw, gw + gwt.numel(), T(0));
  parallel_for(d, 16, [&](int64_t b, int64_t e) {
    for (int64_t i = 0; i < n; ++i) {
      T* row = gw + idx[i] * d;
      const T* gr = g + i * d;
      for (int64_t j = b; j < e; ++j) row[j] += gr[j];
    }
  });
}
void embedding_bwd(const Tensor& g, const Tensor& idx, const Tensor& gw) {
  MTALAB_DISPATCH_FLOAT(gw.dtype(), "embedding_backward", [&] {
    MTALAB_DISPATCH_INDEX(idx.dtype(), "embedding_backward", [&] { embedding_bwd_typed<scalar_t, index_t>(g, idx, gw); });
  });
}

template <typename T, typename I>
void cross_entropy_typed(const Tensor& lt, const Tensor& tt, const Tensor& losst, const Tensor& lset) {
  const int64_t V = lt.size(-1), N = tt.numel();
  const T* logits = static_cast<const T*>(lt.raw());
  const I* tgt = static_cast<const I*>(tt.raw());
  T* loss = static_cast<T*>(losst.raw());
  T* lse = static_cast<T*>(lset.raw());
  for (int64_t i = 0; i < N; ++i)
    if (tgt[i] < 0 || tgt[i] >= V)
      throw std::invalid_argument("cross_entropy: target " + std::to_string((int64_t)tgt[i]) + " at position " +
                                  std::to_string(i) + " is outside [0, " + std::to_string(V) + ")");
  if constexpr (std::is_same_v<T, float>) {
    parallel_for(N, row_grain(V), [&](int64_t b, int64_t e) {
      simd::lse(logits, lse, b, e, V);
      for (int64_t i = b; i < e; ++i) loss[i] = lse[i] - logits[i * V + tgt[i]];
    });
    return;
  }
  parallel_for(N, row_grain(V), [&](int64_t b, int64_t e) {
    for (int64_t i = b; i < e; ++i) {
      const T* row = logits + i * V;
      T m = row[0];
      for (int64_t j = 1; j < V; ++j) m = std::max(m, row[j]);
      double s = 0;
      for (int64_t j = 0; j < V; ++j) s += std::exp((double)(row[j] - m));
      lse[i] = m + (T)std::log(s);
      loss[i] = lse[i] - row[tgt[i]];
    }
  });
}
void cross_entropy(const Tensor& logits, const Tensor& target, const Tensor& loss, const Tensor& lse) {
  MTALAB_DISPATCH_FLOAT(logits.dtype(), "cross_entropy", [&] {
    MTALAB_DISPATCH_INDEX(target.dtype(), "cross_entropy",
                          [&] { cross_entropy_typed<scalar_t, index_t>(logits, target, loss, lse); });
  });
}
template <typename T, typename I>
void cross_entropy_bwd_typed(const Tensor& lt, const Tensor& tt, const Tensor& lset, const Tensor& st,
                             const Tensor& gt) {
  const int64_t V = lt.size(-1), N = tt.numel();
  const T* logits = static_cast<const T*>(lt.raw());
  const I* tgt = static_cast<const I*>(tt.raw());
  const T* lse = static_cast<const T*>(lset.raw());
  const T* scale = static_cast<const T*>(st.raw());
  T* g = static_cast<T*>(gt.raw());
  if constexpr (std::is_same_v<T, float>) {
    parallel_for(N, row_grain(V), [&](int64_t b, int64_t e) {
      simd::ce_bwd(logits, lse, scale, g, b, e, V);
      for (int64_t i = b; i < e; ++i)
        if (scale[i] != 0.0f) g[i * V + tgt[i]] -= scale[i];
    });
    return;
  }
  parallel_for(N, row_grain(V), [&](int64_t b, int64_t e) {
    for (int64_t i = b; i < e; ++i) {
      const T* row = logits + i * V;
      T* gr = g + i * V;
      const T s = scale[i];
      if (s == T(0)) {
        std::fill(gr, gr + V, T(0));
        continue;
      }
      for (int64_t j = 0; j < V; ++j) gr[j] = s * std::exp(row[j] - lse[i]);
      gr[tgt[i]] -= s;
    }
  });
}
void cross_entropy_bwd(const Tensor& logits, const Tensor& target, const Tensor& lse, const Tensor& scale,
                       const Tensor& g) {
  MTALAB_DISPATCH_FLOAT(logits.dtype(), "cross_entropy_backward", [&] {
    MTALAB_DISPATCH_INDEX(target.dtype(), "cross_entropy_backward",
                          [&] { cross_entropy_bwd_typed<scalar_t, index_t>(logits, target, lse, scale, g); });
  });
}

}  // namespace
}  // namespace mtalab::cpu

namespace mtalab {
KernelTable<SoftmaxFn> softmax_kernel("softmax", cpu::softmax);
KernelTable<SoftmaxBwdFn> softmax_bwd_kernel("softmax_backward", cpu::softmax_bwd);
KernelTable<NormFn> norm_kernel("norm", cpu::norm);
KernelTable<NormBwdFn> norm_bwd_kernel("norm_backward", cpu::norm_bwd);
KernelTable<EmbeddingFn> embedding_kernel("embedding", cpu::embedding);
KernelTable<EmbeddingBwdFn> embedding_bwd_kernel("embedding_backward", cpu::embedding_bwd);
KernelTable<CrossEntropyFn> cross_entropy_kernel("cross_entropy", cpu::cross_entropy);
KernelTable<CrossEntropyBwdFn> cross_entropy_bwd_kernel("cross_entropy_backward", cpu::cross_entropy_bwd);
}  // namespace mtalab
