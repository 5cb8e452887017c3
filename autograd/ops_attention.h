// Attention-map ops of Multi-Token Attention (Golovneva et al., arXiv 2504.00927):
// the key-query convolution and head mixing over causal [B, H, T, T] maps. Each is one
// fused kernel forward and backward per device (autograd/cpu/kq_conv.cpp, head_mix.cpp;
// cuda/kq_conv.cu, head_mix.cu); no mask tensor is ever built. The identity
// initialisers of their parameters are in layers/mta_init.h.
//
// In an MTA layer, with S the scaled scores q kᵀ/√d:
//   pre-softmax:  causal_softmax(kq_conv(S, K, pad))  = softmax(Mask_-inf(Conv(Mask_0(S))))
//   post-softmax: kq_conv(causal_softmax(S), K, pad)  = Mask_0(Conv(softmax(Mask_-inf(S))))
//                 (rows are not renormalised)
// and head_mix before or after the softmax likewise.
#pragma once
#include <cstdint>
#include <string>

#include "autograd/tensor.h"

namespace mtalab {

// Where the key axis of the kq kernel is anchored (c_k taps, offset p: tap c reads
// column j - p + c). The query axis always looks back only (c_q - 1 earlier rows).
enum class KqPad {
  both,   // p = (c_k - 1) / 2, centred; c_k must be odd
  left,   // p = c_k - 1: key j sees keys j-c_k+1 .. j
  right,  // p = 0:       key j sees keys j .. j+c_k-1 (those past the query are masked)
};
// "both", "left", "right"; anything else throws InputError listing the choices.
KqPad parse_kq_pad(const std::string& s);
const char* kq_pad_name(KqPad pad);
// The key offset p for c_k taps; throws std::invalid_argument for an even c_k with `both`.
int64_t kq_pad_offset(KqPad pad, int64_t ck);

// Key-query convolution, depthwise (one [c_q, c_k] kernel per head).
// x [B, H, T, T], kernel [H, c_q, c_k], same dtype (float32/float64) and device:
//   out[b,h,i,j] = sum_{a<c_q, c<c_k} kernel[h,a,c] * x~[b,h, i-(c_q-1)+a, j-p+c]
// where x~ reads 0 outside [0,T)^2 and at column > row (Mask_0 on the input); out is 0
// at j > i. Differentiable in x and kernel. Shape or dtype mismatches throw
// std::invalid_argument naming kq_conv and both shapes.
Tensor kq_conv(const Tensor& x, const Tensor& kernel, KqPad pad);

// Head mixing: heads form groups of c_h consecutive heads; mix [H/c_h, c_h, c_h]:
//   out[b, g*c_h+j, q, k] = sum_i mix[g,i,j] * x[b, g*c_h+i, q, k]   for k <= q,
// and 0 for k > q (inputs there are masked in the model, so they are neither read nor
// given a gradient). Differentiable in x and mix. H must be divisible by c_h.
Tensor head_mix(const Tensor& x, const Tensor& mix);

// The optional components of Multi-Token Attention around the softmax, in the paper's
// order (undefined: absent). kq kernels [H, c_q, c_k]; mixes [H/c_h, c_h, c_h] with the
// same c_h before and after.
struct MtaMaps {
  Tensor kq_pre, mix_pre, kq_post, mix_post;
  KqPad pad = KqPad::both;
  bool any() const { return kq_pre.defined() || mix_pre.defined() || kq_post.defined() || mix_post.defined(); }
};

// Causal attention of q, k, v [B, H, T, Dh] -> [B, H, T, Dh]:
//   o = mix_post(kq_post(causal_softmax(mix_pre(kq_pre(scale q kᵀ))))) v
// (plain causal softmax attention without components). Fused: no [T, T] tensor is made
// or kept — FlashAttention-2 for plain softmax, recomputed row blocks with the
// convolutions' halos for MTA; memory O(B H T Dh). Differentiable in q, k, v and every
// component. Shape, dtype and device mismatches throw naming fused_attention.
Tensor fused_attention(const Tensor& q, const Tensor& k, const Tensor& v, double scale, const MtaMaps& m = {});
// The same computation through the map ops (kq_conv, head_mix, causal_softmax, matmul):
// the reference. attention_probs is its [B, H, T, T] map before the product with v (for
// callers that keep the maps or apply dropout to them).
Tensor attention_probs(const Tensor& q, const Tensor& k, double scale, const MtaMaps& m = {});
Tensor attention_maps(const Tensor& q, const Tensor& k, const Tensor& v, double scale, const MtaMaps& m = {});

}  // namespace mtalab
