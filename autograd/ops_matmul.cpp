// Batched matmul with numpy broadcasting of batch dims, and linear.
#include "autograd/autocast.h"
#include "autograd/ops_util.h"

namespace mtalab {
namespace {

// out = a b with a [..., M, K] and b [..., K, N] (at least 2-D, batch dims broadcast), in
// `out` dtype; no autograd.
Tensor product(const Tensor& a, const Tensor& b, DType out) {
  const Shape ba(a.shape().begin(), a.shape().end() - 2), bb(b.shape().begin(), b.shape().end() - 2);
  Shape batch = broadcast_shapes(ba, bb, "matmul");
  Shape sa = batch, sb = batch, so = batch;
  sa.insert(sa.end(), {a.size(-2), a.size(-1)});
  sb.insert(sb.end(), {b.size(-2), b.size(-1)});
  so.insert(so.end(), {a.size(-2), b.size(-1)});
  Tensor y = Tensor::empty(so, {out, a.device()});
  matmul_kernel(a.device())(a.shape() == sa ? a : a.expand(sa), b.shape() == sb ? b : b.expand(sb), y);
  return y;
}

// A bfloat16 copy (no autograd): what the mixed-precision product multiplies and saves.
Tensor bf16_copy(const Tensor& x) {
  Tensor y = Tensor::empty(x.shape(), {DType::bf16, x.device()});
  copy_kernel(x.device())(x, y);
  return y;
}

struct MatmulOp {
  static constexpr const char* name = "matmul";
  // a [..., M, K], b [..., K, N], both at least 2-D. mixed (autograd/autocast.h): float32
  // a and b are multiplied as bfloat16 copies, the result float32.
  static Tensor forward(Context& ctx, const Tensor& a, const Tensor& b, bool mixed) {
    detail::check_compatible(name, a, b);
    detail::check_float(name, a);
    if (a.size(-1) != b.size(-2))
      throw std::invalid_argument("matmul: inner dimensions differ, " + shape_str(a.shape()) + " x " +
                                  shape_str(b.shape()));
    const Tensor ka = mixed ? bf16_copy(a) : a, kb = mixed ? bf16_copy(b) : b;
    Tensor out = product(ka, kb, mixed ? DType::f32 : a.dtype());
    ctx.save({ctx.needs_grad(1) ? ka : Tensor(), ctx.needs_grad(0) ? kb : Tensor()});
    ctx.shapes = {a.shape(), b.shape()};
    ctx.ints = {mixed};
    return out;
  }
  static TensorList backward(Context& ctx, const Tensor& g) {
    // dA = g Bᵀ, dB = Aᵀ g: the transposes are views that BLAS takes as flags.
    if (ctx.ints[0]) {  // mixed: bfloat16 g against the saved bfloat16 operands, float32 gradients
      const Tensor g16 = bf16_copy(g);
      return {ctx.needs_grad(0) ? sum_to(product(g16, ctx.saved[1].transpose(-1, -2), DType::f32), ctx.shapes[0])
                                : Tensor(),
              ctx.needs_grad(1) ? sum_to(product(ctx.saved[0].transpose(-1, -2), g16, DType::f32), ctx.shapes[1])
                                : Tensor()};
    }
    return {ctx.needs_grad(0) ? sum_to(matmul(g, ctx.saved[1].transpose(-1, -2)), ctx.shapes[0]) : Tensor(),
            ctx.needs_grad(1) ? sum_to(matmul(ctx.saved[0].transpose(-1, -2), g), ctx.shapes[1]) : Tensor()};
  }
};

}  // namespace

Tensor matmul(const Tensor& a, const Tensor& b) {
  if (a.dim() == 0 || b.dim() == 0)
    throw std::invalid_argument("matmul: scalar operand, shapes " + shape_str(a.shape()) + " x " + shape_str(b.shape()));
  if (a.dim() == 1) return matmul(a.unsqueeze(0), b).squeeze(-2);
  if (b.dim() == 1) return matmul(a, b.unsqueeze(-1)).squeeze(-1);
  return Function<MatmulOp>::apply(a, b, autocast_bf16() && a.dtype() == DType::f32 && b.dtype() == DType::f32);
}

Tensor linear(const Tensor& x, const Tensor& w, const Tensor& bias) {
  if (w.dim() != 2 || x.size(-1) != w.size(1))
    throw std::invalid_argument("linear: input " + shape_str(x.shape()) + " does not match weight " +
                                shape_str(w.shape()) + " (expected [out, in] with in = input's last dim)");
  // Fold leading dims into rows: one GEMM instead of a batch of small ones.
  Shape out_shape = x.shape();
  out_shape.back() = w.size(0);
  Tensor y = matmul(reshape(x, {-1, x.size(-1)}), w.transpose(0, 1));
  if (bias.defined()) y = add(y, bias);
  return reshape(y, out_shape);
}

}  // namespace mtalab
