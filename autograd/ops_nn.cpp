// Fused neural-net ops: each forward and backward is one kernel call.
#include "autograd/ops_util.h"

namespace mtalab {

struct SoftmaxOp {
  static constexpr const char* name = "softmax";
  static Tensor forward(Context& ctx, const Tensor& x, bool log, bool causal) {
    detail::check_float(name, x);
    if (causal && (x.dim() < 2 || x.size(-1) != x.size(-2)))
      throw std::invalid_argument("causal_softmax: expected [..., T, T] maps, got " + shape_str(x.shape()));
    Tensor xc = detail::materialize(x);
    Tensor y = Tensor::empty(x.shape(), x.options());
    softmax_kernel(x.device())(xc, y, log, causal);
    ctx.save({y});
    ctx.ints = {log, causal};
    return y;
  }
  static TensorList backward(Context& ctx, const Tensor& g) {
    const Tensor& y = ctx.saved[0];
    Tensor gx = Tensor::empty(y.shape(), y.options());
    softmax_bwd_kernel(y.device())(y, detail::materialize(g), gx, ctx.ints[0] != 0, ctx.ints[1] != 0);
    return {gx};
  }
};
static void check_last(int64_t dim, const Tensor& x, const char* op) {
  if (wrap_dim(dim, x.dim(), op) != x.dim() - 1)
    throw std::invalid_argument(std::string(op) + ": only the last dimension is supported, got dim " +
                                std::to_string(dim) + " of " + shape_str(x.shape()));
}
Tensor softmax(const Tensor& x, int64_t dim) {
  check_last(dim, x, "softmax");
  return Function<SoftmaxOp>::apply(x, false, false);
}
Tensor causal_softmax(const Tensor& x) { return Function<SoftmaxOp>::apply(x, false, true); }
Tensor log_softmax(const Tensor& x, int64_t dim) {
  check_last(dim, x, "log_softmax");
  return Function<SoftmaxOp>::apply(x, true, false);
}

struct NormOp {
  static constexpr const char* name = "norm";
  static Tensor forward(Context& ctx, const Tensor& x, const Tensor& w, const Tensor& b, bool layer, double eps) {
    detail::check_float(layer ? "layer_norm" : "rms_norm", x);
    for (const Tensor* p : {&w, &b}) {
      if (!p->defined()) continue;
      detail::check_compatible(layer ? "layer_norm" : "rms_norm", x, *p);
      if (p->dim() != 1 || p->size(0) != x.size(-1))
        throw std::invalid_argument(std::string(layer ? "layer_norm" : "rms_norm") + ": parameter of shape " +
                                    shape_str(p->shape()) + " does not match input " + shape_str(x.shape()) +
                                    " (expected [" + std::to_string(x.size(-1)) + "])");
    }
    Tensor xc = detail::materialize(x);
    Shape rows(x.shape().begin(), x.shape().end() - 1);
    // The row statistics in float32 beside bfloat16 (autograd/kernels.h).
    const TensorOptions stats{acc_dtype(x.dtype()), x.device()};
    Tensor y = Tensor::empty(x.shape(), x.options()), mean = Tensor::empty(rows, stats), rstd = Tensor::empty(rows, stats);
    norm_kernel(x.device())(layer, xc, w.defined() ? detail::materialize(w) : w,
                            b.defined() ? detail::materialize(b) : b, eps, y, mean, rstd);
    ctx.save({xc, w.defined() ? detail::materialize(w) : w, mean, rstd});
    ctx.ints = {layer};
    return y;
  }
  static TensorList backward(Context& ctx, const Tensor& g) {
    const Tensor &x = ctx.saved[0], &w = ctx.saved[1], &mean = ctx.saved[2], &rstd = ctx.saved[3];
    Tensor gx = ctx.needs_grad(0) ? Tensor::empty(x.shape(), x.options()) : Tensor();
    Tensor gw = ctx.needs_grad(1) ? Tensor::empty(w.shape(), w.options()) : Tensor();
    Tensor gb = ctx.needs_grad(2) ? Tensor::empty({x.size(-1)}, x.options()) : Tensor();
    norm_bwd_kernel(x.device())(ctx.ints[0] != 0, x, w, mean, rstd, detail::materialize(g), gx, gw, gb);
    return {gx, gw, gb};
  }
};
Tensor rms_norm(const Tensor& x, const Tensor& weight, double eps) {
  return Function<NormOp>::apply(x, weight, Tensor(), false, eps);
}
Tensor layer_norm(const Tensor& x, const Tensor& weight, const Tensor& bias, double eps) {
  return Function<NormOp>::apply(x, weight, bias, true, eps);
}

struct EmbeddingOp {
  static constexpr const char* name = "embedding";
  static Tensor forward(Context& ctx, const Tensor& w, const Tensor& idx) {
    detail::check_float(name, w);
    if (w.dim() != 2) throw std::invalid_argument("embedding: weight must be [V, d], got " + shape_str(w.shape()));
    detail::check_same_device(name, w, idx);
    if (is_floating(idx.dtype()))
      throw std::invalid_argument("embedding: indices must be int32 or int64, got " + std::string(dtype_name(idx.dtype())));
    Shape s = idx.shape();
    s.push_back(w.size(1));
    Tensor out = Tensor::empty(s, w.options());
    Tensor ic = detail::materialize(idx);
    embedding_kernel(w.device())(detail::materialize(w), ic, out);
    ctx.save({ic});
    ctx.shapes = {w.shape()};
    return out;
  }
  static TensorList backward(Context& ctx, const Tensor& g) {
    Tensor gw = Tensor::empty(ctx.shapes[0], g.options());
    embedding_bwd_kernel(g.device())(detail::materialize(g), ctx.saved[0], gw);
    return {gw, Tensor()};
  }
};
Tensor embedding(const Tensor& weight, const Tensor& idx) { return Function<EmbeddingOp>::apply(weight, idx); }

struct CrossEntropyOp {
  static constexpr const char* name = "cross_entropy";
  static Tensor forward(Context& ctx, const Tensor& logits, const Tensor& target, const Tensor& mask) {
    detail::check_float(name, logits);
    Shape lead(logits.shape().begin(), logits.shape().end() - 1);
    detail::check_same_device(name, logits, target);
    if (mask.defined()) detail::check_same_device(name, logits, mask);
    if (target.shape() != lead || (mask.defined() && mask.shape() != lead))
      throw std::invalid_argument("cross_entropy: logits " + shape_str(logits.shape()) + " need targets" +
                                  (mask.defined() ? " and mask" : "") + " of shape " + shape_str(lead) + ", got " +
                                  shape_str(target.shape()) + (mask.defined() ? " and " + shape_str(mask.shape()) : ""));
    const int64_t V = logits.size(-1), N = target.numel();
    Tensor l2 = reshape(logits, {N, V}), t = detail::materialize(target);
    // The loss, lse and weights in float32 beside bfloat16 logits (autograd/kernels.h).
    const TensorOptions stats{acc_dtype(logits.dtype()), logits.device()};
    Tensor loss = Tensor::empty({N}, stats), lse = Tensor::empty({N}, stats);
    cross_entropy_kernel(logits.device())(l2, t, loss, lse);
    // Per-token weights: mask / (number of unmasked tokens), so the loss is their mean.
    Tensor w = mask.defined() ? reshape(to_dtype(mask, stats.dtype), {N}) : ones({N}, stats);
    // Divided on the device (no read back per step); an all-zero mask gives 0, not NaN.
    Tensor scale = div(w, maximum(sum(w), ones({}, w.options())));
    ctx.save({l2, t, lse, scale});
    ctx.shapes = {logits.shape()};
    return sum(mul(loss, scale));
  }
  static TensorList backward(Context& ctx, const Tensor& g) {
    const Tensor &l2 = ctx.saved[0], &t = ctx.saved[1], &lse = ctx.saved[2];
    Tensor scale = detail::materialize(mul(ctx.saved[3], g));
    Tensor gl = Tensor::empty(l2.shape(), l2.options());
    cross_entropy_bwd_kernel(l2.device())(l2, t, lse, scale, gl);
    return {reshape(gl, ctx.shapes[0]), Tensor(), Tensor()};
  }
};
Tensor cross_entropy(const Tensor& logits, const Tensor& target, const Tensor& mask) {
  return Function<CrossEntropyOp>::apply(logits, target, mask);
}

Tensor dropout(const Tensor& x, double p, Generator& g, bool training) {
  if (p < 0 || p >= 1) throw std::invalid_argument("dropout: p must be in [0, 1), got " + std::to_string(p));
  if (!training || p == 0) return x;
  // keep = (u >= p) / (1 - p): a constant mask, so the gradient is g * keep.
  Tensor u = rand(x.shape(), g, {x.dtype(), x.device()});
  Tensor keep = mul(gt(u, full({}, p, u.options())), 1.0 / (1.0 - p));
  return mul(x, keep);
}

struct SwigluOp {
  static constexpr const char* name = "swiglu";
  static Tensor forward(Context& ctx, const Tensor& a, const Tensor& b) {
    detail::check_float(name, a);
    detail::check_compatible(name, a, b);
    if (a.shape() != b.shape())
      throw std::invalid_argument("swiglu: gate " + shape_str(a.shape()) + " and value " + shape_str(b.shape()) +
                                  " differ (expected one shape)");
    const Tensor ac = detail::materialize(a), bc = detail::materialize(b);
    Tensor y = Tensor::empty(a.shape(), a.options());
    swiglu_kernel(a.device())(ac, bc, y);
    ctx.save({ac, bc});
    return y;
  }
  static TensorList backward(Context& ctx, const Tensor& g) {
    const Tensor &a = ctx.saved[0], &b = ctx.saved[1];
    Tensor ga = ctx.needs_grad(0) ? Tensor::empty(a.shape(), a.options()) : Tensor();
    Tensor gb = ctx.needs_grad(1) ? Tensor::empty(b.shape(), b.options()) : Tensor();
    swiglu_bwd_kernel(a.device())(a, b, detail::materialize(g), ga, gb);
    return {ga, gb};
  }
};
Tensor swiglu(const Tensor& a, const Tensor& b) { return Function<SwigluOp>::apply(a, b); }

struct RotaryOp {
  static constexpr const char* name = "rotary_embedding";
  // x [..., T, Dh] as a 4-D [B, H, T, Dh] view (a permuted view goes to the kernel as it
  // is; other layouts are copied once), cos and sin [T, Dh/2], constants.
  static Tensor as4d(const Tensor& x) {
    if (x.dim() == 4 && x.strides()[3] == 1) return x;
    const Tensor c = detail::materialize(x);
    return detail::make_view(c, {1, c.numel() / (x.size(-2) * x.size(-1)), x.size(-2), x.size(-1)},
                             contiguous_strides({1, c.numel() / (x.size(-2) * x.size(-1)), x.size(-2), x.size(-1)}),
                             c.offset());
  }
  static Tensor forward(Context& ctx, const Tensor& x, const Tensor& cos, const Tensor& sin) {
    detail::check_float(name, x);
    detail::check_compatible(name, x, cos);
    detail::check_compatible(name, x, sin);
    if (ctx.needs_grad(1) || ctx.needs_grad(2))
      throw std::invalid_argument("rotary_embedding: cos and sin are constants here, got a table that requires grad");
    if (x.dim() < 2 || x.size(-1) % 2 || cos.dim() != 2 || cos.shape() != sin.shape() || cos.size(0) != x.size(-2) ||
        cos.size(1) * 2 != x.size(-1))
      throw std::invalid_argument("rotary_embedding: input " + shape_str(x.shape()) + " with cos " +
                                  shape_str(cos.shape()) + " and sin " + shape_str(sin.shape()) +
                                  " (expected x [..., T, Dh] with Dh even, cos and sin [T, Dh/2])");
    Tensor y = Tensor::empty(x.shape(), x.options());
    const Tensor c = detail::materialize(cos), s = detail::materialize(sin);
    rope_kernel(x.device())(as4d(x), c, s, false, as4d(y));
    ctx.save({c, s});
    return y;
  }
  static TensorList backward(Context& ctx, const Tensor& g) {
    // Per pair the map is the matrix [[c, -s], [s, c]]; its gradient is the transpose,
    // [[c, s], [-s, c]]: the kernel with s negated (for a true rotation, the inverse).
    Tensor gx;
    if (ctx.needs_grad(0)) {
      gx = Tensor::empty(g.shape(), g.options());
      rope_kernel(g.device())(as4d(g), ctx.saved[0], ctx.saved[1], true, as4d(gx));
    }
    return {gx, Tensor(), Tensor()};
  }
};
Tensor rotary_embedding(const Tensor& x, const Tensor& cos, const Tensor& sin) {
  return Function<RotaryOp>::apply(x, cos, sin);
}

}  // namespace mtalab
