// CPU kernels for the fused neural-net ops: softmax, norms, embedding, cross-entropy.
// All work row by row over the last dimension, one row per loop iteration, OpenMP over rows.
#include <cmath>
#include <limits>

#include "autograd/cpu/parallel.h"
#include "autograd/kernels.h"

namespace mtalab::cpu {
namespace {

int64_t row_grain(int64_t n) { return std::max<int64_t>(1, 16384 / std::max<int64_t>(n, 1)); }

template <typename T>
void softmax_typed(const Tensor& xt, const Tensor& yt, bool log, bool causal) {
  const int64_t full = xt.size(-1), rows = full ? xt.numel() / full : 0, tq = xt.dim() > 1 ? xt.size(-2) : 1;
  const T* x = static_cast<const T*>(xt.raw());
  T* y = static_cast<T*>(yt.raw());
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
  if (gwt.defined() || gbt.defined()) {
    // Column sums: parallel over columns so each output has one writer (deterministic).
    T* gw = gwt.defined() ? static_cast<T*>(gwt.raw()) : nullptr;
    T* gb = gbt.defined() ? static_cast<T*>(gbt.raw()) : nullptr;
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
