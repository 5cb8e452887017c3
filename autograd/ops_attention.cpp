// The MTA attention-map ops: argument checks and autograd wiring around the fused
// kernels of autograd/kernels.h.
#include "autograd/ops_attention.h"

#include <stdexcept>
#include <string>
#include <vector>

#include "autograd/autocast.h"
#include "autograd/errors.h"
#include "autograd/ops.h"
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

struct FusedAttentionOp {
  static constexpr const char* name = "fused_attention";
  // What the forward saves, in ctx.saved's order.
  enum Saved { q_, k_, v_, o_, lse_, kq_pre_, mix_pre_, kq_post_, mix_post_ };
  // mixed (autograd/autocast.h): float32 q, k, v go to the kernels as bfloat16 copies
  // (saved for the backward); o, lse and every gradient are float32.
  static Tensor forward(Context& ctx, const Tensor& q, const Tensor& k, const Tensor& v, const Tensor& kq_pre,
                        const Tensor& mix_pre, const Tensor& kq_post, const Tensor& mix_post, double scale,
                        int64_t p_pre, int64_t p_post, bool mixed) {
    auto c = [](const Tensor& t) { return t.defined() ? detail::materialize(t) : t; };
    auto operand = [&](const Tensor& t) { return mixed ? t.to(DType::bf16).detach() : c(t); };
    AttentionParams a{scale, c(kq_pre), c(mix_pre), c(kq_post), c(mix_post), p_pre, p_post};
    const Tensor qc = operand(q), kc = operand(k), vc = operand(v);
    // bfloat16 inputs: o in float32 (mixed) or bfloat16, the row statistics in float32.
    const DType od = mixed ? DType::f32 : q.dtype(), sd = q.dtype() == DType::bf16 || mixed ? DType::f32 : q.dtype();
    Tensor o = Tensor::empty(q.shape(), {od, q.device()});
    Tensor lse = Tensor::empty({q.size(0), q.size(1), q.size(2)}, {sd, q.device()});
    attention_kernel(q.device())(qc, kc, vc, a, o, lse);
    ctx.save({qc, kc, vc, o, lse, a.kq_pre, a.mix_pre, a.kq_post, a.mix_post});
    ctx.scalars = {scale};
    ctx.ints = {p_pre, p_post, mixed, (int64_t)q.dtype()};
    return o;
  }
  static TensorList backward(Context& ctx, const Tensor& g) {
    const TensorList& s = ctx.saved;
    const AttentionParams a{ctx.scalars[0], s[kq_pre_], s[mix_pre_], s[kq_post_], s[mix_post_], ctx.ints[0], ctx.ints[1]};
    const DType qd = (DType)ctx.ints[3];  // the gradients of q, k, v: their own dtype (float32 when mixed)
    // The gradient of input `i`, shaped like saved tensor `like`, in `dt` (default: its own).
    auto want = [&](size_t i, Saved like, DType dt = DType::f32) {
      const Tensor& t = s[like];
      if (!ctx.needs_grad(i)) return Tensor();
      return Tensor::empty(t.shape(), {like <= v_ ? dt : t.dtype(), t.device()});
    };
    AttentionGrads gr{want(0, q_, qd),     want(1, k_, qd),       want(2, v_, qd),       want(3, kq_pre_),
                      want(4, mix_pre_), want(5, kq_post_), want(6, mix_post_)};
    attention_bwd_kernel(g.device())(s[q_], s[k_], s[v_], s[o_], s[lse_], detail::materialize(g), a, gr);
    return {gr.dq, gr.dk, gr.dv, gr.dkq_pre, gr.dmix_pre, gr.dkq_post, gr.dmix_post};
  }
};

