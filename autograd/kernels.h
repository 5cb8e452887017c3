// The kernel families every backend provides. Ops (autograd/ops_*.cpp) call these and
// nothing else that touches raw memory. Each table is declared here and defined once in
// autograd/kernels.cpp; each backend registers its kernels into it from its own file
// with the family's stem (autograd/cpu/<family>.cpp, cuda/<family>.cu), so listing the
// two folders shows which device has which family.
//
// Contract for every family, unless its comment says otherwise:
//   - inputs are contiguous; outputs are freshly allocated contiguous tensors of the right
//     shape, dtype and device, made by the op before the call, and every element of an
//     output is written (the CUDA emulator fills new memory with NaN to prove it);
//   - float kernels take float32, float64 or bfloat16, all tensors of one call in the same
//     dtype, except that beside bfloat16 the statistics are float32 (norms' mean and rstd,
//     cross-entropy's loss, lse and scale, attention's lse and MTA kernels; see each) and
//     matmul may write a float32 result. bfloat16 is storage only: a kernel computes in
//     float32 (sums in float32 or wider) and rounds each bfloat16 output once. Index
//     tensors (embedding, cross-entropy targets) are int32 or int64;
//   - a call is deterministic: the same inputs give the same bits on every run and for
//     any thread count (no float atomics; sums in an order fixed by the shape).
// Families whose inputs may be strided say so: copy (source and destination), binary
// and where (inputs broadcast by stride-0 views), matmul (row- or column-major matrices),
// rope (x's outer dims).
#pragma once
#include <cstdint>
#include <vector>

#include "autograd/backend.h"
#include "autograd/tensor.h"

