// Initial values of Multi-Token Attention's learned kernels: the identity maps, so an
// MTA layer at initialisation computes standard softmax attention (the paper's §3).
#pragma once
#include <cstdint>

#include "autograd/ops_attention.h"

namespace mtalab {

// Identity initialisations: K[h, c_q-1, p] = 1, else 0, so kq_conv(x) = Mask_0(x);
// mix[g] = I, so head_mix(x) = x on and below the diagonal. opts.requires_grad is honoured.
Tensor kq_identity_kernel(int64_t H, int64_t cq, int64_t ck, KqPad pad, TensorOptions opts = {});
Tensor head_mix_identity(int64_t H, int64_t ch, TensorOptions opts = {});

}  // namespace mtalab
