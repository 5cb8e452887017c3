// Layout helpers shared by the backends' strided kernels (copy, binary, where).
#pragma once
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

}  // namespace mtalab
