// CPU RMSNorm and LayerNorm over the last dimension, forward and backward.
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

}  // namespace simd

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
  if (x.dtype() == DType::bf16) {  // mean and rstd are float32
    Bf16Staging s;
    norm(layer, s.in(x), s.in(w), s.in(b), eps, s.out(y), mean, rstd);
    return s.finish();
  }
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
  if (x.dtype() == DType::bf16) {
    Bf16Staging s;
    norm_bwd(layer, s.in(x), s.in(w), mean, rstd, s.in(gy), s.out(gx), s.out(gw), s.out(gb));
    return s.finish();
  }
  MTALAB_DISPATCH_FLOAT(x.dtype(), "norm_backward",
                        [&] { norm_bwd_typed<scalar_t>(layer, x, w, mean, rstd, gy, gx, gw, gb); });
}

}  // namespace

MTALAB_REGISTER_KERNEL(norm_kernel, cpu, norm);
MTALAB_REGISTER_KERNEL(norm_bwd_kernel, cpu, norm_bwd);

}  // namespace mtalab::cpu
