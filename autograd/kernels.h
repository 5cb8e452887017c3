// The kernel families every backend provides: ops (autograd/ops*.cpp) call these and
// nothing else that touches raw memory. Inputs may be strided unless a comment says
// "contiguous"; outputs are always freshly allocated contiguous tensors of the right
// shape and dtype, made by the op before the call.
#pragma once
#include <cstdint>

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
enum class BinaryKind { add, sub, mul, div, pow, maximum, minimum, eq, gt, ge, lt };
enum class ReduceKind { sum, max };

// Random streams are counter based (Philox4x32-10): element i of a draw uses counter
// `counter + i/4`, so results never depend on the thread count.
struct PhiloxState {
  uint64_t seed = 0;
  uint64_t counter = 0;
};
enum class RandomKind { uniform, normal, trunc_normal };

using CopyFn = void (*)(const Tensor& src, const Tensor& dst);  // dst may be strided; converts dtype
using FillFn = void (*)(const Tensor& dst, double value);       // dst contiguous
using UnaryFn = void (*)(UnaryKind, const Tensor& x, const Tensor& out, double alpha);
using BinaryFn = void (*)(BinaryKind, const Tensor& a, const Tensor& b, const Tensor& out);
using ReduceFn = void (*)(ReduceKind, const Tensor& x, int64_t dim, const Tensor& out);  // x contiguous
using MatmulFn = void (*)(const Tensor& a, const Tensor& b, const Tensor& out);
// Softmax over the last dim, x contiguous. causal: x is [..., T, T] and row i only
// sees columns j <= i; y is 0 (log: -inf) at j > i. No mask tensor is ever built.
using SoftmaxFn = void (*)(const Tensor& x, const Tensor& y, bool log, bool causal);
using SoftmaxBwdFn = void (*)(const Tensor& y, const Tensor& gy, const Tensor& gx, bool log, bool causal);
using WhereFn = void (*)(const Tensor& cond, const Tensor& a, const Tensor& b, const Tensor& out);
using RandomFn = void (*)(RandomKind, const Tensor& out, PhiloxState st, double a, double b);
// Norms over the last dim. rms: y = x*rstd*w; layer: y = (x-mean)*rstd*w + bias.
// w and bias may be undefined (then 1 and 0). mean/rstd: one per row.
using NormFn = void (*)(bool layer, const Tensor& x, const Tensor& w, const Tensor& bias,
                        double eps, const Tensor& y, const Tensor& mean, const Tensor& rstd);
using NormBwdFn = void (*)(bool layer, const Tensor& x, const Tensor& w, const Tensor& mean,
                           const Tensor& rstd, const Tensor& gy, const Tensor& gx,
                           const Tensor& gw, const Tensor& gbias);  // gw/gbias may be undefined
using EmbeddingFn = void (*)(const Tensor& weight, const Tensor& idx, const Tensor& out);
using EmbeddingBwdFn = void (*)(const Tensor& gout, const Tensor& idx, const Tensor& gweight);
// logits [N,V] contiguous, target [N] int, mask [N] float or undefined; loss/lse [N].
using CrossEntropyFn = void (*)(const Tensor& logits, const Tensor& target, const Tensor& loss,
                                const Tensor& lse);
// glogits[n,:] = scale[n] * (softmax(logits[n]) - onehot(target[n])).
using CrossEntropyBwdFn = void (*)(const Tensor& logits, const Tensor& target, const Tensor& lse,
                                   const Tensor& scale, const Tensor& glogits);

// One AdamW step on a parameter, in place (Loshchilov & Hutter 2019, decoupled decay):
//   p ← p − lr·wd·p;  m ← β1 m + (1−β1) g;  v ← β2 v + (1−β2) g²;
//   p ← p − lr · (m / c1) / (sqrt(v / c2) + eps)   with c1 = 1−β1ᵗ, c2 = 1−β2ᵗ.
struct AdamWArgs {
  double lr, beta1, beta2, eps, weight_decay, c1, c2;
};
using AdamWFn = void (*)(const Tensor& param, const Tensor& grad, const Tensor& m, const Tensor& v, AdamWArgs a);

extern KernelTable<AdamWFn> adamw_kernel;
extern KernelTable<CopyFn> copy_kernel;
extern KernelTable<FillFn> fill_kernel;
extern KernelTable<UnaryFn> unary_kernel;
extern KernelTable<BinaryFn> binary_kernel;
extern KernelTable<ReduceFn> reduce_kernel;
extern KernelTable<MatmulFn> matmul_kernel;
extern KernelTable<SoftmaxFn> softmax_kernel;
extern KernelTable<SoftmaxBwdFn> softmax_bwd_kernel;
extern KernelTable<WhereFn> where_kernel;
extern KernelTable<RandomFn> random_kernel;
extern KernelTable<NormFn> norm_kernel;
extern KernelTable<NormBwdFn> norm_bwd_kernel;
extern KernelTable<EmbeddingFn> embedding_kernel;
extern KernelTable<EmbeddingBwdFn> embedding_bwd_kernel;
extern KernelTable<CrossEntropyFn> cross_entropy_kernel;
extern KernelTable<CrossEntropyBwdFn> cross_entropy_bwd_kernel;

// Thread count used by the CPU kernels and BLAS: OMP_NUM_THREADS, or set_num_threads().
void set_num_threads(int n);
int get_num_threads();

}  // namespace mtalab
