// Layout helpers shared by the backends' strided kernels (copy, binary, where, matmul).
#pragma once
#include <algorithm>
#include <vector>

#include "autograd/tensor.h"

namespace mtalab {

// The iteration space of several same-shaped strided tensors, simplified: size-1 dims
// dropped and adjacent dims merged wherever every tensor's layout allows it. A slice of
// the last dim or a broadcast becomes one long strided inner loop instead of many
// length-1 rows.
struct Coalesced {
  Shape shape;
  std::vector<Shape> strides;  // one per tensor
};
inline Coalesced coalesce(const Shape& shape, const std::vector<Shape>& strides) {
  Coalesced c;
  c.strides.resize(strides.size());
  for (size_t d = 0; d < shape.size(); ++d) {
    if (shape[d] == 1) continue;
    bool merge = !c.shape.empty();
    for (size_t t = 0; merge && t < strides.size(); ++t) merge = c.strides[t].back() == strides[t][d] * shape[d];
    if (merge) {
      c.shape.back() *= shape[d];
      for (size_t t = 0; t < strides.size(); ++t) c.strides[t].back() = strides[t][d];
    } else {
      c.shape.push_back(shape[d]);
      for (size_t t = 0; t < strides.size(); ++t) c.strides[t].push_back(strides[t][d]);
    }
  }
  if (c.shape.empty()) {
    c.shape.push_back(1);
    for (auto& s : c.strides) s.push_back(0);
  }
  return c;
}

// How BLAS takes the matrix in the last two dims of t without a copy: laid out row-major
// (stride[-1] == 1) as it is, column-major (a transposed view, stride[-2] == 1) with the
// transpose flag, ld the stride between its rows (or columns). False for any other layout.
struct MatLayout {
  bool trans;  // column-major in row-major terms
  int64_t ld;
};
inline bool blas_layout(const Tensor& t, MatLayout& l) {
  const int64_t r = t.size(-2), c = t.size(-1), sr = t.strides()[t.dim() - 2], sc = t.strides()[t.dim() - 1];
  if ((sc == 1 || c == 1) && sr >= std::max<int64_t>(c, 1)) {
    l = {false, std::max<int64_t>(sr, 1)};
    return true;
  }
  if ((sr == 1 || r == 1) && sc >= std::max<int64_t>(r, 1)) {
    l = {true, std::max<int64_t>(sc, 1)};
    return true;
  }
  return false;
}

}  // namespace mtalab
