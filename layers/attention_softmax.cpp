// `softmax`: standard causal multi-head attention, the baseline (Vaswani et al. 2017).
#include <cmath>

#include "layers/attention.h"

namespace mtalab {
namespace {

class SoftmaxAttention final : public Attention {
 public:
  using Attention::Attention;
  Tensor forward(const Tensor& x, const Rope& rope, Generator& g) override {
    Tensor q, k, v;
    project_qkv(x, rope, q, k, v);
    return output(attend(q, k, v, 1.0 / std::sqrt((double)cfg_.head_dim()), {}, g));
  }
  Tensor decode(const Tensor& x, const Rope& rope, LayerCache& cache) override {
    Tensor q, k, v;
    project_qkv_cached(x, rope, cache, q, k, v);
    Tensor s = mul(matmul(q, transpose(k, -1, -2)), 1.0 / std::sqrt((double)cfg_.head_dim()));
    return output(matmul(decode_softmax(s), v));
  }
};

}  // namespace

MTALAB_REGISTER_ATTENTION_VARIANT(
    softmax, (AttentionVariant{"softmax", "standard causal multi-head softmax attention (the baseline)", {},
                               [](const AttentionConfig& c, const OptionValues&) {
                                 return std::make_shared<SoftmaxAttention>(c);
                               },
                               {}, {}, {}, /*fused=*/true, /*maps_per_head=*/3}));

}  // namespace mtalab
