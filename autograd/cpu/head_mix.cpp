// CPU kernels of head mixing (Multi-Token Attention): within each group of c_h
// consecutive heads, every output map is a weighted sum of the group's input maps.
//
// Only the causal entries k <= q are computed: in the model the inputs above the
// diagonal are masked anyway (zeros from kq_conv / causal_softmax, or scores that the
// following causal_softmax ignores), so the outputs there are written as 0 and no
// gradient flows to them. No mask tensor is ever built.
//
// Work units are (batch, group, block of kRowBlock rows); every output row has one
// writer, and the mix gradient is reduced per unit into a double partial, the partials
// of a group added in unit order, so results never depend on the thread count.
#include <omp.h>

#include <algorithm>
#include <cstring>
#include <vector>

#include "autograd/cpu/mta_rows.h"
#include "autograd/cpu/parallel.h"
#include "autograd/bf16_staging.h"
#include "autograd/kernels.h"

#if defined(__x86_64__) && defined(__GNUC__) && !defined(__clang__) && !defined(MTALAB_NO_ISA_CLONES)
#define MTALAB_ISA_CLONES __attribute__((target_clones("arch=x86-64-v4", "arch=x86-64-v3", "default")))
#else
#define MTALAB_ISA_CLONES
#endif
#define MTALAB_ALWAYS_INLINE inline __attribute__((always_inline))

