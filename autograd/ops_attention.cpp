// The MTA attention-map ops: argument checks and autograd wiring around the fused
// kernels of autograd/kernels.h.
#include "autograd/ops_attention.h"

#include <stdexcept>
#include <string>
#include <vector>

#include "autograd/errors.h"
#include "autograd/ops_util.h"

namespace mtalab {

KqPad parse_kq_pad(const std::string& s) {
  if (s == "both") return KqPad::both;
  if (s == "left") return KqPad::left;
  if (s == "right") return KqPad::right;
  throw InputError("unknown kq_conv key padding '" + s + "' (expected both, left or right)");
}

const char* kq_pad_name(KqPad pad) {
  switch (pad) {
    case KqPad::both: return "both";
    case KqPad::left: return "left";
    case KqPad::right: return "right";
  }
  return "?";
}

int64_t kq_pad_offset(KqPad pad, int64_t ck) {
  if (ck < 1) throw std::invalid_argument("kq_conv: key kernel size c_k must be >= 1, got c_k = " + std::to_string(ck));
  switch (pad) {
    case KqPad::both:
      if (ck % 2 == 0)
        throw std::invalid_argument("kq_conv: key padding 'both' needs an odd key kernel size c_k, got c_k = " +
                                    std::to_string(ck));
      return (ck - 1) / 2;
    case KqPad::left: return ck - 1;
    case KqPad::right: return 0;
  }
  throw std::invalid_argument("kq_conv: invalid key padding");
}

namespace {

// x must be [B, H, T, T].
void check_maps(const char* op, const Tensor& x, const Tensor& w) {
  if (x.dim() != 4 || x.size(2) != x.size(3))
    throw std::invalid_argument(std::string(op) + ": expected input maps [B, H, T, T], got " + shape_str(x.shape()) +
                                " (with parameter " + shape_str(w.shape()) + ")");
}

struct KqConvOp {
  static constexpr const char* name = "kq_conv";
  static Tensor forward(Context& ctx, const Tensor& x, const Tensor& kernel, int64_t pad_left) {
    const Tensor xc = detail::materialize(x), kc = detail::materialize(kernel);
    Tensor out = Tensor::empty(x.shape(), x.options());
    kq_conv_kernel(x.device())(xc, kc, pad_left, out);
    if (ctx.needs_grad(0) || ctx.needs_grad(1)) ctx.save({ctx.needs_grad(1) ? xc : Tensor(), kc});
    ctx.ints = {pad_left};
    return out;
  }
  static TensorList backward(Context& ctx, const Tensor& g) {
    const Tensor& x = ctx.saved[0];
    const Tensor& k = ctx.saved[1];
    const Tensor gc = detail::materialize(g);
    Tensor gx = ctx.needs_grad(0) ? Tensor::empty(g.shape(), g.options()) : Tensor();
    Tensor gk = ctx.needs_grad(1) ? Tensor::empty(k.shape(), k.options()) : Tensor();
    // x is only kept when the kernel needs a gradient; the kernel reads it only then.
    kq_conv_bwd_kernel(g.device())(x.defined() ? x : gc, k, ctx.ints[0], gc, gx, gk);
    return {gx, gk};
  }
};

struct HeadMixOp {
  static constexpr const char* name = "head_mix";
  static Tensor forward(Context& ctx, const Tensor& x, const Tensor& mix) {
    const Tensor xc = detail::materialize(x), mc = detail::materialize(mix);
    Tensor out = Tensor::empty(x.shape(), x.options());
    head_mix_kernel(x.device())(xc, mc, out);
    if (ctx.needs_grad(0) || ctx.needs_grad(1)) ctx.save({ctx.needs_grad(1) ? xc : Tensor(), mc});
    return out;
  }
  static TensorList backward(Context& ctx, const Tensor& g) {
    const Tensor& x = ctx.saved[0];
    const Tensor& m = ctx.saved[1];
    const Tensor gc = detail::materialize(g);
    Tensor gx = ctx.needs_grad(0) ? Tensor::empty(g.shape(), g.options()) : Tensor();
    Tensor gm = ctx.needs_grad(1) ? Tensor::empty(m.shape(), m.options()) : Tensor();
    head_mix_bwd_kernel(g.device())(x.defined() ? x : gc, m, gc, gx, gm);
    return {gx, gm};
  }
};

}  // namespace

Tensor kq_conv(const Tensor& x, const Tensor& kernel, KqPad pad) {
  const char* op = "kq_conv";
  detail::check_compatible(op, x, kernel);
  detail::check_float(op, x);
  check_maps(op, x, kernel);
  if (kernel.dim() != 3 || kernel.size(0) != x.size(1) || kernel.size(1) < 1 || kernel.size(2) < 1)
    throw std::invalid_argument("kq_conv: kernel of shape " + shape_str(kernel.shape()) + " does not match input " +
                                shape_str(x.shape()) + " (expected [H, c_q, c_k] with H = " +
                                std::to_string(x.size(1)) + ", c_q, c_k >= 1)");
  const int64_t p = kq_pad_offset(pad, kernel.size(2));
  return Function<KqConvOp>::apply(x, kernel, p);
}

Tensor head_mix(const Tensor& x, const Tensor& mix) {
  const char* op = "head_mix";
  detail::check_compatible(op, x, mix);
  detail::check_float(op, x);
  check_maps(op, x, mix);
  if (mix.dim() != 3 || mix.size(1) != mix.size(2) || mix.size(1) < 1)
    throw std::invalid_argument("head_mix: mix of shape " + shape_str(mix.shape()) + " does not match input " +
                                shape_str(x.shape()) + " (expected [H/c_h, c_h, c_h])");
  const int64_t H = x.size(1), ch = mix.size(1);
  if (H % ch != 0)
    throw std::invalid_argument("head_mix: H = " + std::to_string(H) + " heads are not divisible by the group size c_h = " +
                                std::to_string(ch) + " (mix " + shape_str(mix.shape()) + ", input " +
                                shape_str(x.shape()) + ")");
  if (mix.size(0) != H / ch)
    throw std::invalid_argument("head_mix: mix of shape " + shape_str(mix.shape()) + " does not match input " +
                                shape_str(x.shape()) + " (expected [" + std::to_string(H / ch) + ", " +
                                std::to_string(ch) + ", " + std::to_string(ch) + "])");
  return Function<HeadMixOp>::apply(x, mix);
}

}  // namespace mtalab
