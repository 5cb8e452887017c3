// A worked example of adding an attention variant: softmax attention with a learnable
// per-head temperature. This whole file is what a new variant takes; the README shows it
// and tests/layers/test_attention_variants.cpp checks its gradients and causality.
#include <cmath>

#include "layers/attention.h"

namespace mtalab {
namespace {

class TemperatureAttention final : public Attention {
 public:
  TemperatureAttention(const AttentionConfig& c, double init_temperature) : Attention(c) {
    // log-temperature per head, so the temperature stays positive: [H, 1, 1] broadcasts over T×T.
    log_temp_ = register_parameter("log_temperature", full({c.n_heads, 1, 1}, std::log(init_temperature), {c.dtype}));
  }
  Tensor forward(const Tensor& x, const Rope& rope, Generator& g) override {
    Tensor q, k, v;
    project_qkv(x, rope, q, k, v);  // [B, H, T, Dh], RoPE applied
    Tensor p = causal_softmax(scores(q, k));
    keep_maps(p);
    return output(matmul(attn_dropout(p, g), v));  // merge heads, then W_o
  }
  // Generation with a key/value cache: the new tokens' queries against every key so far.
  Tensor decode(const Tensor& x, const Rope& rope, LayerCache& cache) override {
    Tensor q, k, v;
    project_qkv_cached(x, rope, cache, q, k, v);
    return output(matmul(decode_softmax(scores(q, k)), v));
  }
  std::vector<std::string> kernel_names() const override { return {"log_temperature"}; }

 private:
  Tensor scores(const Tensor& q, const Tensor& k) const {
    Tensor s = mul(matmul(q, transpose(k, -1, -2)), 1.0 / std::sqrt((double)cfg_.head_dim()));
    return div(s, exp(log_temp_));
  }
  Tensor log_temp_;
};

}  // namespace

MTALAB_REGISTER_ATTENTION(temperature, "softmax attention with a learned temperature per head (worked example)",
                          {OptionSpec::Float("init", 1.0, "initial temperature", 1e-3, 1e3)},
                          [](const AttentionConfig& c, const OptionValues& o) {
                            return std::make_shared<TemperatureAttention>(c, o.get_float("init"));
                          });

}  // namespace mtalab