namespace mtalab::cpu {
namespace {

constexpr int64_t kRowBlock = 16;

// dst[0, len) = sum_i w[i * wstride] * src[i][0, len), for the c_h maps of one group.
// src rows are `map` elements apart (one map per head).
template <typename T>
MTALAB_ALWAYS_INLINE void mix_row(const T* __restrict src, int64_t map, const T* w, int64_t wstride, int64_t ch,
                                  T* __restrict dst, int64_t len) {
  const T w0 = w[0];
  for (int64_t k = 0; k < len; ++k) dst[k] = w0 * src[k];
  for (int64_t i = 1; i < ch; ++i) {
    const T wi = w[i * wstride];
    const T* s = src + i * map;
    for (int64_t k = 0; k < len; ++k) dst[k] += wi * s[k];
  }
}

constexpr int64_t kMixTile = 16;  // groups up to this size mix a column block in registers

// dst_j[0, len) = sum_i w[i * is + j * js] * src_i[0, len) for every j < ch, src_i and dst_j
// `map` elements apart: each block of columns of the ch inputs is loaded once for all ch
// outputs (a row at a time would read every input ch times). Sums in i order.
template <typename T>
MTALAB_ALWAYS_INLINE void mix_all(const T* __restrict src, int64_t map, const T* w, int64_t is, int64_t js, int64_t ch,
                                  T* __restrict dst, int64_t len) {
  if (ch > kMixTile) {
    for (int64_t j = 0; j < ch; ++j) mix_row(src, map, w + j * js, is, ch, dst + j * map, len);
    return;
  }
  typedef T V __attribute__((vector_size(32)));
  constexpr int64_t L = 32 / sizeof(T);
  T wt[kMixTile * kMixTile];
  for (int64_t i = 0; i < ch; ++i)
    for (int64_t j = 0; j < ch; ++j) wt[i * ch + j] = w[i * is + j * js];
  int64_t k = 0;
  for (; k + L <= len; k += L) {
    V x[kMixTile];
    for (int64_t i = 0; i < ch; ++i) std::memcpy(&x[i], src + i * map + k, sizeof(V));
    for (int64_t j = 0; j < ch; ++j) {
      V acc = wt[j] * x[0];
      for (int64_t i = 1; i < ch; ++i) acc += wt[i * ch + j] * x[i];
      std::memcpy(dst + j * map + k, &acc, sizeof(V));
    }
  }
  for (; k < len; ++k)
    for (int64_t j = 0; j < ch; ++j) {
      T acc = wt[j] * src[k];
      for (int64_t i = 1; i < ch; ++i) acc += wt[i * ch + j] * src[i * map + k];
      dst[j * map + k] = acc;
    }
}

// acc[i * ch + j] += sum_{k < len} x_i[k] g_j[k] for all i, j < ch (maps `map` apart): each
// column block of the 2 ch rows is loaded once. Lane sums in a fixed tree, added in double.
template <typename T>
MTALAB_ALWAYS_INLINE void dots_all(const T* __restrict x, const T* __restrict g, int64_t map, int64_t ch, int64_t len,
                                   double* acc);

// sum_{k < len} a[k] * b[k], with four independent vector accumulators (fixed order).
// The body assumes U == 4.
template <typename T>
MTALAB_ALWAYS_INLINE T dot(const T* __restrict a, const T* __restrict b, int64_t len) {
  typedef T V __attribute__((vector_size(32)));
  constexpr int L = 32 / sizeof(T), U = 4;
  V A[U];
#pragma GCC unroll 4
  for (int u = 0; u < U; ++u) A[u] = V{};
  int64_t k = 0;
  for (; k + U * L <= len; k += U * L)
#pragma GCC unroll 4
    for (int u = 0; u < U; ++u) {
      V va, vb;
      std::memcpy(&va, a + k + u * L, sizeof(V));
      std::memcpy(&vb, b + k + u * L, sizeof(V));
      A[u] += va * vb;
    }
  T tail = 0;
  for (; k < len; ++k) tail += a[k] * b[k];
  // Lanes summed as a fixed tree (short dependency chains).
  V v = (A[0] + A[1]) + (A[2] + A[3]);
  T lanes[L];
  std::memcpy(lanes, &v, sizeof(lanes));
#pragma GCC unroll 4
  for (int w = L / 2; w > 0; w /= 2)
#pragma GCC unroll 4
    for (int q = 0; q < w; ++q) lanes[q] += lanes[q + w];
  return lanes[0] + tail;
}

template <typename T>
MTALAB_ALWAYS_INLINE void dots_all(const T* __restrict x, const T* __restrict g, int64_t map, int64_t ch, int64_t len,
                                   double* acc) {
  if (ch > 8) {
    for (int64_t i = 0; i < ch; ++i)
      for (int64_t j = 0; j < ch; ++j) acc[i * ch + j] += dot(x + i * map, g + j * map, len);
    return;
  }
  typedef T V __attribute__((vector_size(32)));
  constexpr int64_t L = 32 / sizeof(T);
  V A[64];
  for (int64_t t = 0; t < ch * ch; ++t) A[t] = V{};
  int64_t k = 0;
  for (; k + L <= len; k += L) {
    V xv[8], gv[8];
    for (int64_t i = 0; i < ch; ++i) {
      std::memcpy(&xv[i], x + i * map + k, sizeof(V));
      std::memcpy(&gv[i], g + i * map + k, sizeof(V));
    }
    for (int64_t i = 0; i < ch; ++i)
      for (int64_t j = 0; j < ch; ++j) A[i * ch + j] += xv[i] * gv[j];
  }
  for (int64_t i = 0; i < ch; ++i)
    for (int64_t j = 0; j < ch; ++j) {
      T lanes[L];
      std::memcpy(lanes, &A[i * ch + j], sizeof(lanes));
      for (int64_t w = L / 2; w > 0; w /= 2)
        for (int64_t q = 0; q < w; ++q) lanes[q] += lanes[q + w];
      T tail = 0;
      for (int64_t kk = k; kk < len; ++kk) tail += x[i * map + kk] * g[j * map + kk];
      acc[i * ch + j] += (double)(lanes[0] + tail);
    }
}

// Rows [q0, q1) of one group: x and out point at the group's first map.
template <typename T>
MTALAB_ALWAYS_INLINE void fwd_rows_impl(const T* x, const T* M, T* out, int64_t n, int64_t map, int64_t ch, int64_t q0,
                                        int64_t q1) {
  for (int64_t q = q0; q < q1; ++q) {
    mix_all(x + q * n, map, M, ch, 1, ch, out + q * n, q + 1);  // out_j = sum_i M[i,j] x_i
    for (int64_t j = 0; j < ch; ++j) std::fill(out + j * map + q * n + q + 1, out + j * map + q * n + n, T(0));
  }
}

template <typename T>
MTALAB_ALWAYS_INLINE void bwd_rows_impl(const T* x, const T* M, const T* go, T* gx, double* acc, int64_t n, int64_t map,
                                        int64_t ch, int64_t q0, int64_t q1) {
  for (int64_t q = q0; q < q1; ++q) {
    if (gx) {
      mix_all(go + q * n, map, M, 1, ch, ch, gx + q * n, q + 1);  // gx_i = sum_j M[i,j] gout_j
      for (int64_t i = 0; i < ch; ++i) std::fill(gx + i * map + q * n + q + 1, gx + i * map + q * n + n, T(0));
    }
    if (acc) dots_all(x + q * n, go + q * n, map, ch, q + 1, acc);  // gM[i,j] += <x_i, gout_j> over k <= q
  }
}

}  // namespace

MTALAB_ISA_CLONES void head_mix_rows(const float* x, const float* M, float* out, int64_t n, int64_t hs, int64_t ch,
                                     int64_t q0, int64_t q1) {
  fwd_rows_impl(x, M, out, n, hs, ch, q0, q1);
}
MTALAB_ISA_CLONES void head_mix_rows(const double* x, const double* M, double* out, int64_t n, int64_t hs, int64_t ch,
                                     int64_t q0, int64_t q1) {
  fwd_rows_impl(x, M, out, n, hs, ch, q0, q1);
}
MTALAB_ISA_CLONES void head_mix_bwd_rows(const float* x, const float* M, const float* go, float* gx, double* acc,
                                         int64_t n, int64_t hs, int64_t ch, int64_t q0, int64_t q1) {
  bwd_rows_impl(x, M, go, gx, acc, n, hs, ch, q0, q1);
}
MTALAB_ISA_CLONES void head_mix_bwd_rows(const double* x, const double* M, const double* go, double* gx, double* acc,
                                         int64_t n, int64_t hs, int64_t ch, int64_t q0, int64_t q1) {
  bwd_rows_impl(x, M, go, gx, acc, n, hs, ch, q0, q1);
}

namespace {

template <typename T>
void head_mix_typed(const Tensor& xt, const Tensor& mt, const Tensor& ot) {
  const int64_t B = xt.size(0), H = xt.size(1), n = xt.size(2), ch = mt.size(1), G = H / ch;
  const T* x = static_cast<const T*>(xt.raw());
  const T* M = static_cast<const T*>(mt.raw());
  T* out = static_cast<T*>(ot.raw());
  const int64_t blocks = (n + kRowBlock - 1) / kRowBlock;
  for_units(B * G * blocks, [&](int64_t u) {
    const int64_t bg = u / blocks, blk = u % blocks, grp = bg % G;
    const int64_t q0 = blk * kRowBlock, q1 = std::min(n, q0 + kRowBlock);
    const int64_t off = bg * ch * n * n;  // first map of the group: (b*G + g)*ch == b*H + g*ch
    head_mix_rows(x + off, M + grp * ch * ch, out + off, n, n * n, ch, q0, q1);
  });
}

template <typename T>
void head_mix_bwd_typed(const Tensor& xt, const Tensor& mt, const Tensor& got, const Tensor& gxt,
                        const Tensor& gmt) {
  const int64_t B = xt.size(0), H = xt.size(1), n = xt.size(2), ch = mt.size(1), G = H / ch;
  const T* x = static_cast<const T*>(xt.raw());
  const T* M = static_cast<const T*>(mt.raw());
  const T* go = static_cast<const T*>(got.raw());
  T* gx = gxt.defined() ? static_cast<T*>(gxt.raw()) : nullptr;
  const bool want_gm = gmt.defined();
  const int64_t blocks = (n + kRowBlock - 1) / kRowBlock, units = B * G * blocks, taps = ch * ch;
  std::vector<double> partial(want_gm ? units * taps : 0, 0.0);
  for_units(units, [&](int64_t u) {
    const int64_t bg = u / blocks, blk = u % blocks, grp = bg % G;
    const int64_t q0 = blk * kRowBlock, q1 = std::min(n, q0 + kRowBlock);
    const int64_t off = bg * ch * n * n;
    head_mix_bwd_rows(x + off, M + grp * taps, go + off, gx ? gx + off : nullptr,
                      want_gm ? partial.data() + u * taps : nullptr, n, n * n, ch, q0, q1);
  });
  if (!want_gm) return;
  sum_unit_partials(partial, B, G, blocks, taps, static_cast<T*>(gmt.raw()));
}

void head_mix(const Tensor& x, const Tensor& mix, const Tensor& out) {
  if (x.dtype() == DType::bf16) {
    Bf16Staging s;
    head_mix(s.in(x), s.in(mix), s.out(out));
    return s.finish();
  }
  MTALAB_DISPATCH_FLOAT(x.dtype(), "head_mix", [&] { head_mix_typed<scalar_t>(x, mix, out); });
}
void head_mix_bwd(const Tensor& x, const Tensor& mix, const Tensor& gout, const Tensor& gx, const Tensor& gmix) {
  if (x.dtype() == DType::bf16) {
    Bf16Staging s;
    head_mix_bwd(s.in(x), s.in(mix), s.in(gout), s.out(gx), s.out(gmix));
    return s.finish();
  }
  MTALAB_DISPATCH_FLOAT(x.dtype(), "head_mix_backward",
                        [&] { head_mix_bwd_typed<scalar_t>(x, mix, gout, gx, gmix); });
}

}  // namespace
}  // namespace mtalab::cpu

namespace mtalab {
MTALAB_REGISTER_KERNEL(head_mix_kernel, cpu, cpu::head_mix);
MTALAB_REGISTER_KERNEL(head_mix_bwd_kernel, cpu, cpu::head_mix_bwd);
}  // namespace mtalab
