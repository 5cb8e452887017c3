// Rotary position embedding (Su et al. 2021) on interleaved pairs: (x[2i], x[2i+1]) at
// position t is rotated by the angle t·θ^(−2i/Dh), as in the Llama reference code.
#pragma once
#include "autograd/ops.h"

namespace mtalab {

class Rope {
 public:
  Rope() = default;
  Rope(int64_t head_dim, int64_t max_len, double theta, DType dtype);
  // x [..., T, Dh] at positions start .. start + T − 1 (start + T <= max_len) → same
  // shape, rotated. start > 0 is a decoding step's new tokens.
  Tensor apply(const Tensor& x, int64_t start = 0) const;
  int64_t max_len() const { return max_len_; }
  void to(Device d);

 private:
  int64_t head_dim_ = 0, max_len_ = 0;
  Tensor cos_, sin_;  // [max_len, Dh/2]
};

}  // namespace mtalab
