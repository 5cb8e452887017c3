// Every differentiable op of the engine. Each is a Function<Op> (autograd/function.h)
// with its forward and backward side by side in one of:
//   ops_elementwise.cpp  unary, binary (broadcasting), scalar forms, where, masked_fill
//   ops_reduce.cpp       sum, mean, max, logsumexp
//   ops_shape.cpp        reshape, permute, transpose, slice, concat, split, expand, copies
//   ops_matmul.cpp       batched matmul with broadcast batch dims
//   ops_nn.cpp           softmax, log_softmax, rms_norm, layer_norm, embedding,
//                        cross_entropy, dropout
//   ops_attention.cpp    Multi-Token Attention's kq_conv and head_mix (ops_attention.h)
// Shape, dtype and device mismatches throw std::invalid_argument naming the op and shapes.
#pragma once
#include <vector>

#include "autograd/function.h"
#include "autograd/ops_attention.h"
#include "autograd/random.h"
#include "autograd/tensor.h"

namespace mtalab {

// --- elementwise ---------------------------------------------------------------
Tensor add(const Tensor& a, const Tensor& b);
Tensor sub(const Tensor& a, const Tensor& b);
Tensor mul(const Tensor& a, const Tensor& b);
Tensor div(const Tensor& a, const Tensor& b);
Tensor pow(const Tensor& a, const Tensor& b);  // a > 0 where b's gradient is needed
Tensor maximum(const Tensor& a, const Tensor& b);
Tensor add(const Tensor& a, double s);
Tensor sub(const Tensor& a, double s);
Tensor rsub(double s, const Tensor& a);  // s - a
Tensor mul(const Tensor& a, double s);
Tensor div(const Tensor& a, double s);
Tensor rdiv(double s, const Tensor& a);  // s / a
Tensor pow(const Tensor& a, double p);
Tensor neg(const Tensor& x);
Tensor exp(const Tensor& x);
Tensor log(const Tensor& x);
Tensor sqrt(const Tensor& x);
Tensor rsqrt(const Tensor& x);
Tensor abs(const Tensor& x);
Tensor tanh(const Tensor& x);
Tensor sigmoid(const Tensor& x);
Tensor relu(const Tensor& x);
Tensor silu(const Tensor& x);
Tensor gelu(const Tensor& x);  // exact (erf) form
Tensor square(const Tensor& x);
// Comparisons give 0/1 in a's dtype and carry no gradient.
Tensor eq(const Tensor& a, const Tensor& b);
Tensor gt(const Tensor& a, const Tensor& b);
Tensor lt(const Tensor& a, const Tensor& b);
// cond != 0 picks a, else b; broadcasting. Differentiable in a and b.
Tensor where(const Tensor& cond, const Tensor& a, const Tensor& b);
Tensor masked_fill(const Tensor& x, const Tensor& mask, double value);

Tensor operator+(const Tensor& a, const Tensor& b);
Tensor operator-(const Tensor& a, const Tensor& b);
Tensor operator*(const Tensor& a, const Tensor& b);
Tensor operator/(const Tensor& a, const Tensor& b);
Tensor operator-(const Tensor& a);
Tensor operator+(const Tensor& a, double s);
Tensor operator-(const Tensor& a, double s);
Tensor operator*(const Tensor& a, double s);
Tensor operator/(const Tensor& a, double s);
Tensor operator+(double s, const Tensor& a);
Tensor operator-(double s, const Tensor& a);
Tensor operator*(double s, const Tensor& a);
Tensor operator/(double s, const Tensor& a);

// --- reductions ------------------------------------------------------------------
// An empty dims list reduces over every dimension.
Tensor sum(const Tensor& x, std::vector<int64_t> dims = {}, bool keepdim = false);
Tensor mean(const Tensor& x, std::vector<int64_t> dims = {}, bool keepdim = false);
Tensor max(const Tensor& x, std::vector<int64_t> dims = {}, bool keepdim = false);
Tensor logsumexp(const Tensor& x, int64_t dim = -1, bool keepdim = false);
// Sums a broadcast gradient back down to `shape` (the inverse of expand).
Tensor sum_to(const Tensor& x, const Shape& shape);

// --- shape -------------------------------------------------------------------------
Tensor reshape(const Tensor& x, const Shape& s);  // -1 allowed once
Tensor permute(const Tensor& x, const std::vector<int64_t>& dims);
Tensor transpose(const Tensor& x, int64_t a, int64_t b);
Tensor slice(const Tensor& x, int64_t dim, int64_t start, int64_t end);
Tensor expand(const Tensor& x, const Shape& s);  // -1 keeps a size
Tensor concat(const TensorList& xs, int64_t dim);
TensorList split(const Tensor& x, const std::vector<int64_t>& sizes, int64_t dim);
Tensor contiguous(const Tensor& x);
Tensor to_dtype(const Tensor& x, DType t);
Shape broadcast_shapes(const Shape& a, const Shape& b, const char* op);
// In place, outside autograd: writes src's values (broadcast, cast) into dst's storage.
// For optimizer updates and loading weights.
void copy_(const Tensor& dst, const Tensor& src);

// --- matmul ------------------------------------------------------------------------
// [..., M, K] x [..., K, N] -> [..., M, N]; batch dims broadcast; 1-D and 2-D operands
// as in numpy. Transposed views are passed to BLAS as transposes, without copies.
Tensor matmul(const Tensor& a, const Tensor& b);
// y = x Wᵀ (+ bias): W stored [out, in].
Tensor linear(const Tensor& x, const Tensor& w, const Tensor& bias = Tensor());

// --- neural-net ops (fused forward and backward) -----------------------------------
Tensor softmax(const Tensor& x, int64_t dim = -1);  // only the last dim
Tensor log_softmax(const Tensor& x, int64_t dim = -1);
// Softmax of [..., T, T] score maps where query row i sees keys j <= i (Mask_-inf
// applied inside the kernel); the output is 0 at j > i. The causal attention softmax.
Tensor causal_softmax(const Tensor& x);
// SwiGLU's gate (Shazeer 2020): silu(a) * b in one pass (and one in the backward); a and
// b of one shape.
Tensor swiglu(const Tensor& a, const Tensor& b);
// Rotary position embedding of interleaved pairs (Su et al. 2021, eq. 34): pair i of
// position t turned by the angle whose cos and sin are cos[t, i], sin[t, i]. x [..., T, Dh]
// (a permuted view of heads is read in place), cos and sin [T, Dh/2] constants (no
// gradient: a table that requires grad is refused). The backward is the transposed map.
Tensor rotary_embedding(const Tensor& x, const Tensor& cos, const Tensor& sin);
Tensor rms_norm(const Tensor& x, const Tensor& weight, double eps = 1e-5);
Tensor layer_norm(const Tensor& x, const Tensor& weight, const Tensor& bias, double eps = 1e-5);
Tensor embedding(const Tensor& weight, const Tensor& idx);  // [V,d], int [...] -> [..., d]
// Mean over tokens whose mask is nonzero of -log softmax(logits)[target]. logits [..., V],
// target int [...], mask float [...] or undefined (all ones). 0 when the mask is all zero.
Tensor cross_entropy(const Tensor& logits, const Tensor& target, const Tensor& mask = Tensor());
// Zeroes each element with probability p and scales the rest by 1/(1-p); identity when
// !training or p == 0.
Tensor dropout(const Tensor& x, double p, Generator& g, bool training = true);

}  // namespace mtalab
