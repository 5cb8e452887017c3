// A variant owns itself: registered outside layers/, its options, its idle-option rules,
// its checks against the model, its --help line and its memory shape all reach the
// experiments code through the registry alone. And the README's copy of the worked
// example is the file.
#include <doctest/doctest.h>

#include <fstream>
#include <sstream>

#include "autograd/errors.h"
#include "experiments/train/config.h"
#include "experiments/train/memory_check.h"
#include "layers/attention.h"

using namespace mtalab;

namespace {

// Softmax attention with its scores scaled by `gain` (and `bias` added when `biased`),
// computing its own maps, needing an even number of layers.
class GainAttention final : public Attention {
 public:
  GainAttention(const AttentionConfig& c, double gain) : Attention(c), gain_(gain) {}
  Tensor forward(const Tensor& x, const Rope& rope, Generator& g) override {
    Tensor q, k, v;
    project_qkv(x, rope, q, k, v);
    Tensor p = causal_softmax(mul(matmul(q, transpose(k, -1, -2)), gain_));
    return output(matmul(attn_dropout(p, g), v));
  }

 private:
  double gain_;
};

AttentionVariant gain_variant() {
  AttentionVariant v{"test_gain", "test only: scaled scores",
                     {OptionSpec::Float("gain", 1.0, "score scale", 0, 10), OptionSpec::Bool("biased", false, "add bias"),
                      OptionSpec::Float("bias", 0.0, "the bias", -1, 1)},
                     [](const AttentionConfig& c, const OptionValues& o) {
                       return std::make_shared<GainAttention>(c, o.get_float("gain"));
                     }};
  v.idle_options = [](const OptionValues& o) {
    return std::vector<IdleOption>{{"bias", !o.get_bool("biased"), "--test_gain.biased is false"}};
  };
  v.check_model = [](const AttentionConfig& c, const OptionValues&) {
    if (c.n_layers % 2) throw InputError("test_gain needs an even --model.n_layers, got " + std::to_string(c.n_layers));
  };
  v.describe_model = [](const AttentionConfig& c, const OptionValues&) {
    return "test_gain: " + std::to_string(c.n_layers) + " layers";
  };
  v.maps_per_head = 5;  // maps-only (fused stays false)
  return v;
}

}  // namespace

MTALAB_REGISTER_ATTENTION_VARIANT(test_gain, gain_variant());

namespace {

OptionValues train_values(const std::string& attention) {
  OptionValues v(train_option_specs(), "");
  v.set("model.attention", attention);
  v.set("model.n_layers", "4");
  return v;
}

TrainConfig config(const std::string& attention, const std::string& impl = "auto") {
  OptionValues v = train_values(attention);
  v.set("attn.impl", impl);
  return make_train_config(v, AttentionRegistry::options_for(attention));
}

}  // namespace

TEST_CASE("variant registry: a variant outside layers/ brings its options, rules, checks, help line and memory shape") {
  const AttentionVariant& v = AttentionRegistry::get("test_gain");
  CHECK(describe_attention_variants().find("--test_gain.gain <float> (default 1)") != std::string::npos);

  // Its idle option is refused by the generic check, naming why.
  OptionValues a = AttentionRegistry::options_for("test_gain");
  a.set("bias", "0.5");
  const std::string idle = [&] {
    try {
      check_options_take_effect(train_values("test_gain"), a, {"test_gain.bias"});
    } catch (const InputError& e) {
      return std::string(e.what());
    }
    return std::string();
  }();
  CHECK(idle == "option --test_gain.bias has no effect because --test_gain.biased is false; expected it left out (or "
                "the option it depends on changed)");
  a.set("biased", "true");
  CHECK_NOTHROW(check_options_take_effect(train_values("test_gain"), a, {"test_gain.bias"}));

  // Its model check runs through check_variant_fits.
  TrainConfig c = config("test_gain");
  CHECK_NOTHROW(check_variant_fits(c.model));
  c.model.n_layers = 3;
  CHECK_THROWS_WITH_AS(check_variant_fits(c.model), "test_gain needs an even --model.n_layers, got 3", InputError);
  CHECK(v.describe_model(model_attention_config(c.model), AttentionRegistry::options_for("test_gain")) ==
        "test_gain: 3 layers");

  // Its memory shape: maps-only with 5 maps per head, against softmax's 3 on the maps path.
  const TrainConfig maps = config("softmax", "maps"), gain = config("test_gain");
  const ModelConfig& m = maps.model;
  const double per_map = (double)m.n_layers * maps.batch_size * m.max_seq_len * m.n_heads * m.max_seq_len * 4;
  CHECK(estimate_training_memory(gain).activations - estimate_training_memory(maps).activations ==
        doctest::Approx(2 * per_map));
  // ... and the README's maps-only example is estimated as the maps it keeps, not as fused.
  CHECK(estimate_training_memory(config("temperature")).activations ==
        doctest::Approx(estimate_training_memory(maps).activations));
  CHECK(estimate_training_memory(config("softmax")).activations < estimate_training_memory(maps).activations);
}

TEST_CASE("variant registry: MTA's rules and checks come from its registration") {
  OptionValues a = AttentionRegistry::options_for("mta");
  a.set("kq_pre", "false");
  a.set("kq_post", "false");
  CHECK_THROWS_WITH_AS(check_options_take_effect(train_values("mta"), a, {"mta.cq"}),
                       doctest::Contains("--mta.cq has no effect because --mta.kq_pre is false"), InputError);
  OptionValues v = train_values("mta");
  v.set("model.n_layers", "2");
  const TrainConfig two = make_train_config(v, AttentionRegistry::options_for("mta"));
  CHECK_THROWS_WITH_AS(check_variant_fits(two.model), doctest::Contains("--mta.kq_layers=every:4+2 (the default) selects no layer"),
                       InputError);
  v.set("model.n_layers", "7");
  const TrainConfig seven = make_train_config(v, AttentionRegistry::options_for("mta"));
  CHECK(AttentionRegistry::get("mta").describe_model(model_attention_config(seven.model), seven.model.attention_options) ==
        "For this 7-layer model, --mta.kq_layers every:4+2 puts MTA's key-query convolution in 0-based layers: 2, 6");
}

TEST_CASE("variant registry: the README's worked example is layers/attention_example.cpp, verbatim") {
  auto read = [](const std::string& p) {
    std::ifstream f(std::string(MTALAB_SOURCE_DIR) + "/" + p);
    std::stringstream ss;
    ss << f.rdbuf();
    return ss.str();
  };
  const std::string readme = read("README.md"), file = read("layers/attention_example.cpp");
  const size_t b = readme.find("```cpp\nclass TemperatureAttention");
  REQUIRE(b != std::string::npos);
  const size_t e = readme.find("```", b + 7);
  const std::string block = readme.substr(b + 7, e - b - 7);
  CHECK(block.size() > 500);
  CHECK(file.find(block) != std::string::npos);
}
