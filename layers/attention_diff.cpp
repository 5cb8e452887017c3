// `diff`: differential attention (Ye et al. 2024, arXiv 2410.05258).
//
// With half the baseline's heads (H' = H/2) so parameter counts match: each head's query
// and key split into two halves of Dh = d/H (q1,q2 and k1,k2); its value has 2·Dh.
//   A = softmax(Q1K1ᵀ/√Dh) − λ·softmax(Q2K2ᵀ/√Dh)                        (eq. 1)
//   λ = exp(λq1·λk1) − exp(λq2·λk2) + λ_init,  λ_init = 0.8 − 0.6·exp(−0.3·l)  (eq. 2)
//   out_head = (1 − λ_init) · RMSNorm(A V)                                 (eq. 3)
// The two halves are computed as H ordinary heads of size Dh (head 2i → q1/k1 of
// differential head i, head 2i+1 → q2/k2), then paired.
#include <cmath>

#include "autograd/errors.h"
#include "layers/attention.h"

namespace mtalab {
namespace {

class DiffAttention final : public Attention {
 public:
  explicit DiffAttention(const AttentionConfig& c) : Attention(c) {
    if (c.n_heads % 2)
      throw InputError("attention diff needs an even n_heads (it uses n_heads/2 differential heads), got n_heads=" +
                       std::to_string(c.n_heads));
    const int64_t dh = c.head_dim();
    const TensorOptions o{c.dtype};
    // Normal(0, 0.1) as in the reference implementation.
    lq1_ = register_parameter("lambda_q1", normal({dh}, 0, 0.1, init_gen_, o));
    lk1_ = register_parameter("lambda_k1", normal({dh}, 0, 0.1, init_gen_, o));
    lq2_ = register_parameter("lambda_q2", normal({dh}, 0, 0.1, init_gen_, o));
    lk2_ = register_parameter("lambda_k2", normal({dh}, 0, 0.1, init_gen_, o));
    subln_ = register_parameter("subln.weight", ones({2 * dh}, o));
    lambda_init_ = lambda_init(c.layer);
  }

  Tensor forward(const Tensor& x, const Rope& rope, Generator& g) override {
    const int64_t H = cfg_.n_heads, Hd = H / 2, dh = cfg_.head_dim();
    const int64_t B = x.size(0), T = x.size(1);
    Tensor q = rope.apply(split_heads(linear(x, wq_), H));  // [B, H, T, dh], RoPE per half
    Tensor k = rope.apply(split_heads(linear(x, wk_), H));
    Tensor v = split_heads(linear(x, wv_), Hd);             // [B, H', T, 2dh]
    Tensor lam = lambda();
    Tensor av;
    if (use_fused()) {
      // A V = P1 V - lambda P2 V without the maps. The fused kernel's values have the
      // queries' width dh, so each product is taken on the two dh-halves of v.
      auto pair = [&](const Tensor& t, int64_t i) {
        return reshape(slice(reshape(t, {B, Hd, 2, T, dh}), 2, i, i + 1), {B, Hd, T, dh});
      };
      const TensorList vh = split(v, {dh, dh}, -1);
      auto pv = [&](int64_t i) {
        return concat({fused_attention(pair(q, i), pair(k, i), contiguous(vh[0]), scale()),
                       fused_attention(pair(q, i), pair(k, i), contiguous(vh[1]), scale())},
                      -1);
      };
      av = sub(pv(0), mul(pv(1), lam));
    } else {
      Tensor a = difference(causal_softmax(mul(matmul(q, transpose(k, -1, -2)), scale())), lam);
      keep_maps(a);
      av = matmul(attn_dropout(a, g), v);
    }
    return finish(av);
  }

  // Generation: the new queries against every cached key of both halves.
  Tensor decode(const Tensor& x, const Rope& rope, LayerCache& cache) override {
    const int64_t H = cfg_.n_heads;
    Tensor q = rope.apply(split_heads(linear(x, wq_), H), cache.pos);
    Tensor k = cache["k"] = append_rows(cache["k"], rope.apply(split_heads(linear(x, wk_), H), cache.pos), 2);
    Tensor v = cache["v"] = append_rows(cache["v"], split_heads(linear(x, wv_), H / 2), 2);
    Tensor p = decode_softmax(mul(matmul(q, transpose(k, -1, -2)), scale()));
    return finish(matmul(difference(p, lambda()), v));
  }

  std::vector<std::string> kernel_names() const override { return {"lambda_q1", "lambda_k1", "lambda_q2", "lambda_k2"}; }

 private:
  double scale() const { return 1.0 / std::sqrt((double)cfg_.head_dim()); }
  Tensor lambda() const { return add(sub(exp(sum(mul(lq1_, lk1_))), exp(sum(mul(lq2_, lk2_)))), lambda_init_); }
  // A = P1 − λ·P2 (eq. 1) from the [B, H, Tq, Tk] maps of the H halves (2i, 2i+1).
  Tensor difference(const Tensor& p, const Tensor& lam) const {
    const int64_t B = p.size(0), Hd = p.size(1) / 2, Tq = p.size(2), Tk = p.size(3);
    Tensor pairs = reshape(p, {B, Hd, 2, Tq, Tk});
    return sub(reshape(slice(pairs, 2, 0, 1), {B, Hd, Tq, Tk}), mul(reshape(slice(pairs, 2, 1, 2), {B, Hd, Tq, Tk}), lam));
  }
  // (1 − λ_init) · RMSNorm(A V) (eq. 3), heads merged, then W_o.
  Tensor finish(const Tensor& av) { return output(mul(rms_norm(av, subln_, 1e-5), 1.0 - lambda_init_)); }
  Tensor lq1_, lk1_, lq2_, lk2_, subln_;
  double lambda_init_ = 0;
};

}  // namespace

// Fused: two fused attentions per head pair; on the maps path the scores, both
// probabilities, their difference and the dropout mask.
MTALAB_REGISTER_ATTENTION_VARIANT(
    diff, (AttentionVariant{"diff", "differential attention, n_heads/2 heads of two softmax maps (arXiv 2410.05258)", {},
                            [](const AttentionConfig& c, const OptionValues&) {
                              return std::make_shared<DiffAttention>(c);
                            },
                            {}, {}, {}, /*fused=*/true, /*maps_per_head=*/4}));

}  // namespace mtalab
