#include "autograd/bf16_staging.h"

namespace mtalab {

Tensor Bf16Staging::in(const Tensor& t) const {
  if (!t.defined() || t.dtype() != DType::bf16) return t;
  Tensor compact = t.detach();  // one copy of what a broadcast repeats
  for (int64_t d = 0; d < t.dim(); ++d)
    if (t.strides()[d] == 0 && t.size(d) > 1) compact = compact.slice(d, 0, 1);
  Tensor wide = Tensor::empty(compact.shape(), {DType::f32, t.device()});
  copy_kernel(t.device())(compact, wide);
  return wide.shape() == t.shape() ? wide : wide.expand(t.shape());
}

Tensor Bf16Staging::out(const Tensor& t, bool inplace) {
  if (!t.defined() || t.dtype() != DType::bf16) return t;
  Tensor wide = Tensor::empty(t.shape(), {DType::f32, t.device()});
  if (inplace) copy_kernel(t.device())(t, wide);
  outs_.emplace_back(t, wide);
  return wide;
}

void Bf16Staging::finish() {
  for (auto& [dst, wide] : outs_) copy_kernel(dst.device())(wide, dst);
  outs_.clear();
}

}  // namespace mtalab
