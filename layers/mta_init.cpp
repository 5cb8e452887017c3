#include "layers/mta_init.h"

#include <stdexcept>
#include <string>
#include <vector>

namespace mtalab {

Tensor kq_identity_kernel(int64_t H, int64_t cq, int64_t ck, KqPad pad, TensorOptions opts) {
  if (H < 1 || cq < 1 || ck < 1)
    throw std::invalid_argument("kq_identity_kernel: sizes must be >= 1, got H = " + std::to_string(H) +
                                ", c_q = " + std::to_string(cq) + ", c_k = " + std::to_string(ck));
  const int64_t p = kq_pad_offset(pad, ck);
  std::vector<double> v(H * cq * ck, 0.0);
  for (int64_t h = 0; h < H; ++h) v[(h * cq + cq - 1) * ck + p] = 1.0;
  return from_vector(v, {H, cq, ck}, opts);
}

Tensor head_mix_identity(int64_t H, int64_t ch, TensorOptions opts) {
  if (H < 1 || ch < 1 || H % ch != 0)
    throw std::invalid_argument("head_mix_identity: H = " + std::to_string(H) +
                                " heads are not divisible by the group size c_h = " + std::to_string(ch));
  const int64_t G = H / ch;
  std::vector<double> v(G * ch * ch, 0.0);
  for (int64_t g = 0; g < G; ++g)
    for (int64_t i = 0; i < ch; ++i) v[(g * ch + i) * ch + i] = 1.0;
  return from_vector(v, {G, ch, ch}, opts);
}

}  // namespace mtalab
