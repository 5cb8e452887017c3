// CPU kernels of the key-query convolution (Multi-Token Attention), forward and backward.
//
// Direct loops over the causal [T,T] maps: no im2col, no padded copies, no mask tensor.
// Input entries above the diagonal are never read (that is Mask_0 on the input) and
// output entries above the diagonal are written as 0 without being computed.
//
// Work is split into units (batch, head, block of kRowBlock rows); every output row is
// written by exactly one unit, with the same sequence of operations whatever the thread
// count. The kernel gradient is reduced per unit into a double partial, and the partials
// of one head are added in unit order, so results never depend on the thread count.
//
// Inner loops run along the key axis (contiguous). Row interiors, where no shifted read
// can leave the valid region, are done in register tiles (up to 8 vectors of outputs)
// that sum all cq*ck taps before storing; the few entries near the edges and the
// diagonal take a bounds-checked path that sums the taps in the same order. The kernel
// gradient correlates one gout row with one x row at up to 12 key lags at once, each x
// vector loaded once. The row functions are compiled for AVX-512, AVX2+FMA and baseline
// x86-64 and picked at load time (target_clones).
#include <omp.h>

#include <algorithm>
#include <cstring>
#include <type_traits>
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
#define MTALAB_LAMBDA_INLINE __attribute__((always_inline))

