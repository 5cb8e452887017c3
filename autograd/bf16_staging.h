// How the CPU kernels take bfloat16: by staging (on any device; the tensors' own). Each bfloat16 input is widened to a
// float32 copy (exact: bfloat16 is float32's top half), the family's float32 kernel runs,
// and each bfloat16 output is rounded once from its float32 result — the precision the
// CUDA kernels keep (arithmetic in float32, one rounding on store), so the CPU is the
// reference the GPU's bfloat16 kernels and mixed-precision runs are compared with. It
// costs a copy per operand; mixed-precision training only stages the matrix products'
// operands (autograd/autocast.h), everything else stays float32.
#pragma once
#include <utility>
#include <vector>

#include "autograd/kernels.h"

namespace mtalab {

class Bf16Staging {
 public:
  // A float32 copy of a bfloat16 input, its broadcast (stride-0) dims kept as views; an
  // undefined tensor or one of another dtype as it is.
  Tensor in(const Tensor& t) const;
  // A float32 stand-in for a bfloat16 output, rounded into it by finish(); `inplace`
  // (a tensor both read and written) starts from its contents. Others as they are.
  Tensor out(const Tensor& t, bool inplace = false);
  void finish();

 private:
  std::vector<std::pair<Tensor, Tensor>> outs_;  // (bfloat16 destination, float32 stand-in)
};

}  // namespace mtalab
