// Attention variants: gradients (float64 finite differences, tolerance in gradcheck.h),
// causality, identity initialisation, the registry and its option checks.
#include <doctest/doctest.h>

#include <cmath>

#include "autograd/errors.h"
#include "gradcheck.h"
#include "layers/attention.h"
#include "layers/transformer.h"

using namespace mtalab;

namespace {

using Opts = std::vector<std::pair<std::string, std::string>>;

AttentionConfig tiny(int layer = 1, int64_t heads = 4) {
  AttentionConfig c;
  c.d_model = 16;
  c.n_heads = heads;
  c.layer = layer;
  c.n_layers = 3;
  c.dtype = DType::f64;
  c.seed = 11;
  return c;
}

OptionValues values(const std::string& variant, const Opts& opts) {
  OptionValues v = AttentionRegistry::options_for(variant);
  for (auto& [k, val] : opts) v.set(k, val);
  return v;
}

std::shared_ptr<Attention> make(const std::string& variant, const AttentionConfig& c, const Opts& opts = {}) {
  return AttentionRegistry::get(variant).make(c, values(variant, opts));
}

struct Case {
  std::string variant;
  Opts opts;
};

// Every variant, and MTA under the option sets that matter: everything on, the paper's
// toy and LM settings, post-only with left padding, right padding, small head groups,
// non-identity inits.
const std::vector<Case> kCases = {
    {"softmax", {}},
    {"talking_heads", {}},
    {"diff", {}},
    {"temperature", {{"init", "0.7"}}},
    {"mta", {{"kq_layers", "all"}, {"depth_scale", "true"}, {"cq", "3"}, {"ck", "5"}, {"cq_post", "2"},
             {"ck_post", "3"}, {"init", "uniform"}}},
    {"mta", {{"kq_layers", "all"}, {"cq", "2"}, {"ck", "9"}, {"kq_post", "false"}, {"head_mix_pre", "false"},
             {"head_mix_post", "false"}, {"group_norm", "false"}, {"gate", "false"}}},
    {"mta", {}},
    {"mta", {{"kq_layers", "1"}, {"kq_pre", "false"}, {"pad", "left"}, {"ck_post", "4"}, {"ch", "2"}, {"init", "constant"}}},
    {"mta", {{"kq_layers", "all"}, {"pad", "right"}, {"ck", "6"}, {"ck_post", "2"}, {"ch", "1"}, {"init", "uniform"}}},
};

std::string label(const Case& c) {
  std::string s = c.variant;
  for (auto& [k, v] : c.opts) s += " " + k + "=" + v;
  return s;
}

}  // namespace

TEST_CASE("variants: the registry lists every variant with its options and defaults") {
  const std::string s = describe_attention_variants();
  for (auto name : {"softmax", "mta", "talking_heads", "diff", "temperature"}) CHECK(s.find(name) != std::string::npos);
  CHECK(s.find("--mta.cq <int> (default 6)") != std::string::npos);
  CHECK(s.find("--temperature.init <float> (default 1)") != std::string::npos);
  CHECK_THROWS_WITH_AS(AttentionRegistry::get("nope"), doctest::Contains("unknown attention variant 'nope'"), InputError);
  CHECK_THROWS_WITH_AS(values("mta", {{"cq", "0"}}), doctest::Contains("--mta.cq: 0 is out of range"), InputError);
  CHECK_THROWS_WITH_AS(values("mta", {{"pad", "middle"}}), doctest::Contains("not one of both|left|right"), InputError);
}

TEST_CASE("variants: incompatible options fail at construction, naming both") {
  CHECK_THROWS_WITH_AS(make("mta", tiny(), {{"pad", "both"}, {"ck", "10"}, {"kq_layers", "all"}}),
                       doctest::Contains("--mta.pad=both needs an odd key kernel size, got --mta.ck=10"), InputError);
  CHECK_THROWS_WITH_AS(make("mta", tiny(), {{"ch", "3"}}), doctest::Contains("--mta.ch=3 does not divide n_heads=4"),
                       InputError);
  CHECK_THROWS_WITH_AS(make("mta", tiny(), {{"group_norm", "false"}, {"depth_scale", "true"}}),
                       doctest::Contains("--mta.depth_scale=true needs --mta.group_norm=true"), InputError);
  CHECK_THROWS_WITH_AS(make("mta", tiny(), {{"kq_layers", "7"}}), doctest::Contains("'7' is not a layer index"), InputError);
  CHECK_THROWS_WITH_AS(make("diff", tiny(1, 1)), doctest::Contains("diff needs an even n_heads"), InputError);
}

