// Incremental decoding: for every variant and the MTA option sets that change what the
// cache must hold, decoding a prompt and then one token at a time gives the logits of the
// full forward pass (float64, 1e-12), at every position, for prompts shorter and longer
// than the convolutions' reach.
#include <doctest/doctest.h>

#include <cmath>
#include <memory>

#include "layers/attention.h"
#include "layers/transformer.h"

using namespace mtalab;

namespace {

// A variant without a decode of its own: Attention::decode's fallback reruns its forward.
class NoDecodeAttention final : public Attention {
 public:
  using Attention::Attention;
  Tensor forward(const Tensor& x, const Rope& rope, Generator& g) override {
    Tensor q, k, v;
    project_qkv(x, rope, q, k, v);
    return output(attend(q, k, v, 0.3, {}, g));
  }
};

}  // namespace

MTALAB_REGISTER_ATTENTION(test_no_decode, "test only: softmax attention without its own decode", {},
                          [](const AttentionConfig& c, const OptionValues&) {
                            return std::make_shared<NoDecodeAttention>(c);
                          });

namespace {

using Opts = std::vector<std::pair<std::string, std::string>>;

struct Case {
  std::string variant;
  Opts opts;
};

// MTA: the LM default (kq-conv pre and post 6x11 in layer 2, mixing, norm, gate), the toy
// setting, every component everywhere with depth scaling, post-only with left padding and
// head groups, right padding with an even kernel, c_q = 1 (no rows to cache), and a long
// query reach (c_q = 7 > most prompts here).
const std::vector<Case> kCases = {
    {"softmax", {}},
    {"test_no_decode", {}},
    {"temperature", {{"init", "0.7"}}},
    {"diff", {}},
    {"talking_heads", {}},
    {"mta", {}},
    {"mta", {{"kq_layers", "all"}, {"cq", "2"}, {"ck", "9"}, {"kq_post", "false"}, {"head_mix_pre", "false"},
             {"head_mix_post", "false"}, {"group_norm", "false"}, {"gate", "false"}}},
    {"mta", {{"kq_layers", "all"}, {"cq", "3"}, {"ck", "5"}, {"cq_post", "4"}, {"ck_post", "3"}, {"depth_scale", "true"}}},
    {"mta", {{"kq_layers", "0,2"}, {"kq_pre", "false"}, {"pad", "left"}, {"ck_post", "4"}, {"ch", "2"}}},
    {"mta", {{"kq_layers", "all"}, {"pad", "right"}, {"ck", "6"}, {"ck_post", "2"}, {"ch", "1"}, {"gate", "false"}}},
    {"mta", {{"kq_layers", "all"}, {"cq", "1"}, {"ck", "3"}, {"cq_post", "1"}, {"ck_post", "5"}}},
    {"mta", {{"kq_layers", "all"}, {"cq", "7"}, {"ck", "3"}, {"cq_post", "5"}, {"ck_post", "3"}, {"head_mix_pre", "false"}}},
};

std::string label(const Case& c) {
  std::string s = c.variant;
  for (auto& [k, v] : c.opts) s += " " + k + "=" + v;
  return s;
}

constexpr int64_t kVocab = 40, kLen = 19;

// A float64 model whose every parameter is moved off its initial value, so identity
// kernels are not identities and the cached rows are actually read.
std::unique_ptr<Transformer> model_for(const Case& c) {
  ModelConfig m;
  m.vocab_size = kVocab;
  m.d_model = 16;
  m.n_heads = 4;
  m.n_layers = 3;
  m.max_seq_len = kLen + 1;
  m.dtype = DType::f64;
  m.attention = c.variant;
  m.attention_options = AttentionRegistry::options_for(c.variant);
  for (auto& [k, v] : c.opts) m.attention_options.set(k, v);
  auto t = std::make_unique<Transformer>(m);
  Generator g(5);
  for (auto& [name, p] : t->named_parameters()) copy_(p, add(p, normal(p.shape(), 0.0, 0.3, g, {DType::f64})));
  t->train(false);
  return t;
}

Tensor tokens(int64_t B, int64_t T, uint64_t seed) {
  Generator g(seed);
  std::vector<int32_t> v((size_t)(B * T));
  for (auto& x : v) x = (int32_t)(g.next_u64() % kVocab);
  return from_vector<int32_t>(v, {B, T}, {DType::i32});
}

double max_diff(const Tensor& a, const Tensor& b) {
  REQUIRE(a.shape() == b.shape());
  auto x = a.contiguous().to_vector<double>(), y = b.contiguous().to_vector<double>();
  double m = 0;
  for (size_t i = 0; i < x.size(); ++i) m = std::max(m, std::abs(x[i] - y[i]));
  return m;
}

}  // namespace

TEST_CASE("decode: cached logits equal the full forward pass at every position, every variant") {
  for (const auto& c : kCases) {
    auto owned = model_for(c);
    Transformer& model = *owned;
    Generator unused(0);
    const Tensor seq = tokens(2, kLen, 17);
    const Tensor full = model.forward(seq, unused);  // [2, kLen, V]
    for (int64_t prompt : {1, 4, 9}) {
      CAPTURE(label(c));
      CAPTURE(prompt);
      DecodeCache cache;
      double worst = max_diff(model.decode(slice(seq, 1, 0, prompt), cache), slice(full, 1, 0, prompt));
      for (int64_t t = prompt; t < kLen; ++t)
        worst = std::max(worst, max_diff(model.decode(slice(seq, 1, t, t + 1), cache), slice(full, 1, t, t + 1)));
      CHECK(cache.pos == kLen);
      CHECK(worst < 1e-12);
    }
  }
}

TEST_CASE("decode: the cache is what makes it cheap, and it is bounded by max_seq_len") {
  const Case mta{"mta", {{"kq_layers", "all"}, {"cq", "3"}, {"ck", "5"}, {"cq_post", "4"}, {"ck_post", "3"}}};
  auto owned = model_for(mta);
  Transformer& model = *owned;
  DecodeCache cache;
  const Tensor seq = tokens(1, kLen, 3);
  model.decode(slice(seq, 1, 0, 5), cache);
  // k and v of 5 tokens, 2 score rows and 3 probability rows of 5 keys, per layer.
  const int64_t per_layer = 2 * 4 * 5 * 4 + 4 * 2 * 5 + 4 * 3 * 5;
  CHECK(cache.bytes() == 3 * per_layer * 8);
  // A chunk after the prompt is fed one token at a time and gives the same logits.
  Generator unused(0);
  const Tensor full = model.forward(slice(seq, 1, 0, 12), unused);
  CHECK(max_diff(model.decode(slice(seq, 1, 5, 12), cache), slice(full, 1, 5, 12)) < 1e-12);
  model.decode(slice(seq, 1, 12, kLen), cache);
  CHECK_THROWS_WITH_AS(model.decode(slice(seq, 1, 0, 2), cache),
                       doctest::Contains("decoding to position 21 exceeds max_seq_len 20"), std::invalid_argument);
}
