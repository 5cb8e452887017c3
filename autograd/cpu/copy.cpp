// CPU copies between any layouts and dtypes: contiguous runs, square tiles for
// transposes, strided rows otherwise.
#include <algorithm>

#include "autograd/cpu/parallel.h"
#include "autograd/cpu/simd.h"
#include "autograd/kernels.h"

namespace mtalab::cpu {


// Copies by square tiles when the source and the destination are unit-stride along
// different dims (a transpose, or a permute that moves the last dim, e.g. K^T, or a
// [B,T,D,H] view of [B,H,T,D] made contiguous): dim a has destination stride 1, dim b
// source stride 1, and a kTile x kTile block of both stays in L1, so each cache line is
// read and written whole, not touched once per element. (16 beats 32 and 64: with a
// power-of-two stride the lines of a bigger tile share too few L1 sets.) Same-type 4-byte
// copies transpose 4 x 4 blocks in registers. The tiles, over the other dims too, are
// split among threads; each output element is written once, by one thread. Returns false,
// copying nothing, where the layouts have no such pair of dims.
template <typename S, typename D>
static bool copy_tiled(const S* s, D* d, const Coalesced& it) {
  constexpr int64_t kTile = 16;
  const int64_t nd = (int64_t)it.shape.size();
  int64_t a = -1, b = -1;
  for (int64_t k = nd - 1; k >= 0; --k) {
    if (a < 0 && it.strides[1][k] == 1) a = k;
    if (b < 0 && it.strides[0][k] == 1) b = k;
  }
  if (a < 0 || b < 0 || a == b) return false;
  // The other dims: sizes and both strides, innermost last.
  Shape os, oss, ods;
  for (int64_t k = 0; k < nd; ++k)
    if (k != a && k != b) os.push_back(it.shape[k]), oss.push_back(it.strides[0][k]), ods.push_back(it.strides[1][k]);
  const int64_t na = it.shape[a], nb = it.shape[b];
  const int64_t sa = it.strides[0][a], db = it.strides[1][b];  // source stride along a, destination along b
  const int64_t ta = (na + kTile - 1) / kTile, tb = (nb + kTile - 1) / kTile;
  const int64_t outer = shape_numel(os);
  parallel_for(outer * tb * ta, std::max<int64_t>(1, (1 << 14) / (kTile * kTile)), [&](int64_t t0, int64_t t1) {
    for (int64_t t = t0; t < t1; ++t) {
      int64_t o = t / (ta * tb), soff = 0, doff = 0;
      for (int64_t k = (int64_t)os.size() - 1; k >= 0; --k) {
        const int64_t i = o % os[k];
        o /= os[k];
        soff += i * oss[k];
        doff += i * ods[k];
      }
      const int64_t r = t % (ta * tb);
      const int64_t b0 = r / ta * kTile, b1 = std::min(nb, b0 + kTile);
      const int64_t a0 = r % ta * kTile, a1 = std::min(na, a0 + kTile);
      const S* sp = s + soff;
      D* dp = d + doff;
      int64_t i = b0;
      if constexpr (std::is_same_v<S, D> && sizeof(S) == 4) {
        using simd::load;
        using simd::store;
        typedef uint32_t U4 __attribute__((vector_size(16)));
        for (; i + 4 <= b1; i += 4) {
          int64_t j = a0;
          for (; j + 4 <= a1; j += 4) {
            const S* p = sp + i + j * sa;  // rows j..j+3 of the source, 4 elements along b each
            const U4 r0 = load<U4>(p), r1 = load<U4>(p + sa), r2 = load<U4>(p + 2 * sa), r3 = load<U4>(p + 3 * sa);
            const U4 t0 = __builtin_shufflevector(r0, r1, 0, 4, 1, 5), t1 = __builtin_shufflevector(r0, r1, 2, 6, 3, 7);
            const U4 t2 = __builtin_shufflevector(r2, r3, 0, 4, 1, 5), t3 = __builtin_shufflevector(r2, r3, 2, 6, 3, 7);
            D* q = dp + i * db + j;  // rows i..i+3 of the destination
            store(q, __builtin_shufflevector(t0, t2, 0, 1, 4, 5));
            store(q + db, __builtin_shufflevector(t0, t2, 2, 3, 6, 7));
            store(q + 2 * db, __builtin_shufflevector(t1, t3, 0, 1, 4, 5));
            store(q + 3 * db, __builtin_shufflevector(t1, t3, 2, 3, 6, 7));
          }
          for (; j < a1; ++j)
            for (int64_t k = i; k < i + 4; ++k) dp[k * db + j] = sp[k + j * sa];
        }
      }
      for (; i < b1; ++i)
        for (int64_t j = a0; j < a1; ++j) dp[i * db + j] = (D)sp[i + j * sa];
    }
  });
  return true;
}

template <typename S, typename D>
static void copy_typed(const Tensor& src, const Tensor& dst) {
  const S* s = static_cast<const S*>(src.raw());
  D* d = static_cast<D*>(dst.raw());
  const int64_t n = src.numel();
  if (src.is_contiguous() && dst.is_contiguous()) {
    parallel_for(n, 1 << 15, [&](int64_t b, int64_t e) {
      for (int64_t i = b; i < e; ++i) d[i] = (D)s[i];
    });
    return;
  }
  const Coalesced it = coalesce(src.shape(), {src.strides(), dst.strides()});
  if (copy_tiled(s, d, it)) return;
  StridedIndex si(it.shape, it.strides[0]), di(it.shape, it.strides[1]);
  const int64_t inner = it.shape.back();
  const int64_t ss = it.strides[0].back(), ds = it.strides[1].back();
  const int64_t rows = inner ? n / inner : 0;
  parallel_for(rows, std::max<int64_t>(1, (1 << 14) / std::max<int64_t>(inner, 1)), [&](int64_t b, int64_t e) {
    for (int64_t r = b; r < e; ++r) {
      const S* sp = s + si.row_offset(r);
      D* dp = d + di.row_offset(r);
      for (int64_t j = 0; j < inner; ++j) dp[j * ds] = (D)sp[j * ss];
    }
  });
}

template <typename S>
static void copy_from(const Tensor& src, const Tensor& dst) {
  MTALAB_DISPATCH_ALL(dst.dtype(), [&] { copy_typed<S, type_t>(src, dst); });
}

static void copy(const Tensor& src, const Tensor& dst) {
  if (src.shape() != dst.shape())
    throw std::invalid_argument("copy: source " + shape_str(src.shape()) + " vs destination " +
                                shape_str(dst.shape()));
  MTALAB_DISPATCH_ALL(src.dtype(), [&] { copy_from<type_t>(src, dst); });
}

MTALAB_REGISTER_KERNEL(copy_kernel, cpu, copy);

}  // namespace mtalab::cpu