TEST_CASE("variants: kq-conv placement follows kq_layers") {
  auto has_kernel = [](const std::string& spec, int layer) {
    auto a = make("mta", tiny(layer), {{"kq_layers", spec}});
    for (auto& [n, t] : a->named_parameters())
      if (n == "kq_kernel") return true;
    return false;
  };
  CHECK(has_kernel("all", 0));
  CHECK_FALSE(has_kernel("none", 0));
  CHECK(has_kernel("every:2", 1));
  CHECK_FALSE(has_kernel("every:2", 0));
  CHECK(has_kernel("0,2", 2));
  CHECK_FALSE(has_kernel("0,2", 1));
  CHECK(has_kernel("every:3+1", 1));
  CHECK_FALSE(has_kernel("every:3+1", 2));
  CHECK_THROWS_WITH_AS(make("mta", tiny(), {{"kq_layers", "every:4+4"}}), doctest::Contains("0 <= R < K"), InputError);
  CHECK_THROWS_WITH_AS(make("mta", tiny(), {{"kq_layers", "every:4+x"}}), doctest::Contains("every:K+R"), InputError);
  // The default is the reference code's placement, 0-based l % 4 == 2: layers 2, 6, 10
  // (3, 7, 11 counting from 1, as in the paper's figures).
  std::vector<int> defaults;
  for (int layer = 0; layer < 12; ++layer) {
    AttentionConfig c = tiny(layer);
    c.n_layers = 12;
    for (auto& [n, t] : make("mta", c)->named_parameters())
      if (n == "kq_kernel") defaults.push_back(layer);
  }
  CHECK(defaults == std::vector<int>{2, 6, 10});
  auto a = make("mta", tiny());
  std::vector<std::string> names;
  for (auto& [n, t] : a->named_parameters()) names.push_back(n + shape_str(t.shape()));
  CHECK(names == std::vector<std::string>{"wq.weight[16, 16]", "wk.weight[16, 16]", "wv.weight[16, 16]",
                                          "wo.weight[16, 16]", "head_kernel_pre[1, 4, 4]", "head_kernel_post[1, 4, 4]",
                                          "subln.weight[4]", "gate.weight[4]", "gate.bias[1]"});
}

TEST_CASE("variants: float64 gradients of whole attention layers w.r.t. input and every parameter") {
  Rope rope(4, 8, 10000.0, DType::f64);
  for (const auto& c : kCases) {
    CAPTURE(label(c));
    auto attn = make(c.variant, tiny(), c.opts);
    TensorList inputs{testing::rand_f64({2, 6, 16}, 3)};
    for (auto& [n, p] : attn->named_parameters()) {
      // Move parameters off their initial values (identity kernels, zero gates) so every
      // path carries a gradient.
      NoGradGuard ng;
      Generator g(std::hash<std::string>{}(n));
      copy_(p, add(p, uniform(p.shape(), -0.3, 0.3, g, {DType::f64})));
      inputs.push_back(p);
    }
    Generator g(0);
    CHECK(testing::gradcheck([&](const TensorList& in) { return attn->forward(in[0], rope, g); }, inputs) <= 1.0);
  }
}

