// CPU reductions over one dimension of a contiguous tensor: view it as [outer, r, inner].
#include <algorithm>
#include <cmath>
#include <limits>

#include "autograd/cpu/parallel.h"
#include "autograd/cpu/simd.h"
#include "autograd/bf16_staging.h"
#include "autograd/kernels.h"

namespace mtalab::cpu {
namespace {
namespace simd {

// sum of x[0, n): blocks of 16 vectors are summed in float (each lane adds 16 values,
// as a tree of depth 4 over 4 accumulators), and the block sums in double, so the error
// does not grow with n. Fixed order throughout.
template <int L>
MTALAB_VINLINE double sum_row(const float* x, int64_t n) {
  using F = typename Lanes<L>::F;
  using D = typename Lanes<L>::D;
  D acc = {};
  int64_t j = 0;
  for (; j + 16 * L <= n; j += 16 * L) {
    const float* p = x + j;
    F a = load<F>(p), b = load<F>(p + L), c = load<F>(p + 2 * L), d = load<F>(p + 3 * L);
    for (int k = 4 * L; k < 16 * L; k += 4 * L) {
      a += load<F>(p + k), b += load<F>(p + k + L), c += load<F>(p + k + 2 * L), d += load<F>(p + k + 3 * L);
    }
    const F t = (a + b) + (c + d);
    acc += lo<L>(t) + hi<L>(t);
  }
  double s = 0;
  for (size_t l = 0; l < sizeof(D) / sizeof(double); ++l) s += acc[l];
  for (; j < n; ++j) s += x[j];
  return s;
}
// out[i] = sum of row i (length r) for rows [i0, i1).
template <int L>
MTALAB_VINLINE void sum_rows_impl(const float* x, float* out, int64_t i0, int64_t i1, int64_t r) {
  for (int64_t i = i0; i < i1; ++i) out[i] = (float)sum_row<L>(x + i * r, r);
}
// part[i] = sum of block i of x[0, n) cut in blocks of bs, for blocks [i0, i1).
template <int L>
MTALAB_VINLINE void sum_blocks_impl(const float* x, double* part, int64_t i0, int64_t i1, int64_t bs, int64_t n) {
  for (int64_t i = i0; i < i1; ++i) part[i] = sum_row<L>(x + i * bs, std::min(n, (i + 1) * bs) - i * bs);
}
// out[j] = sum over q < r of base[q * inner + j] for j < jn (<= kTile): groups of 8 rows
// are summed in float (a tree of depth 3), the group sums in double, in row order.
template <int L>
MTALAB_VINLINE void sum_cols_impl(const float* base, int64_t r, int64_t inner, int64_t jn, float* out) {
  using F = typename Lanes<L>::F;
  double acc[256];
  std::fill(acc, acc + jn, 0.0);
  int64_t q = 0;
  for (; q + 8 <= r; q += 8) {
    const float* row = base + q * inner;
    int64_t j = 0;
    for (; j + L <= jn; j += L) {
      const float* p = row + j;
      const F f = ((load<F>(p) + load<F>(p + inner)) + (load<F>(p + 2 * inner) + load<F>(p + 3 * inner))) +
                  ((load<F>(p + 4 * inner) + load<F>(p + 5 * inner)) + (load<F>(p + 6 * inner) + load<F>(p + 7 * inner)));
      add_wide<L>(acc + j, f);
    }
    for (; j < jn; ++j) {
      const float* p = row + j;
      acc[j] += ((p[0] + p[inner]) + (p[2 * inner] + p[3 * inner])) +
                ((p[4 * inner] + p[5 * inner]) + (p[6 * inner] + p[7 * inner]));
    }
  }
  for (; q < r; ++q) {
    const float* row = base + q * inner;
    int64_t j = 0;
    for (; j + L <= jn; j += L) add_wide<L>(acc + j, load<F>(row + j));
    for (; j < jn; ++j) acc[j] += row[j];
  }
  for (int64_t j = 0; j < jn; ++j) out[j] = (float)acc[j];
}

MTALAB_SIMD_ENTRY(sum_rows, (const float* x, float* out, int64_t i0, int64_t i1, int64_t r), (x, out, i0, i1, r))
MTALAB_SIMD_ENTRY(sum_blocks, (const float* x, double* part, int64_t i0, int64_t i1, int64_t bs, int64_t n),
                  (x, part, i0, i1, bs, n))
MTALAB_SIMD_ENTRY(sum_cols, (const float* base, int64_t r, int64_t inner, int64_t jn, float* out),
                  (base, r, inner, jn, out))

}  // namespace simd

template <typename T>
void reduce_typed(ReduceKind k, const Tensor& xt, int64_t dim, const Tensor& ot) {
  const T* x = static_cast<const T*>(xt.raw());
  T* o = static_cast<T*>(ot.raw());
  const Shape& s = xt.shape();
  int64_t outer = 1, inner = 1;
  for (int64_t d = 0; d < dim; ++d) outer *= s[d];
  for (int64_t d = dim + 1; d < (int64_t)s.size(); ++d) inner *= s[d];
  const int64_t r = s[dim];
  const bool is_sum = k == ReduceKind::sum;
  if (inner == 1 && outer == 1 && is_sum && r > (1 << 16)) {
    // One long sum: fixed-size blocks summed in parallel, then in order (deterministic).
    const int64_t bs = 1 << 13, nb = (r + bs - 1) / bs;
    std::vector<double> part(nb);
    if constexpr (std::is_same_v<T, float>) {
      parallel_for(nb, 1, [&](int64_t b, int64_t e) { simd::sum_blocks(x, part.data(), b, e, bs, r); });
    } else {
      parallel_for(nb, 1, [&](int64_t b, int64_t e) {
        for (int64_t i = b; i < e; ++i) {
          double acc = 0;
          for (int64_t j = i * bs, je = std::min(r, j + bs); j < je; ++j) acc += x[j];
          part[i] = acc;
        }
      });
    }
    double acc = 0;
    for (double p : part) acc += p;
    o[0] = (T)acc;
    return;
  }
  if constexpr (std::is_same_v<T, float>) {
    if (inner == 1 && is_sum) {
      parallel_for(outer, std::max<int64_t>(1, 8192 / std::max<int64_t>(r, 1)),
                   [&](int64_t b, int64_t e) { simd::sum_rows(x, o, b, e, r); });
      return;
    }
  }
  if (inner == 1) {
    parallel_for(outer, std::max<int64_t>(1, 8192 / std::max<int64_t>(r, 1)), [&](int64_t b, int64_t e) {
      for (int64_t i = b; i < e; ++i) {
        const T* row = x + i * r;
        if (is_sum) {
          double acc = 0;
          for (int64_t j = 0; j < r; ++j) acc += row[j];
          o[i] = (T)acc;
        } else {
          T m = -std::numeric_limits<T>::infinity();
          for (int64_t j = 0; j < r; ++j) m = row[j] > m || std::isnan(row[j]) ? row[j] : m;
          o[i] = m;
        }
      }
    });
    return;
  }
  constexpr int64_t kTile = 256;
  const int64_t tiles = (inner + kTile - 1) / kTile;
  parallel_for(outer * tiles, std::max<int64_t>(1, 64 / std::max<int64_t>(r, 1)), [&](int64_t b, int64_t e) {
    double acc[kTile];
    for (int64_t t = b; t < e; ++t) {
      const int64_t oi = t / tiles, j0 = (t % tiles) * kTile, jn = std::min(inner, j0 + kTile) - j0;
      const T* base = x + oi * r * inner + j0;
      if constexpr (std::is_same_v<T, float>) {
        if (is_sum) {
          simd::sum_cols(base, r, inner, jn, o + oi * inner + j0);
          continue;
        }
      }
      for (int64_t j = 0; j < jn; ++j) acc[j] = is_sum ? 0.0 : -std::numeric_limits<double>::infinity();
      for (int64_t q = 0; q < r; ++q) {
        const T* row = base + q * inner;
        if (is_sum)
          for (int64_t j = 0; j < jn; ++j) acc[j] += row[j];
        else
          for (int64_t j = 0; j < jn; ++j) acc[j] = row[j] > acc[j] || std::isnan((double)row[j]) ? row[j] : acc[j];
      }
      for (int64_t j = 0; j < jn; ++j) o[oi * inner + j0 + j] = (T)acc[j];
    }
  });
}

void reduce(ReduceKind k, const Tensor& x, int64_t dim, const Tensor& out) {
  if (x.dtype() == DType::bf16) {
    Bf16Staging s;
    reduce(k, s.in(x), dim, s.out(out));
    return s.finish();
  }
  if (!x.is_contiguous()) throw std::logic_error("reduce kernel: input must be contiguous");
  MTALAB_DISPATCH_FLOAT(x.dtype(), "reduce", [&] { reduce_typed<scalar_t>(k, x, dim, out); });
}

}  // namespace
}  // namespace mtalab::cpu

namespace mtalab {
MTALAB_REGISTER_KERNEL(reduce_kernel, cpu, cpu::reduce);
}
