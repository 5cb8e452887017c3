// CPU cross-entropy per row (log-sum-exp in double) and its gradient.
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

MTALAB_SIMD_ENTRY(lse, (const float* logits, float* lse, int64_t r0, int64_t r1, int64_t V),
                  (logits, lse, r0, r1, V))
MTALAB_SIMD_ENTRY(ce_bwd,
                  (const float* logits, const float* lse, const float* scale, float* g, int64_t r0, int64_t r1,
                   int64_t V),
                  (logits, lse, scale, g, r0, r1, V))


}  // namespace simd

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
  if (logits.dtype() == DType::bf16) return cross_entropy(Bf16Staging().in(logits), target, loss, lse);  // loss, lse: float32
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
  if (logits.dtype() == DType::bf16) {  // lse and scale are float32
    Bf16Staging s;
    cross_entropy_bwd(s.in(logits), target, lse, scale, s.out(g));
    return s.finish();
  }
  MTALAB_DISPATCH_FLOAT(logits.dtype(), "cross_entropy_backward", [&] {
    MTALAB_DISPATCH_INDEX(target.dtype(), "cross_entropy_backward",
                          [&] { cross_entropy_bwd_typed<scalar_t, index_t>(logits, target, lse, scale, g); });
  });
}

}  // namespace

MTALAB_REGISTER_KERNEL(cross_entropy_kernel, cpu, cross_entropy);
MTALAB_REGISTER_KERNEL(cross_entropy_bwd_kernel, cpu, cross_entropy_bwd);

}  // namespace mtalab::cpu
