// CPU SwiGLU gate (autograd/kernels.h): silu(a) * b and its two gradients, each one pass
// (instead of a silu, a product, and in the backward four passes and two temporaries).
#include <cmath>

#include "autograd/cpu/parallel.h"
#include "autograd/cpu/simd.h"
#include "autograd/bf16_staging.h"
#include "autograd/kernels.h"

namespace mtalab::cpu {
namespace {
namespace simd {

template <class V>
MTALAB_VINLINE V swiglu_value(const V& a, const V& b) {
  return a / (1.0f + exp(-a)) * b;
}
// ga = g b silu'(a), silu'(a) = s (1 + a (1 - s)) with s = sigmoid(a);  gb = g silu(a).
template <class V>
MTALAB_VINLINE void swiglu_grads(const V& a, const V& b, const V& g, V& ga, V& gb) {
  const V s = 1.0f / (1.0f + exp(-a));
  ga = g * b * (s * (1.0f + a * (1.0f - s)));
  gb = g * (a * s);
}
template <int L>
MTALAB_VINLINE void swiglu_f32_impl(const float* a, const float* b, float* y, int64_t n) {
  using V = typename Lanes<L>::F;
  int64_t i = 0;
  for (; i + L <= n; i += L) store(y + i, swiglu_value(load<V>(a + i), load<V>(b + i)));
  if (i < n)
    store_part(y + i, swiglu_value(load_part<V>(a + i, n - i, 0.0f), load_part<V>(b + i, n - i, 0.0f)), n - i);
}
template <int L>
MTALAB_VINLINE void swiglu_bwd_f32_impl(const float* a, const float* b, const float* g, float* ga, float* gb,
                                        int64_t n) {
  using V = typename Lanes<L>::F;
  V va, vb;
  int64_t i = 0;
  for (; i + L <= n; i += L) {
    swiglu_grads(load<V>(a + i), load<V>(b + i), load<V>(g + i), va, vb);
    if (ga) store(ga + i, va);
    if (gb) store(gb + i, vb);
  }
  if (i < n) {
    swiglu_grads(load_part<V>(a + i, n - i, 0.0f), load_part<V>(b + i, n - i, 0.0f),
                 load_part<V>(g + i, n - i, 0.0f), va, vb);
    if (ga) store_part(ga + i, va, n - i);
    if (gb) store_part(gb + i, vb, n - i);
  }
}
MTALAB_SIMD_ENTRY(swiglu_f32, (const float* a, const float* b, float* y, int64_t n), (a, b, y, n))
MTALAB_SIMD_ENTRY(swiglu_bwd_f32, (const float* a, const float* b, const float* g, float* ga, float* gb, int64_t n),
                  (a, b, g, ga, gb, n))

}  // namespace simd

constexpr int64_t kGrain = 1 << 14;

void swiglu(const Tensor& a, const Tensor& b, const Tensor& y) {
  if (a.dtype() == DType::bf16) {
    Bf16Staging s;
    swiglu(s.in(a), s.in(b), s.out(y));
    return s.finish();
  }
  if (a.dtype() == DType::f32) {
    const float *ap = a.data<float>(), *bp = b.data<float>();
    float* yp = y.data<float>();
    // Chunks start at multiples of 8 so no element's value depends on the thread count.
    parallel_for((a.numel() + 7) / 8, kGrain / 8, [&](int64_t s, int64_t e) {
      simd::swiglu_f32(ap + 8 * s, bp + 8 * s, yp + 8 * s, std::min(a.numel(), 8 * e) - 8 * s);
    });
    return;
  }
  MTALAB_DISPATCH_FLOAT(a.dtype(), "swiglu", [&] {
    const scalar_t *ap = a.data<scalar_t>(), *bp = b.data<scalar_t>();
    scalar_t* yp = y.data<scalar_t>();
    parallel_for(a.numel(), kGrain, [&](int64_t s, int64_t e) {
      for (int64_t i = s; i < e; ++i) yp[i] = ap[i] / (scalar_t(1) + std::exp(-ap[i])) * bp[i];
    });
  });
}

void swiglu_bwd(const Tensor& a, const Tensor& b, const Tensor& g, const Tensor& ga, const Tensor& gb) {
  if (a.dtype() == DType::bf16) {
    Bf16Staging s;
    swiglu_bwd(s.in(a), s.in(b), s.in(g), s.out(ga), s.out(gb));
    return s.finish();
  }
  if (a.dtype() == DType::f32) {
    const float *ap = a.data<float>(), *bp = b.data<float>(), *gp = g.data<float>();
    float* gap = ga.defined() ? ga.data<float>() : nullptr;
    float* gbp = gb.defined() ? gb.data<float>() : nullptr;
    parallel_for((a.numel() + 7) / 8, kGrain / 8, [&](int64_t s, int64_t e) {
      simd::swiglu_bwd_f32(ap + 8 * s, bp + 8 * s, gp + 8 * s, gap ? gap + 8 * s : nullptr,
                           gbp ? gbp + 8 * s : nullptr, std::min(a.numel(), 8 * e) - 8 * s);
    });
    return;
  }
  MTALAB_DISPATCH_FLOAT(a.dtype(), "swiglu_backward", [&] {
    using T = scalar_t;
    const T *ap = a.data<T>(), *bp = b.data<T>(), *gp = g.data<T>();
    T* gap = ga.defined() ? ga.data<T>() : nullptr;
    T* gbp = gb.defined() ? gb.data<T>() : nullptr;
    parallel_for(a.numel(), kGrain, [&](int64_t s, int64_t e) {
      for (int64_t i = s; i < e; ++i) {
        const T sg = T(1) / (T(1) + std::exp(-ap[i]));
        if (gap) gap[i] = gp[i] * bp[i] * (sg * (T(1) + ap[i] * (T(1) - sg)));
        if (gbp) gbp[i] = gp[i] * ap[i] * sg;
      }
    });
  });
}

}  // namespace
}  // namespace mtalab::cpu

namespace mtalab {
MTALAB_REGISTER_KERNEL(swiglu_kernel, cpu, cpu::swiglu);
MTALAB_REGISTER_KERNEL(swiglu_bwd_kernel, cpu, cpu::swiglu_bwd);
}
