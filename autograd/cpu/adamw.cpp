// CPU fused AdamW update: one pass over each parameter instead of a dozen tensor ops.
#include <cmath>

#include "autograd/cpu/parallel.h"
#include "autograd/bf16_staging.h"
#include "autograd/kernels.h"

namespace mtalab::cpu {
namespace {

template <typename T>
void adamw_typed(const Tensor& pt, const Tensor& gt, const Tensor& mt, const Tensor& vt, AdamWArgs a) {
  T* p = static_cast<T*>(pt.raw());
  const T* g = static_cast<const T*>(gt.raw());
  T* m = static_cast<T*>(mt.raw());
  T* v = static_cast<T*>(vt.raw());
  const T lr = (T)a.lr, b1 = (T)a.beta1, b2 = (T)a.beta2, eps = (T)a.eps, decay = (T)(1.0 - a.lr * a.weight_decay);
  const T ic1 = (T)(1.0 / a.c1), ic2 = (T)(1.0 / a.c2);
  parallel_for(pt.numel(), 1 << 14, [&](int64_t s, int64_t e) {
    for (int64_t i = s; i < e; ++i) {
      const T gi = g[i];
      m[i] = b1 * m[i] + (T(1) - b1) * gi;
      v[i] = b2 * v[i] + (T(1) - b2) * gi * gi;
      p[i] = p[i] * decay - lr * (m[i] * ic1) / (std::sqrt(v[i] * ic2) + eps);
    }
  });
}

void adamw(const Tensor& p, const Tensor& g, const Tensor& m, const Tensor& v, AdamWArgs a) {
  if (!p.is_contiguous() || !g.is_contiguous() || !m.is_contiguous() || !v.is_contiguous())
    throw std::logic_error("adamw kernel: tensors must be contiguous");
  if (p.dtype() == DType::bf16) {
    Bf16Staging s;
    adamw(s.out(p, true), s.in(g), s.out(m, true), s.out(v, true), a);
    return s.finish();
  }
  MTALAB_DISPATCH_FLOAT(p.dtype(), "adamw", [&] { adamw_typed<scalar_t>(p, g, m, v, a); });
}

}  // namespace
}  // namespace mtalab::cpu

namespace mtalab {
MTALAB_REGISTER_KERNEL(adamw_kernel, cpu, cpu::adamw);
}
