// CPU reductions over one dimension of a contiguous tensor: view it as [outer, r, inner].
#include <cmath>
#include <limits>

#include "autograd/cpu/parallel.h"
#include "autograd/kernels.h"

namespace mtalab::cpu {
namespace {

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
    parallel_for(nb, 1, [&](int64_t b, int64_t e) {
      for (int64_t i = b; i < e; ++i) {
        double acc = 0;
        for (int64_t j = i * bs, je = std::min(r, j + bs); j < je; ++j) acc += x[j];
        part[i] = acc;
      }
    });
    double acc = 0;
    for (double p : part) acc += p;
    o[0] = (T)acc;
    return;
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
  if (!x.is_contiguous()) throw std::logic_error("reduce kernel: input must be contiguous");
  MTALAB_DISPATCH_FLOAT(x.dtype(), "reduce", [&] { reduce_typed<scalar_t>(k, x, dim, out); });
}

}  // namespace
}  // namespace mtalab::cpu

namespace mtalab {
KernelTable<ReduceFn> reduce_kernel("reduce", cpu::reduce);
}