namespace mtalab {

enum class UnaryKind {
  neg, exp, log, sqrt, rsqrt, abs, sign, tanh, sigmoid, relu, silu, gelu,
  step,        // 1 where x > 0 else 0 (relu's derivative)
  silu_grad,   // d silu / dx
  gelu_grad,   // d gelu / dx
  pow_scalar,  // x^alpha
  add_scalar,  // x + alpha
  mul_scalar,  // x * alpha
  rsub_scalar, // alpha - x
  rdiv_scalar, // alpha / x
};
constexpr int kNumUnaryKinds = (int)UnaryKind::rdiv_scalar + 1;
enum class BinaryKind { add, sub, mul, div, pow, maximum, minimum, eq, gt, ge, lt };
constexpr int kNumBinaryKinds = (int)BinaryKind::lt + 1;
enum class ReduceKind { sum, max };

// Random streams are counter based (Philox4x32-10, autograd/philox.h): element i of a
// draw uses lane i%4 of block `counter + i/4`, so values never depend on the thread
// count or the device.
struct PhiloxState {
  uint64_t seed = 0;
  uint64_t counter = 0;
};
enum class RandomKind { uniform, normal, trunc_normal };

// copy: src and dst of the same shape, either may be strided (dst a view to write
// through: slices, transposes); converts between any two dtypes.
using CopyFn = void (*)(const Tensor& src, const Tensor& dst);
// fill: dst contiguous, any dtype.
using FillFn = void (*)(const Tensor& dst, double value);
// unary: out = kind(x) elementwise (alpha for the *_scalar kinds).
using UnaryFn = void (*)(UnaryKind, const Tensor& x, const Tensor& out, double alpha);
// binary: a and b already expanded to out's shape (strided, stride 0 on broadcast dims).
// The comparisons (eq, gt, ge, lt) give 1 or 0 in out's dtype.
using BinaryFn = void (*)(BinaryKind, const Tensor& a, const Tensor& b, const Tensor& out);
// reduce: out = sum or max of x over dim (out has that dim of size 1). max propagates NaN.
using ReduceFn = void (*)(ReduceKind, const Tensor& x, int64_t dim, const Tensor& out);
// matmul: out[..., M, N] = a[..., M, K] b[..., K, N]; a and b already expanded to out's
// batch dims (stride 0 where broadcast); each matrix may be row-major (stride[-1] = 1)
// or column-major (a transposed view, stride[-2] = 1): both go to BLAS without copies.
// bfloat16 a and b: out bfloat16, or float32 (the mixed-precision product: float32
// accumulation written as it is).
using MatmulFn = void (*)(const Tensor& a, const Tensor& b, const Tensor& out);
// Softmax over the last dim. causal: x is [..., T, T] and row i only sees columns
// j <= i; y is 0 (log: -inf) at j > i. No mask tensor is ever built. A row with no
// finite entry gives 0 (log: -inf), never NaN from -inf - -inf.
using SoftmaxFn = void (*)(const Tensor& x, const Tensor& y, bool log, bool causal);
// softmax: gx = y (gy - sum(gy y)); log: gx = gy - exp(y) sum(gy); gx = 0 at j > i.
using SoftmaxBwdFn = void (*)(const Tensor& y, const Tensor& gy, const Tensor& gx, bool log, bool causal);
// where: out = cond != 0 ? a : b; cond, a, b expanded to out's shape (strided).
using WhereFn = void (*)(const Tensor& cond, const Tensor& a, const Tensor& b, const Tensor& out);
// random: fills out (float) from the stream at st; uniform in [a, b), normal with mean a
// and std b, trunc_normal with std a truncated to [-b a, b a].
using RandomFn = void (*)(RandomKind, const Tensor& out, PhiloxState st, double a, double b);
// Norms over the last dim. rms: y = x*rstd*w; layer: y = (x-mean)*rstd*w + bias.
// w and bias may be undefined (then 1 and 0). mean/rstd: one per row (mean 0 for rms).
// bfloat16 x (and w, bias, y): mean and rstd are float32.
using NormFn = void (*)(bool layer, const Tensor& x, const Tensor& w, const Tensor& bias,
                        double eps, const Tensor& y, const Tensor& mean, const Tensor& rstd);
// gx, gw (sum over rows of gy*xh) and gbias (sum over rows of gy); any of the three may
// be undefined, and is then neither computed nor written.
using NormBwdFn = void (*)(bool layer, const Tensor& x, const Tensor& w, const Tensor& mean,
                           const Tensor& rstd, const Tensor& gy, const Tensor& gx,
                           const Tensor& gw, const Tensor& gbias);
// embedding: out[i, :] = weight[idx[i], :]; weight [V, d], idx any shape (n elements).
// An index outside [0, V) is an error (CPU: std::invalid_argument naming it; CUDA: the
// row is written as NaN, which the trainer reports as divergence).
using EmbeddingFn = void (*)(const Tensor& weight, const Tensor& idx, const Tensor& out);
// gweight[v, :] = sum over i with idx[i] = v of gout[i, :], summed in increasing i.
using EmbeddingBwdFn = void (*)(const Tensor& gout, const Tensor& idx, const Tensor& gweight);
// cross-entropy per row: logits [N, V], target [N] int; loss[n] = lse[n] - logits[n, t]
// with lse[n] = log sum_j exp(logits[n, j]). (The op turns its float mask [N] into the
// per-row weights `scale` of the backward; the kernels never see a mask.) A target
// outside [0, V) is an error (CPU: invalid_argument; CUDA: NaN loss). bfloat16 logits:
// loss, lse and the backward's scale are float32, glogits bfloat16.
using CrossEntropyFn = void (*)(const Tensor& logits, const Tensor& target, const Tensor& loss,
                                const Tensor& lse);
// glogits[n,:] = scale[n] * (softmax(logits[n]) - onehot(target[n])); 0 where scale is 0.
using CrossEntropyBwdFn = void (*)(const Tensor& logits, const Tensor& target, const Tensor& lse,
                                   const Tensor& scale, const Tensor& glogits);

// Rotary position embedding (Su et al. 2021, eq. 34) of interleaved pairs, one pass:
//   out[b,h,t,2i]   = x[b,h,t,2i] c[t,i] - x[b,h,t,2i+1] s[t,i]
//   out[b,h,t,2i+1] = x[b,h,t,2i] s[t,i] + x[b,h,t,2i+1] c[t,i]
// with s negated when `inverse` (the rotation's transpose: the backward). x [B, H, T, Dh]
// may be strided except that its last dim is contiguous (heads split from [B, T, d] by a
// permuted view go in without a copy); cos and sin [T, Dh/2] contiguous; out contiguous.
using RopeFn = void (*)(const Tensor& x, const Tensor& cos, const Tensor& sin, bool inverse, const Tensor& out);

// SwiGLU's gate (Shazeer 2020): y = silu(a) b = a sigmoid(a) b, a, b, y of one shape.
using SwigluFn = void (*)(const Tensor& a, const Tensor& b, const Tensor& y);
// ga = g b silu'(a), gb = g silu(a); either output may be undefined (then skipped).
using SwigluBwdFn = void (*)(const Tensor& a, const Tensor& b, const Tensor& g, const Tensor& ga, const Tensor& gb);

// One AdamW step on a parameter, in place (Loshchilov & Hutter 2019, decoupled decay):
//   p ← p − lr·wd·p;  m ← β1 m + (1−β1) g;  v ← β2 v + (1−β2) g²;
//   p ← p − lr · (m / c1) / (sqrt(v / c2) + eps)   with c1 = 1−β1ᵗ, c2 = 1−β2ᵗ.
struct AdamWArgs {
  double lr, beta1, beta2, eps, weight_decay, c1, c2;
};
using AdamWFn = void (*)(const Tensor& param, const Tensor& grad, const Tensor& m, const Tensor& v, AdamWArgs a);

// --- Multi-Token Attention's map ops (autograd/ops_attention.h) ---------------------
// Maps are [B, H, T, T] and causal: only entries with column <= row are read, and only
// those are computed; the rest of every output is written as 0.
//
// Key-query convolution, depthwise over heads. kernel [H, cq, ck]; pad_left is the key
// offset p (0 <= p < ck):
//   out[b,h,i,j] = sum_{a<cq, c<ck} kernel[h,a,c] * x~[b,h, i-(cq-1)+a, j-p+c]   (j <= i)
// where x~ is x with 0 outside [0,T)^2 and at column > row; out[b,h,i,j>i] = 0.
using KqConvFn = void (*)(const Tensor& x, const Tensor& kernel, int64_t pad_left, const Tensor& out);
// Gradients of the above w.r.t. x (gx, 0 at column > row) and w.r.t. the kernel (gkernel),
// from gout (read at j <= i only). Either output may be undefined: then it is skipped, and
// x is read only when gkernel is wanted.
using KqConvBwdFn = void (*)(const Tensor& x, const Tensor& kernel, int64_t pad_left, const Tensor& gout,
                             const Tensor& gx, const Tensor& gkernel);
// Head mixing within groups of c_h consecutive heads. mix [H/c_h, c_h, c_h]:
//   out[b, g*c_h+j, q, k] = sum_i mix[g,i,j] * x[b, g*c_h+i, q, k]   (k <= q), 0 at k > q.
using HeadMixFn = void (*)(const Tensor& x, const Tensor& mix, const Tensor& out);
// Gradients w.r.t. x (0 at k > q) and mix; either output may be undefined (skipped).
using HeadMixBwdFn = void (*)(const Tensor& x, const Tensor& mix, const Tensor& gout, const Tensor& gx,
                              const Tensor& gmix);

// --- fused causal attention (autograd/ops_attention.h) -----------------------------
// q, k, v, o [B, H, T, Dh]; lse [B, H, T]. With no MTA component:
//   o = causal_softmax(scale q kᵀ) v,  lse = log sum_j exp of each row of scale q kᵀ;
// with any (undefined tensors are absent; p_pre/p_post the kq kernels' key offsets):
//   o = mix_post(kq_post(causal_softmax(mix_pre(kq_pre(scale q kᵀ))))) v
// and lse the log-sum-exp of the softmax's input rows. No [T, T] tensor is built: the
// kernels recompute blocks of rows (with the convolutions' halos) as they go.
// q, k, v share one dtype. With bfloat16 q, k, v: o is bfloat16 or float32 (the
// mixed-precision op asks float32), lse is float32, the MTA kernels and their gradients
// are float32, dout has o's dtype, and dq, dk, dv are bfloat16 or float32 (each as
// allocated: the mixed-precision op asks float32, so the gradient is not rounded).
struct AttentionParams {
  double scale = 1;
  Tensor kq_pre, mix_pre, kq_post, mix_post;  // [H, cq, ck] / [H/ch, ch, ch], or undefined
  int64_t p_pre = 0, p_post = 0;
  bool plain() const { return !kq_pre.defined() && !mix_pre.defined() && !kq_post.defined() && !mix_post.defined(); }
};
using AttentionFn = void (*)(const Tensor& q, const Tensor& k, const Tensor& v, const AttentionParams& a,
                             const Tensor& o, const Tensor& lse);
// Gradients from dout (and the forward's o and lse); each output that is undefined is
// neither computed nor written (a component's gradient only where the component exists).
struct AttentionGrads {
  Tensor dq, dk, dv, dkq_pre, dmix_pre, dkq_post, dmix_post;
};
using AttentionBwdFn = void (*)(const Tensor& q, const Tensor& k, const Tensor& v, const Tensor& o,
                                const Tensor& lse, const Tensor& dout, const AttentionParams& a,
                                const AttentionGrads& g);

// Every kernel family, once: X(stem, type, name) declares `stem_kernel` here, defines it
// in kernels.cpp (named `name` in errors and the support matrix) and lists it in
// kernel_support(), in this order.
#define MTALAB_KERNEL_FAMILIES(X)                                                                   \
  X(copy, CopyFn, "copy") X(fill, FillFn, "fill") X(unary, UnaryFn, "unary")                        \
  X(binary, BinaryFn, "binary") X(where, WhereFn, "where") X(reduce, ReduceFn, "reduce")            \
  X(matmul, MatmulFn, "matmul") X(softmax, SoftmaxFn, "softmax")                                    \
  X(softmax_bwd, SoftmaxBwdFn, "softmax_backward") X(norm, NormFn, "norm")                          \
  X(norm_bwd, NormBwdFn, "norm_backward") X(embedding, EmbeddingFn, "embedding")                    \
  X(embedding_bwd, EmbeddingBwdFn, "embedding_backward") X(cross_entropy, CrossEntropyFn, "cross_entropy") \
  X(cross_entropy_bwd, CrossEntropyBwdFn, "cross_entropy_backward") X(random, RandomFn, "random")   \
  X(rope, RopeFn, "rope") X(swiglu, SwigluFn, "swiglu") X(swiglu_bwd, SwigluBwdFn, "swiglu_backward") \
  X(adamw, AdamWFn, "adamw") X(kq_conv, KqConvFn, "kq_conv")                                        \
  X(kq_conv_bwd, KqConvBwdFn, "kq_conv_backward") X(head_mix, HeadMixFn, "head_mix")                \
  X(head_mix_bwd, HeadMixBwdFn, "head_mix_backward") X(attention, AttentionFn, "attention")         \
  X(attention_bwd, AttentionBwdFn, "attention_backward")

#define MTALAB_DECLARE_KERNEL_FAMILY(STEM, FN, NAME) extern KernelTable<FN> STEM##_kernel;
MTALAB_KERNEL_FAMILIES(MTALAB_DECLARE_KERNEL_FAMILY)
#undef MTALAB_DECLARE_KERNEL_FAMILY

// Which device kinds fill each table: {family name, has cpu, has cuda}, in table order.
struct KernelSupport {
  const char* name;
  bool cpu, cuda;
};
std::vector<KernelSupport> kernel_support();

// Thread count used by the CPU kernels and BLAS: OMP_NUM_THREADS, or set_num_threads().
void set_num_threads(int n);
int get_num_threads();

}  // namespace mtalab