namespace mtalab::cpu {
namespace {

constexpr int64_t kRowBlock = 16;  // rows per work unit (fixed: results must not depend on threads)


// Fixed-width vectors (GCC vector extensions): 8 floats or 4 doubles, one AVX register,
// two SSE registers in the baseline build. Loads and stores go through memcpy (unaligned).
template <typename T>
struct Simd {
  typedef T V __attribute__((vector_size(32)));
  static constexpr int L = 32 / sizeof(T);
};

// The register tile shared by the forward and the input gradient: for u in [0, NV*L),
//   out[u] = sum_{a in [a0,a1), c in [0,ck)} K[a*ck + c] * base[a*rowstride + CS*c + u]
// summed in (a, c) order; the caller guarantees every read is inside the valid region.
template <typename T, int NV, int CS>
MTALAB_ALWAYS_INLINE void conv_tile(const T* __restrict base, int64_t rowstride, const T* __restrict K, int64_t a0,
                                    int64_t a1, int64_t ck, T* __restrict out) {
  using V = typename Simd<T>::V;
  constexpr int L = Simd<T>::L;
  V acc[NV];
#pragma GCC unroll 8
  for (int v = 0; v < NV; ++v) acc[v] = V{};
  for (int64_t a = a0; a < a1; ++a) {
    const T* ra = base + a * rowstride;
    const T* Ka = K + a * ck;
    for (int64_t c = 0; c < ck; ++c) {
      const T k = Ka[c];
      const T* sp = ra + CS * c;
#pragma GCC unroll 8
      for (int v = 0; v < NV; ++v) {
        V xv;
        std::memcpy(&xv, sp + v * L, sizeof(V));
        acc[v] += k * xv;
      }
    }
  }
#pragma GCC unroll 8
  for (int v = 0; v < NV; ++v) std::memcpy(out + v * L, &acc[v], sizeof(V));
}

// Covers [lo, hi) with tiles of NV vectors; the last tile is moved back to end at hi
// (it recomputes a few entries with the same operations, so the same values).
// tile(j0, NV) computes [j0, j0 + NV*L). Needs hi - lo >= NV*L.
template <int NV, int L, typename F>
MTALAB_ALWAYS_INLINE void tile_range(int64_t lo, int64_t hi, const F& tile) {
  constexpr int64_t W = (int64_t)NV * L;
  int64_t j = lo;
  for (; j + W <= hi; j += W) tile(j, std::integral_constant<int, NV>{});
  if (j < hi) tile(hi - W, std::integral_constant<int, NV>{});
}
// The widest tile (8, 4, 2 or 1 vectors) that fits [lo, hi); false when none fits.
template <int L, typename F>
MTALAB_ALWAYS_INLINE bool tile_interior(int64_t lo, int64_t hi, const F& tile) {
  const int64_t len = hi - lo;
  if (len >= 8 * L) tile_range<8, L>(lo, hi, tile);
  else if (len >= 4 * L) tile_range<4, L>(lo, hi, tile);
  else if (len >= 2 * L) tile_range<2, L>(lo, hi, tile);
  else if (len >= L) tile_range<1, L>(lo, hi, tile);
  else return false;
  return true;
}

// ---------------------------------------------------------------------------------
// Forward: output row i of one map (x: the map, K: this head's [cq*ck] kernel).
// ---------------------------------------------------------------------------------

// out[jA, jB) with every read bounds-checked; taps summed in (a, c) order.
template <typename T>
MTALAB_ALWAYS_INLINE void fwd_span(const T* __restrict x, const T* __restrict K, T* __restrict out,
                                   const KqGeom& g, int64_t i, int64_t jA, int64_t jB) {
  for (int64_t j = jA; j < jB; ++j) out[j] = 0;
  for (int64_t a = 0; a < g.cq; ++a) {
    const int64_t r = i - (g.cq - 1) + a;  // input row read by tap row a
    if (r < 0) continue;
    const T* xr = x + r * g.n;
    for (int64_t c = 0; c < g.ck; ++c) {
      const T k = K[a * g.ck + c];
      const int64_t d = c - g.p;  // out[j] reads xr[j + d], valid for 0 <= j + d <= r
      const int64_t lo = std::max(jA, -d), hi = std::min(jB, r - d + 1);
      const T* src = xr + d;
      for (int64_t j = lo; j < hi; ++j) out[j] += k * src[j];
    }
  }
}

template <typename T>
MTALAB_ALWAYS_INLINE void fwd_row_impl(const T* x, const T* K, T* out, const KqGeom& g, int64_t i) {
  // Interior columns: j - p >= 0 and j - p + ck - 1 <= i - (cq - 1) (the lowest row read).
  const int64_t in_lo = g.p, in_hi = i - (g.cq - 1) - (g.ck - 1 - g.p) + 1;  // [in_lo, in_hi)
  const T* base = x + (i - (g.cq - 1)) * g.n - g.p;  // tap (a, c) of column j reads base[a*n + c + j]
  const bool tiled = tile_interior<Simd<T>::L>(in_lo, in_hi, [&](int64_t j0, auto nv) MTALAB_LAMBDA_INLINE {
    conv_tile<T, decltype(nv)::value, +1>(base + j0, g.n, K, 0, g.cq, g.ck, out + j0);
  });
  if (tiled) {
    fwd_span(x, K, out, g, i, 0, in_lo);
    fwd_span(x, K, out, g, i, in_hi, i + 1);
  } else {
    fwd_span(x, K, out, g, i, 0, i + 1);
  }
  for (int64_t j = i + 1; j < g.n; ++j) out[j] = 0;  // causal: never computed
}

}  // namespace

MTALAB_ISA_CLONES void kq_conv_rows(const float* x, const float* K, float* out, const KqGeom& g, int64_t i0,
                                    int64_t i1) {
  for (int64_t i = i0; i < i1; ++i) fwd_row_impl(x, K, out + i * g.n, g, i);
}
MTALAB_ISA_CLONES void kq_conv_rows(const double* x, const double* K, double* out, const KqGeom& g, int64_t i0,
                                    int64_t i1) {
  for (int64_t i = i0; i < i1; ++i) fwd_row_impl(x, K, out + i * g.n, g, i);
}

namespace {

// ---------------------------------------------------------------------------------
// Backward, input row r of one map. Tap (a, c) links input (r, s) to output
// (i, j) = (r + cq - 1 - a, s + p - c), valid when i < T and 0 <= j <= i:
//   gx[r, s]  = sum_{a,c} K[a,c] * gout[i, j]          (s <= r; 0 above the diagonal)
//   gK[a, c] += sum_s gout[i, j] * x[r, s]
// ---------------------------------------------------------------------------------

template <typename T>
MTALAB_ALWAYS_INLINE void gx_span(const T* __restrict go, const T* __restrict K, T* __restrict gx, const KqGeom& g,
                                  int64_t r, int64_t sA, int64_t sB) {
  for (int64_t s = sA; s < sB; ++s) gx[s] = 0;
  for (int64_t a = 0; a < g.cq; ++a) {
    const int64_t i = r + (g.cq - 1) - a;
    if (i >= g.n) continue;
    const T* gi = go + i * g.n;
    for (int64_t c = 0; c < g.ck; ++c) {
      const T k = K[a * g.ck + c];
      const int64_t e = g.p - c;  // gx[s] reads gi[s + e], valid for 0 <= s + e <= i
      const int64_t lo = std::max(sA, -e), hi = std::min(sB, i - e + 1);
      const T* src = gi + e;
      for (int64_t s = lo; s < hi; ++s) gx[s] += k * src[s];
    }
  }
}

template <typename T>
MTALAB_ALWAYS_INLINE void gx_row_impl(const T* go, const T* K, T* gx, const KqGeom& g, int64_t r) {
  // Interior: s + p - (ck - 1) >= 0 and s + p <= r (the lowest output row, i = r).
  const int64_t in_lo = g.ck - 1 - g.p, in_hi = r - g.p + 1;
  const int64_t a0 = std::max<int64_t>(0, r + g.cq - g.n);  // taps with i = r + cq - 1 - a < T
  const T* base = go + (r + g.cq - 1) * g.n + g.p;         // tap (a, c) of s reads base[-a*n - c + s]
  const bool tiled = tile_interior<Simd<T>::L>(in_lo, in_hi, [&](int64_t s0, auto nv) MTALAB_LAMBDA_INLINE {
    conv_tile<T, decltype(nv)::value, -1>(base + s0, -g.n, K, a0, g.cq, g.ck, gx + s0);
  });
  if (tiled) {
    gx_span(go, K, gx, g, r, 0, in_lo);
    gx_span(go, K, gx, g, r, in_hi, r + 1);
  } else {
    gx_span(go, K, gx, g, r, 0, r + 1);
  }
  for (int64_t s = r + 1; s < g.n; ++s) gx[s] = 0;  // Mask_0: no gradient above the diagonal
}

// Sum of the lanes of U vectors, as a fixed tree (short dependency chains).
template <typename T, int U>
MTALAB_ALWAYS_INLINE T hsum(const typename Simd<T>::V* A) {
  constexpr int L = Simd<T>::L;
  typename Simd<T>::V v = A[0];
#pragma GCC unroll 4
  for (int u = 1; u < U; ++u) v += A[u];
  T lanes[L];
  std::memcpy(lanes, &v, sizeof(lanes));
#pragma GCC unroll 4
  for (int w = L / 2; w > 0; w /= 2)
#pragma GCC unroll 4
    for (int q = 0; q < w; ++q) lanes[q] += lanes[q + w];
  return lanes[0];
}

// For the CB taps t of a block, acc[t] += sum_{s in [lo,hi)} gi[s + e0 - t] * xr[s], with
// CB*U vector accumulators (x loaded once for CB taps; U independent chains per tap).
template <typename T, int CB, int U>
MTALAB_ALWAYS_INLINE void gk_block(const T* __restrict gi, const T* __restrict xr, int64_t lo, int64_t hi,
                                   int64_t e0, double* acc) {
  using V = typename Simd<T>::V;
  constexpr int L = Simd<T>::L;
  V A[CB][U];
#pragma GCC unroll 12
  for (int t = 0; t < CB; ++t)
#pragma GCC unroll 4
    for (int u = 0; u < U; ++u) A[t][u] = V{};
  int64_t s = lo;
  for (; s + U * L <= hi; s += U * L) {
    V xv[U];
#pragma GCC unroll 4
    for (int u = 0; u < U; ++u) std::memcpy(&xv[u], xr + s + u * L, sizeof(V));
#pragma GCC unroll 12
    for (int t = 0; t < CB; ++t) {
      const T* gp = gi + s + e0 - t;
#pragma GCC unroll 4
      for (int u = 0; u < U; ++u) {
        V gv;
        std::memcpy(&gv, gp + u * L, sizeof(V));
        A[t][u] += gv * xv[u];
      }
    }
  }
  for (int t = 0; t < CB; ++t) {
    T tail = 0;
    for (int64_t ss = s; ss < hi; ++ss) tail += gi[ss + e0 - t] * xr[ss];
    acc[t] += (double)(hsum<T, U>(A[t]) + tail);
  }
}

// acc[a*ck + c] += sum_s gout[i, s + p - c] * x[r, s] over the valid s.
template <typename T>
MTALAB_ALWAYS_INLINE void gk_row_impl(const T* go, const T* x, double* acc, const KqGeom& g, int64_t r) {
  const T* xr = x + r * g.n;
  for (int64_t a = 0; a < g.cq; ++a) {
    const int64_t i = r + (g.cq - 1) - a;
    if (i >= g.n) continue;
    const T* gi = go + i * g.n;
    double* acc_a = acc + a * g.ck;
    for (int64_t c0 = 0; c0 < g.ck;) {
      const int64_t left = g.ck - c0;
      const int64_t cb = left <= 12 ? left : 8;  // up to 12 lags in one pass (registers permitting)
      // Tap c reads s in [max(0, c-p), min(r, i-p+c)]; the block's common range:
      const int64_t lo = std::max<int64_t>(0, c0 + cb - 1 - g.p);
      const int64_t hi = std::max(lo, std::min(r, i - g.p + c0) + 1);
      const int64_t e0 = g.p - c0;
      double* at = acc_a + c0;
      switch (cb) {  // CB*U >= 4 independent accumulator chains
        case 12: gk_block<T, 12, 1>(gi, xr, lo, hi, e0, at); break;
        case 11: gk_block<T, 11, 1>(gi, xr, lo, hi, e0, at); break;
        case 10: gk_block<T, 10, 1>(gi, xr, lo, hi, e0, at); break;
        case 9: gk_block<T, 9, 1>(gi, xr, lo, hi, e0, at); break;
        case 8: gk_block<T, 8, 1>(gi, xr, lo, hi, e0, at); break;
        case 7: gk_block<T, 7, 1>(gi, xr, lo, hi, e0, at); break;
        case 6: gk_block<T, 6, 1>(gi, xr, lo, hi, e0, at); break;
        case 5: gk_block<T, 5, 1>(gi, xr, lo, hi, e0, at); break;
        case 4: gk_block<T, 4, 1>(gi, xr, lo, hi, e0, at); break;
        case 3: gk_block<T, 3, 2>(gi, xr, lo, hi, e0, at); break;
        case 2: gk_block<T, 2, 2>(gi, xr, lo, hi, e0, at); break;
        default: gk_block<T, 1, 4>(gi, xr, lo, hi, e0, at); break;
      }
      for (int64_t c = c0; c < c0 + cb; ++c) {  // each tap's reads outside the common range
        const int64_t e = g.p - c, lo_c = std::max<int64_t>(0, -e), hi_c = std::min(r, i - e) + 1;
        double edge = 0;
        for (int64_t s = lo_c; s < std::min(lo, hi_c); ++s) edge += (double)gi[s + e] * xr[s];
        for (int64_t s = std::max(hi, lo_c); s < hi_c; ++s) edge += (double)gi[s + e] * xr[s];
        acc_a[c] += edge;
      }
      c0 += cb;
    }
  }
}

}  // namespace

MTALAB_ISA_CLONES void kq_conv_bwd_rows(const float* go, const float* x, const float* K, float* gx, double* acc,
                                        const KqGeom& g, int64_t r0, int64_t r1) {
  for (int64_t r = r0; r < r1; ++r) {
    if (gx) gx_row_impl(go, K, gx + r * g.n, g, r);
    if (acc) gk_row_impl(go, x, acc, g, r);
  }
}
MTALAB_ISA_CLONES void kq_conv_bwd_rows(const double* go, const double* x, const double* K, double* gx, double* acc,
                                        const KqGeom& g, int64_t r0, int64_t r1) {
  for (int64_t r = r0; r < r1; ++r) {
    if (gx) gx_row_impl(go, K, gx + r * g.n, g, r);
    if (acc) gk_row_impl(go, x, acc, g, r);
  }
}

namespace {

template <typename T>
void kq_conv_typed(const Tensor& xt, const Tensor& kt, int64_t p, const Tensor& ot) {
  const int64_t B = xt.size(0), H = xt.size(1), n = xt.size(2);
  const KqGeom g{n, kt.size(1), kt.size(2), p};
  const T* x = static_cast<const T*>(xt.raw());
  const T* K = static_cast<const T*>(kt.raw());
  T* out = static_cast<T*>(ot.raw());
  const int64_t blocks = (n + kRowBlock - 1) / kRowBlock;
  for_units(B * H * blocks, [&](int64_t u) {
    const int64_t bh = u / blocks, blk = u % blocks, h = bh % H;
    const int64_t i0 = blk * kRowBlock, i1 = std::min(n, i0 + kRowBlock);
    kq_conv_rows(x + bh * n * n, K + h * g.cq * g.ck, out + bh * n * n, g, i0, i1);
  });
}

template <typename T>
void kq_conv_bwd_typed(const Tensor& xt, const Tensor& kt, int64_t p, const Tensor& got, const Tensor& gxt,
                       const Tensor& gkt) {
  const int64_t B = xt.size(0), H = xt.size(1), n = xt.size(2);
  const KqGeom g{n, kt.size(1), kt.size(2), p};
  const int64_t taps = g.cq * g.ck;
  const T* x = static_cast<const T*>(xt.raw());
  const T* K = static_cast<const T*>(kt.raw());
  const T* go = static_cast<const T*>(got.raw());
  T* gx = gxt.defined() ? static_cast<T*>(gxt.raw()) : nullptr;
  const bool want_gk = gkt.defined();
  const int64_t blocks = (n + kRowBlock - 1) / kRowBlock, units = B * H * blocks;
  std::vector<double> partial(want_gk ? units * taps : 0, 0.0);  // one [cq*ck] partial per unit
  for_units(units, [&](int64_t u) {
    const int64_t bh = u / blocks, blk = u % blocks, h = bh % H;
    const int64_t r0 = blk * kRowBlock, r1 = std::min(n, r0 + kRowBlock);
    kq_conv_bwd_rows(go + bh * n * n, x + bh * n * n, K + h * taps, gx ? gx + bh * n * n : nullptr,
             want_gk ? partial.data() + u * taps : nullptr, g, r0, r1);
  });
  if (!want_gk) return;
  // gK[h] = sum over units of head h, in unit order (b-major, then row block).
  sum_unit_partials(partial, B, H, blocks, taps, static_cast<T*>(gkt.raw()));
}

void kq_conv(const Tensor& x, const Tensor& kernel, int64_t pad_left, const Tensor& out) {
  if (x.dtype() == DType::bf16) {
    Bf16Staging s;
    kq_conv(s.in(x), s.in(kernel), pad_left, s.out(out));
    return s.finish();
  }
  MTALAB_DISPATCH_FLOAT(x.dtype(), "kq_conv", [&] { kq_conv_typed<scalar_t>(x, kernel, pad_left, out); });
}
void kq_conv_bwd(const Tensor& x, const Tensor& kernel, int64_t pad_left, const Tensor& gout, const Tensor& gx,
                 const Tensor& gkernel) {
  if (x.dtype() == DType::bf16) {
    Bf16Staging s;
    kq_conv_bwd(s.in(x), s.in(kernel), pad_left, s.in(gout), s.out(gx), s.out(gkernel));
    return s.finish();
  }
  MTALAB_DISPATCH_FLOAT(x.dtype(), "kq_conv_backward",
                        [&] { kq_conv_bwd_typed<scalar_t>(x, kernel, pad_left, gout, gx, gkernel); });
}

}  // namespace
}  // namespace mtalab::cpu

namespace mtalab {
MTALAB_REGISTER_KERNEL(kq_conv_kernel, cpu, cpu::kq_conv);
MTALAB_REGISTER_KERNEL(kq_conv_bwd_kernel, cpu, cpu::kq_conv_bwd);
}  // namespace mtalab
