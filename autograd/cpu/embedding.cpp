// CPU embedding lookup and its gradient (a scatter-add in token order).
#include <algorithm>
#include <cmath>
#include <limits>
#include <vector>

#include "autograd/cpu/parallel.h"
#include "autograd/bf16_staging.h"
#include "autograd/kernels.h"

namespace mtalab::cpu {
namespace {
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
  if (w.dtype() == DType::bf16) {
    Bf16Staging s;
    embedding(s.in(w), idx, s.out(out));
    return s.finish();
  }
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
  if (gw.dtype() == DType::bf16) {
    Bf16Staging s;
    embedding_bwd(s.in(g), idx, s.out(gw));
    return s.finish();
  }
  MTALAB_DISPATCH_FLOAT(gw.dtype(), "embedding_backward", [&] {
    MTALAB_DISPATCH_INDEX(idx.dtype(), "embedding_backward", [&] { embedding_bwd_typed<scalar_t, index_t>(g, idx, gw); });
  });
}

}  // namespace

MTALAB_REGISTER_KERNEL(embedding_kernel, cpu, embedding);
MTALAB_REGISTER_KERNEL(embedding_bwd_kernel, cpu, embedding_bwd);

}  // namespace mtalab::cpu