TEST_CASE("variants: causality, changing the token at position t changes no output before t") {
  for (const auto& c : kCases) {
    CAPTURE(label(c));
    ModelConfig m;
    m.d_model = 16;
    m.n_layers = 3;
    m.n_heads = 4;
    m.max_seq_len = 12;
    m.dtype = DType::f64;
    m.attention = c.variant;
    m.attention_options = values(c.variant, c.opts);
    Transformer model(m);
    {
      // perturb parameters so kernels are not identity maps
      NoGradGuard ng;
      Generator g(5);
      for (auto& [n, p] : model.named_parameters()) copy_(p, add(p, uniform(p.shape(), -0.2, 0.2, g, {DType::f64})));
    }
    std::vector<int32_t> toks = {3, 1, 4, 1, 5, 9, 2, 6, 5, 3, 5, 8};
    Generator g(0);
    NoGradGuard ng;
    auto before = model.forward(from_vector(toks, {1, 12}, {DType::i32}), g).to_vector<double>();
    for (int t : {1, 6, 11}) {
      auto changed = toks;
      changed[t] = 200;
      auto after = model.forward(from_vector(changed, {1, 12}, {DType::i32}), g).to_vector<double>();
      const int64_t V = 256;
      double before_t = 0, at_t = 0;
      for (int64_t i = 0; i < t * V; ++i) before_t = std::max(before_t, std::abs(after[i] - before[i]));
      for (int64_t i = t * V; i < (t + 1) * V; ++i) at_t = std::max(at_t, std::abs(after[i] - before[i]));
      CHECK(before_t == 0.0);
      CHECK(at_t > 1e-6);  // and the change does reach position t itself
    }
  }
}

TEST_CASE("variants: MTA and talking heads at identity initialisation equal softmax attention") {
  Rope rope(4, 8, 10000.0, DType::f64);
  Generator g(0);
  Tensor x = testing::rand_f64({2, 7, 16}, 9).detach();
  NoGradGuard ng;
  const auto ref = make("softmax", tiny())->forward(x, rope, g).to_vector<double>();
  const std::vector<Case> same = {
      {"talking_heads", {}},
      {"mta", {{"kq_layers", "all"}, {"group_norm", "false"}, {"gate", "false"}}},
      {"mta", {{"kq_layers", "all"}, {"group_norm", "false"}, {"gate", "false"}, {"pad", "left"}, {"ch", "2"}}},
      {"mta", {{"kq_layers", "all"}, {"group_norm", "false"}, {"gate", "false"}, {"pad", "right"}, {"ck", "4"}}},
  };
  for (const auto& c : same) {
    CAPTURE(label(c));
    const auto out = make(c.variant, tiny(), c.opts)->forward(x, rope, g).to_vector<double>();
    double diff = 0;
    for (size_t i = 0; i < out.size(); ++i) diff = std::max(diff, std::abs(out[i] - ref[i]));
    CHECK(diff < 1e-12);
  }
  // and a non-identity init does differ (the comparison can fail)
  const auto u = make("mta", tiny(), {{"kq_layers", "all"}, {"group_norm", "false"}, {"gate", "false"}, {"init", "uniform"}})
                     ->forward(x, rope, g)
                     .to_vector<double>();
  double diff = 0;
  for (size_t i = 0; i < u.size(); ++i) diff = std::max(diff, std::abs(u[i] - ref[i]));
  CHECK(diff > 1e-3);
}

TEST_CASE("variants: depth scaling uses lambda_init = 0.8 - 0.6 exp(-0.3 l)") {
  CHECK(lambda_init(0) == doctest::Approx(0.2));
  CHECK(lambda_init(3) == doctest::Approx(0.8 - 0.6 * std::exp(-0.9)));
  Rope rope(4, 8, 10000.0, DType::f64);
  Generator g(0);
  Tensor x = testing::rand_f64({1, 5, 16}, 4).detach();
  NoGradGuard ng;
  // With gate off, depth scaling multiplies the head outputs by (1 - λ_init) before W_o,
  // which is linear: the whole output scales by the same factor.
  const Opts base = {{"kq_layers", "all"}, {"gate", "false"}};
  Opts scaled = base;
  scaled.push_back({"depth_scale", "true"});
  const auto a = make("mta", tiny(2), base)->forward(x, rope, g).to_vector<double>();
  const auto b = make("mta", tiny(2), scaled)->forward(x, rope, g).to_vector<double>();
  for (size_t i = 0; i < a.size(); ++i) CHECK(b[i] == doctest::Approx(a[i] * (1 - lambda_init(2))).epsilon(1e-9));
}
