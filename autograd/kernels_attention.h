// Kernel families of the attention-map ops in layers/attention_ops.h: the key-query
// convolution and the head mixing of Multi-Token Attention. Same conventions as
// autograd/kernels.h: inputs contiguous, outputs freshly allocated contiguous tensors of
// the right shape and dtype, made by the op before the call. Maps are [B, H, T, T] and
// causal: only entries with column <= row are read, and only those are computed (the
// rest of every output is written as 0). No mask tensor is ever built.
#pragma once
#include <cstdint>

#include "autograd/backend.h"
#include "autograd/tensor.h"

namespace mtalab {

// Key-query convolution, depthwise over heads. kernel [H, cq, ck]; pad_left is the key
// offset p (0 <= p < ck):
//   out[b,h,i,j] = sum_{a<cq, c<ck} kernel[h,a,c] * x~[b,h, i-(cq-1)+a, j-p+c]   (j <= i)
// where x~ is x with 0 outside [0,T)^2 and at column > row; out[b,h,i,j>i] = 0.
using KqConvFn = void (*)(const Tensor& x, const Tensor& kernel, int64_t pad_left, const Tensor& out);
// Gradients of the above w.r.t. x (gx, 0 at column > row) and w.r.t. the kernel (gkernel),
// from gout (read at j <= i only). Either output may be undefined: then it is skipped.
using KqConvBwdFn = void (*)(const Tensor& x, const Tensor& kernel, int64_t pad_left, const Tensor& gout,
                             const Tensor& gx, const Tensor& gkernel);

// Head mixing within groups of c_h consecutive heads. mix [H/c_h, c_h, c_h]:
//   out[b, g*c_h+j, q, k] = sum_i mix[g,i,j] * x[b, g*c_h+i, q, k]   (k <= q), 0 at k > q.
using HeadMixFn = void (*)(const Tensor& x, const Tensor& mix, const Tensor& out);
// Gradients w.r.t. x (0 at k > q) and mix; either output may be undefined (skipped).
using HeadMixBwdFn = void (*)(const Tensor& x, const Tensor& mix, const Tensor& gout, const Tensor& gx,
                              const Tensor& gmix);

extern KernelTable<KqConvFn> kq_conv_kernel;
extern KernelTable<KqConvBwdFn> kq_conv_bwd_kernel;
extern KernelTable<HeadMixFn> head_mix_kernel;
extern KernelTable<HeadMixBwdFn> head_mix_bwd_kernel;

}  // namespace mtalab
