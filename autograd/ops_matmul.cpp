// Batched matmul with numpy broadcasting of batch dims, and linear.
#include "autograd/ops_util.h"

namespace mtalab {

struct MatmulOp {
  static constexpr const char* name = "matmul";
  // a [..., M, K], b [..., K, N], both at least 2-D.
  static Tensor forward(Context& ctx, const Tensor& a, const Tensor& b) {
    detail::check_compatible(name, a, b);
    detail::check_float(name, a);
    if (a.size(-1) != b.size(-2))
      throw std::invalid_argument("matmul: inner dimensions differ, " + shape_str(a.shape()) + " x " +
                                  shape_str(b.shape()));
    const Shape ba(a.shape().begin(), a.shape().end() - 2), bb(b.shape().begin(), b.shape().end() - 2);
    Shape batch = broadcast_shapes(ba, bb, name);
    Shape sa = batch, sb = batch, so = batch;
    sa.insert(sa.end(), {a.size(-2), a.size(-1)});
    sb.insert(sb.end(), {b.size(-2), b.size(-1)});
    so.insert(so.end(), {a.size(-2), b.size(-1)});
    Tensor out = Tensor::empty(so, a.options());
    matmul_kernel(a.device())(a.shape() == sa ? a : a.expand(sa), b.shape() == sb ? b : b.expand(sb), out);
    ctx.save({ctx.needs_grad(1) ? a : Tensor(), ctx.needs_grad(0) ? b : Tensor()});
    ctx.shapes = {a.shape(), b.shape()};
    return out;
  }
  static TensorList backward(Context& ctx, const Tensor& g) {
    // dA = g Bᵀ, dB = Aᵀ g: the transposes are views that BLAS takes as flags.
    return {ctx.needs_grad(0) ? sum_to(matmul(g, ctx.saved[1].transpose(-1, -2)), ctx.shapes[0]) : Tensor(),
            ctx.needs_grad(1) ? sum_to(matmul(ctx.saved[0].transpose(-1, -2), g), ctx.shapes[1]) : Tensor()};
  }
};

Tensor matmul(const Tensor& a, const Tensor& b) {
  if (a.dim() == 0 || b.dim() == 0)
    throw std::invalid_argument("matmul: scalar operand, shapes " + shape_str(a.shape()) + " x " + shape_str(b.shape()));
  if (a.dim() == 1) return matmul(a.unsqueeze(0), b).squeeze(-2);
  if (b.dim() == 1) return matmul(a, b.unsqueeze(-1)).squeeze(-1);
  return Function<MatmulOp>::apply(a, b);
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