// q, k, v [B, H, T, Dh] alike; each component shaped for H heads.
void check_attention(const Tensor& q, const Tensor& k, const Tensor& v, const MtaMaps& m) {
  const char* op = "fused_attention";
  detail::check_float(op, q);
  for (const Tensor* t : {&k, &v}) {
    detail::check_compatible(op, q, *t);
    if (t->shape() != q.shape())
      throw std::invalid_argument(std::string(op) + ": q, k and v must have the same shape [B, H, T, Dh], got " +
                                  shape_str(q.shape()) + " and " + shape_str(t->shape()));
  }
  if (q.dim() != 4) throw std::invalid_argument(std::string(op) + ": expected q [B, H, T, Dh], got " + shape_str(q.shape()));
  const int64_t H = q.size(1);
  // The MTA kernels stay float32 beside bfloat16 q, k, v (autograd/kernels.h).
  const DType comp = q.dtype() == DType::bf16 ? DType::f32 : q.dtype();
  auto check_component = [&](const Tensor& t) {
    detail::check_same_device(op, q, t);
    if (t.dtype() != comp)
      throw std::invalid_argument(std::string(op) + ": an MTA kernel of dtype " + dtype_name(t.dtype()) + " beside q of " +
                                  dtype_name(q.dtype()) + " (expected " + dtype_name(comp) + ")");
  };
  for (const Tensor* t : {&m.kq_pre, &m.kq_post}) {
    if (!t->defined()) continue;
    check_component(*t);
    if (t->dim() != 3 || t->size(0) != H || t->size(1) < 1 || t->size(2) < 1)
      throw std::invalid_argument(std::string(op) + ": kq kernel of shape " + shape_str(t->shape()) +
                                  " does not match q " + shape_str(q.shape()) + " (expected [H, c_q, c_k] with H = " +
                                  std::to_string(H) + ")");
  }
  int64_t ch = 0;
  for (const Tensor* t : {&m.mix_pre, &m.mix_post}) {
    if (!t->defined()) continue;
    check_component(*t);
    if (t->dim() != 3 || t->size(1) != t->size(2) || t->size(1) < 1 || H % t->size(1) || t->size(0) != H / t->size(1))
      throw std::invalid_argument(std::string(op) + ": head mix of shape " + shape_str(t->shape()) +
                                  " does not match q " + shape_str(q.shape()) + " (expected [H/c_h, c_h, c_h])");
    if (ch && ch != t->size(1))
      throw std::invalid_argument(std::string(op) + ": the mixes before and after softmax have different group sizes " +
                                  std::to_string(ch) + " and " + std::to_string(t->size(1)));
    ch = t->size(1);
  }
}

}  // namespace

Tensor fused_attention(const Tensor& q, const Tensor& k, const Tensor& v, double scale, const MtaMaps& m) {
  check_attention(q, k, v, m);
  const int64_t p_pre = m.kq_pre.defined() ? kq_pad_offset(m.pad, m.kq_pre.size(2)) : 0;
  const int64_t p_post = m.kq_post.defined() ? kq_pad_offset(m.pad, m.kq_post.size(2)) : 0;
  const bool mixed = autocast_bf16() && q.dtype() == DType::f32;
  return Function<FusedAttentionOp>::apply(q, k, v, m.kq_pre, m.mix_pre, m.kq_post, m.mix_post, scale, p_pre, p_post,
                                           mixed);
}

Tensor attention_probs(const Tensor& q, const Tensor& k, double scale, const MtaMaps& m) {
  check_attention(q, k, q, m);
  Tensor s = mul(matmul(q, transpose(k, -1, -2)), scale);
  if (m.kq_pre.defined()) s = kq_conv(s, m.kq_pre, m.pad);  // Conv(Mask_0(S)), eq. (4)
  if (m.mix_pre.defined()) s = head_mix(s, m.mix_pre);
  Tensor p = causal_softmax(s);  // softmax(Mask_-inf(.))
  if (m.kq_post.defined()) p = kq_conv(p, m.kq_post, m.pad);  // Mask_0(Conv(P)), eq. (5)
  if (m.mix_post.defined()) p = head_mix(p, m.mix_post);
  return p;
}

Tensor attention_maps(const Tensor& q, const Tensor& k, const Tensor& v, double scale, const MtaMaps& m) {
  check_attention(q, k, v, m);
  return matmul(attention_probs(q, k, scale, m), v);
}

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
