// Rotary position embedding (Su et al. 2021) on interleaved pairs: (x[2i], x[2i+1]) at
// position t is rotated by the angle t·θ^(−2i/Dh), as in the Llama reference code.
#pragma once
#include "autograd/ops.h"

namespace mtalab {

class Rope {
 public:
  Rope() = default;
  Rope(int64_t head_dim, int64_t max_len, double theta, DType dtype);
  // x [..., T, Dh] with T <= max_len → same shape, rotated.
  Tensor apply(const Tensor& x) const;
  int64_t max_len() const { return max_len_; }
  void to(Device d);

 private:
  int64_t head_dim_ = 0, max_len_ = 0;
  Tensor cos_, sin_;  // [max_len, Dh/2, 1]
};

}  // namespace mtalab
