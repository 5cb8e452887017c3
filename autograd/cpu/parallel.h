// OpenMP helpers for the CPU kernels. Work is split into fixed chunks and every output
// element is computed by exactly one thread in a fixed order, so results are identical
// whatever the thread count.
#pragma once
#include <omp.h>

#include <algorithm>
#include <cstdint>
#include <vector>

#include "autograd/strided.h"
#include "autograd/tensor.h"

namespace mtalab::cpu {

// Calls f(begin, end) over [0, n) in chunks; runs inline when n < grain.
template <typename F>
void parallel_for(int64_t n, int64_t grain, const F& f) {
  if (n <= 0) return;
  if (n < grain || omp_get_max_threads() == 1 || omp_in_parallel()) {
    f(0, n);
    return;
  }
  const int64_t nt = omp_get_max_threads();
  const int64_t chunks = std::min<int64_t>(nt * 4, (n + grain - 1) / grain);
  const int64_t per = (n + chunks - 1) / chunks;
#pragma omp parallel for schedule(static)
  for (int64_t c = 0; c < chunks; ++c) {
    const int64_t b = c * per, e = std::min(n, b + per);
    if (b < e) f(b, e);
  }
}

// Rows per chunk for row-wise kernels over rows of n elements: about 16K elements a chunk.
inline int64_t row_grain(int64_t n) { return std::max<int64_t>(1, 16384 / std::max<int64_t>(n, 1)); }

// Runs f(unit) for every unit in [0, n), dynamically scheduled over threads. Each unit
// owns its outputs, so the results do not depend on the schedule.
template <typename F>
void for_units(int64_t n, const F& f) {
  const bool par = n > 1 && omp_get_max_threads() > 1 && !omp_in_parallel();
#pragma omp parallel for schedule(dynamic, 1) if (par)
  for (int64_t u = 0; u < n; ++u) f(u);
}

// Per-unit partial sums laid out [outer][groups][blocks][taps], added over outer and
// blocks in that fixed order into out[groups][taps]: a parameter gradient whose value
// does not depend on how the units were spread over threads.
template <typename T>
void sum_unit_partials(const std::vector<double>& partial, int64_t outer, int64_t groups, int64_t blocks,
                       int64_t taps, T* out) {
  std::vector<double> s(taps);
  for (int64_t g = 0; g < groups; ++g) {
    std::fill(s.begin(), s.end(), 0.0);
    for (int64_t o = 0; o < outer; ++o)
      for (int64_t blk = 0; blk < blocks; ++blk) {
        const double* pu = partial.data() + ((o * groups + g) * blocks + blk) * taps;
        for (int64_t t = 0; t < taps; ++t) s[t] += pu[t];
      }
    for (int64_t t = 0; t < taps; ++t) out[g * taps + t] = (T)s[t];
  }
}

// Maps a row index (over all dims but the last) to an element offset for a strided tensor.
class StridedIndex {
 public:
  StridedIndex(const Shape& shape, const Shape& strides) : shape_(shape), strides_(strides) {
    if (!shape_.empty()) {
      shape_.pop_back();
      strides_.pop_back();
    }
  }
  int64_t row_offset(int64_t r) const {
    int64_t off = 0;
    for (int64_t d = (int64_t)shape_.size() - 1; d >= 0; --d) {
      const int64_t s = shape_[d];
      off += (r % s) * strides_[d];
      r /= s;
    }
    return off;
  }

 private:
  Shape shape_, strides_;
};

}  // namespace mtalab::cpu
