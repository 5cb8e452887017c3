// The research loop in-process: end-to-end gradients, learning, bit-exact resume.
#include <doctest/doctest.h>

#include <unistd.h>

#include <cmath>
#include <filesystem>
#include <fstream>

#include "experiments/run/checkpoint_file.h"
#include "experiments/train/config.h"
#include "experiments/train/optimizer.h"
#include "experiments/run/run_log.h"
#include "experiments/train/trainer.h"
#include "gradcheck.h"
#include "layers/attention.h"
#include "layers/transformer.h"

using namespace mtalab;
namespace fs = std::filesystem;

namespace {

std::string temp_dir(const std::string& name) {
  fs::path p = fs::temp_directory_path() / ("mtalab_test_" + name + "_" + std::to_string(::getpid()));
  fs::remove_all(p);
  fs::create_directories(p);
  return p.string();
}

// A small text corpus: repetitive enough to learn in a few dozen steps.
std::string write_corpus(const std::string& dir) {
  std::string text;
  for (int i = 0; i < 400; ++i) text += "the quick brown fox jumps over the lazy dog. ";
  const std::string path = dir + "/corpus.txt";
  std::ofstream(path) << text;
  return path;
}

// The options of a small byte-level text run in `dir`.
OptionValues text_options(const std::string& dir, int64_t steps, const std::string& attention) {
  OptionValues v(train_option_specs(), "");
  v.set("model.attention", attention);
  v.set("model.d_model", "32");
  v.set("model.n_layers", "2");
  v.set("model.n_heads", "2");
  v.set("data.task", "text");
  v.set("data.path", write_corpus(dir));
  v.set("data.seq_len", "32");
  v.set("train.steps", std::to_string(steps));
  v.set("train.batch_size", "4");
  v.set("train.lr", "3e-3");
  v.set("train.schedule", "cosine");
  v.set("train.warmup", "2");
  v.set("train.eval_every", "5");
  v.set("train.eval_max_batches", "2");
  v.set("train.log_every", "1");
  v.set("model.dropout", "0.1");  // exercises the dropout stream across a resume
  v.set("run.out", dir + "/run");
  return v;
}

RunRequest run_request(const OptionValues& v, const OptionValues& variant) {
  RunRequest r;
  r.config = make_train_config(v, variant);
  r.options = v.resolved();
  r.quiet = true;
  return r;
}

RunRequest text_run(const std::string& dir, int64_t steps, const std::string& attention = "softmax") {
  return run_request(text_options(dir, steps, attention), AttentionRegistry::options_for(attention));
}

// A variant that turns its output into NaN from its 4th forward call on: a run that diverges.
class NanAttention final : public Attention {
 public:
  using Attention::Attention;
  Tensor forward(const Tensor& x, const Rope& rope, Generator&) override {
    Tensor q, k, v;
    project_qkv(x, rope, q, k, v);
    Tensor o = output(matmul(causal_softmax(matmul(q, transpose(k, -1, -2))), v));
    return ++calls_ >= 4 ? mul(o, std::nan("")) : o;
  }

 private:
  int calls_ = 0;
};
MTALAB_REGISTER_ATTENTION(test_nan, "test only: NaN output from the 4th call", {},
                          [](const AttentionConfig& c, const OptionValues&) { return std::make_shared<NanAttention>(c); });

// A variant whose (unused) parameter becomes +inf during its 3rd forward call: the loss and
// gradients stay finite, only the weights are no longer.
class InfWeightAttention final : public Attention {
 public:
  explicit InfWeightAttention(const AttentionConfig& c) : Attention(c) {
    spare_ = register_parameter("spare", zeros({2}, {c.dtype}));
  }
  Tensor forward(const Tensor& x, const Rope& rope, Generator&) override {
    Tensor q, k, v;
    project_qkv(x, rope, q, k, v);
    if (++calls_ == 3) {
      NoGradGuard ng;
      copy_(spare_, full(spare_.shape(), INFINITY, spare_.options()));
    }
    return output(matmul(causal_softmax(matmul(q, transpose(k, -1, -2))), v));
  }

 private:
  Tensor spare_;
  int calls_ = 0;
};
MTALAB_REGISTER_ATTENTION(test_inf, "test only: a parameter becomes inf at the 3rd call", {},
                          [](const AttentionConfig& c, const OptionValues&) {
                            return std::make_shared<InfWeightAttention>(c);
                          });

}  // namespace

TEST_CASE("training: a diverging run names the step and parameter, and never replaces the last good checkpoint") {
  const std::string dir = temp_dir("diverge");
  RunRequest r = text_run(dir, 20, "test_nan");
  r.config.model.n_layers = 1;
  r.config.model.dropout = 0;
  r.config.checkpoint_every = 2;  // a good checkpoint at step 2; NaN comes at step 4
  std::string msg;
  try {
    train(r);
  } catch (const DivergedError& e) {
    msg = e.what();
  }
  CAPTURE(msg);
  CHECK(msg.find("training diverged at step 4: loss nan") != std::string::npos);
  CHECK(msg.find("first parameter with a non-finite gradient: tok_embeddings.weight") != std::string::npos);
  CHECK(msg.find("checkpoint.h5 still holds step 2, the last good state") != std::string::npos);
  RunLog log = RunLog::open_read(run_log_path(r.config.out_dir));
  CHECK(log.steps("train") == std::vector<int64_t>{1, 2, 3});
  CHECK(log.attr_string("status") == "diverged");
  CHECK(log.attr_int("diverged_step") == 4);
  CHECK(load_checkpoint(checkpoint_path(r.config.out_dir)).ints.at("step") == 2);
  const CheckpointData failing = load_checkpoint(r.config.out_dir + "/checkpoint_diverged.h5");
  CHECK(failing.ints.at("diverged_step") == 4);
  CHECK(failing.ints.at("step") == 3);

  // Diverged before any checkpoint: none is invented, and the message says so.
  const std::string early_dir = temp_dir("diverge_early");
  RunRequest early = text_run(early_dir, 20, "test_nan");
  early.config.model.n_layers = 1;
  try {
    train(early);
  } catch (const DivergedError& e) {
    msg = e.what();
  }
  CHECK(msg.find("no checkpoint was written before it diverged") != std::string::npos);
  CHECK_FALSE(fs::exists(checkpoint_path(early.config.out_dir)));
  fs::remove_all(dir);
  fs::remove_all(early_dir);
}

TEST_CASE("training: weights that became non-finite are a divergence, not the next checkpoint") {
  const std::string dir = temp_dir("inf_weights");
  RunRequest r = text_run(dir, 20, "test_inf");
  r.config.model.n_layers = 1;
  r.config.checkpoint_every = 2;
  std::string msg;
  try {
    train(r);
  } catch (const DivergedError& e) {
    msg = e.what();
  }
  CAPTURE(msg);
  CHECK(msg.find("training diverged at step 4: the parameters became non-finite (first: layers.0.attention.spare)") !=
        std::string::npos);
  CHECK(load_checkpoint(checkpoint_path(r.config.out_dir)).ints.at("step") == 2);
  CHECK(RunLog::open_read(run_log_path(r.config.out_dir)).attr_string("status") == "diverged");
  fs::remove_all(dir);
}

TEST_CASE("training: a tiny model's loss gradient, float64, end to end, softmax and MTA with every option on") {
  for (std::string variant : {"softmax", "mta"}) {
    CAPTURE(variant);
    ModelConfig m;
    m.d_model = 8;
    m.n_layers = 2;
    m.n_heads = 2;
    m.vocab_size = 11;
    m.max_seq_len = 6;
    m.ffn_hidden = 12;
    m.dtype = DType::f64;
    m.tie_embeddings = false;
    m.attention = variant;
    m.attention_options = AttentionRegistry::options_for(variant);
    if (variant == "mta")
      for (auto [k, v] : std::vector<std::pair<std::string, std::string>>{
               {"kq_layers", "all"}, {"cq", "2"}, {"ck", "3"}, {"cq_post", "2"}, {"ck_post", "3"}, {"depth_scale", "true"}})
        m.attention_options.set(k, v);
    Transformer model(m);
    TensorList params;
    for (auto& [n, p] : model.named_parameters()) {
      NoGradGuard ng;
      Generator g(std::hash<std::string>{}(n));
      copy_(p, add(p, uniform(p.shape(), -0.2, 0.2, g, {DType::f64})));
      params.push_back(p);
    }
    Tensor toks = from_vector<int32_t>({1, 4, 2, 8, 5, 7, 3, 3, 9, 0, 10, 6}, {2, 6}, {DType::i32});
    Tensor tgt = from_vector<int32_t>({4, 2, 8, 5, 7, 1, 3, 9, 0, 10, 6, 2}, {2, 6}, {DType::i32});
    Generator g(0);
    CHECK(testing::gradcheck([&](const TensorList&) { return cross_entropy(model.forward(toks, g), tgt); }, params) <= 1.0);
  }
}

TEST_CASE("training: the loss falls on a small corpus, and the run log holds rows, kernels and maps") {
  const std::string dir = temp_dir("learn");
  RunRequest r = text_run(dir, 30, "mta");
  r.config.model.attention_options.set("kq_layers", "all");
  RunSummary s = train(r);
  RunLog log = RunLog::open_read(run_log_path(r.config.out_dir));
  auto loss = log.column("train", "loss");
  REQUIRE(loss.size() == 30);
  CHECK(loss.back() < 0.6 * loss.front());
  CHECK(s.evaluated);
  CHECK(s.eval_loss < 2.5);
  CHECK(log.steps("eval") == std::vector<int64_t>{5, 10, 15, 20, 25, 30});
  CHECK(log.snapshot_steps("kernels", "layers.0.attention.kq_kernel").size() == 6);
  CHECK(log.read_array("/attention/layer_1").shape == std::vector<int64_t>{2, 32, 32});
  CHECK(log.attr_string("model.attention") == "mta");
  CHECK(log.attr_int("parameter_count") == s.parameters);
  CHECK(log.finals().at("bpb") == doctest::Approx(s.eval_metric));
  fs::remove_all(dir);
}

TEST_CASE("training: k steps + resume + m steps equals k+m steps, bit for bit") {
  const std::string a = temp_dir("straight"), b = temp_dir("resumed");
  RunRequest full = text_run(a, 12);
  train(full);
  RunRequest part = text_run(b, 12);
  part.stop_after = 7;  // interrupted after step 7, as by SIGINT: log and checkpoint saved
  CHECK(train(part).interrupted);
  CHECK(RunLog::open_read(run_log_path(part.config.out_dir)).steps("train").size() == 7);
  RunRequest rest = text_run(b, 12);
  rest.resume = true;
  train(rest);
  auto la = RunLog::open_read(run_log_path(full.config.out_dir)).column("train", "loss");
  auto lb = RunLog::open_read(run_log_path(rest.config.out_dir)).column("train", "loss");
  REQUIRE(la.size() == 12);
  REQUIRE(lb.size() == 12);
  for (size_t i = 0; i < la.size(); ++i) CHECK(la[i] == lb[i]);  // exact, not approximate
  auto ea = RunLog::open_read(run_log_path(full.config.out_dir)).column("eval", "loss");
  auto eb = RunLog::open_read(run_log_path(rest.config.out_dir)).column("eval", "loss");
  CHECK(ea == eb);
  fs::remove_all(a);
  fs::remove_all(b);
}

TEST_CASE("training: the same options and seed give the same loss curve") {
  const std::string a = temp_dir("det_a"), b = temp_dir("det_b");
  train(text_run(a, 6));
  train(text_run(b, 6));
  CHECK(RunLog::open_read(a + "/run/run.h5").column("train", "loss") ==
        RunLog::open_read(b + "/run/run.h5").column("train", "loss"));
  fs::remove_all(a);
  fs::remove_all(b);
}

TEST_CASE("training: a model trained with --attn.impl fused and maps follows the same loss curve") {
  for (const std::string attention : {"softmax", "mta", "diff"}) {
    CAPTURE(attention);
    std::vector<std::vector<double>> curves;
    for (const std::string impl : {"fused", "maps"}) {
      const std::string dir = temp_dir("impl_" + attention + "_" + impl);
      OptionValues v = text_options(dir, 20, attention);
      v.set("model.n_heads", "4");
      v.set("data.seq_len", "48");
      v.set("train.schedule", "constant");
      v.set("train.warmup", "0");
      v.set("train.eval_every", "10");
      v.set("model.dropout", "0");  // attention dropout needs the maps
      v.set("attn.impl", impl);
      OptionValues a = AttentionRegistry::options_for(attention);
      if (attention == "mta") a.set("kq_layers", "all");  // every component in every layer
      const RunRequest r = run_request(v, a);
      train(r);
      curves.push_back(RunLog::open_read(dir + "/run/run.h5").column("train", "loss"));
      fs::remove_all(dir);
    }
    REQUIRE(curves[0].size() == 20);
    REQUIRE(curves[1].size() == 20);
    double worst = 0;
    for (size_t i = 0; i < curves[0].size(); ++i)
      worst = std::max(worst, std::abs(curves[0][i] - curves[1][i]) / std::abs(curves[1][i]));
    MESSAGE(attention << ": largest relative loss difference, fused vs maps, over 20 steps: " << worst);
    CHECK(worst < 1e-5);  // float32 rounding of two summation orders, grown over 20 Adam steps
    CHECK(curves[0].back() < curves[0].front());
  }
}

TEST_CASE("optimizer: schedules, clipping and AdamW against hand computation") {
  ScheduleConfig s;
  s.kind = "cosine";
  s.lr = 1.0;
  s.min_lr = 0.1;
  s.warmup = 4;
  s.total = 14;
  CHECK(learning_rate(s, 0) == doctest::Approx(0.25));
  CHECK(learning_rate(s, 3) == doctest::Approx(1.0));
  CHECK(learning_rate(s, 4) == doctest::Approx(1.0));
  CHECK(learning_rate(s, 13) == doctest::Approx(0.1));
  CHECK(learning_rate(s, 4 + 9 / 2.0) == doctest::Approx(0.55).epsilon(0.05));
  s.kind = "linear";
  CHECK(learning_rate(s, 13) == doctest::Approx(0.1));
  s.kind = "constant";
  CHECK(learning_rate(s, 13) == doctest::Approx(1.0));

  Tensor p = from_vector(std::vector<double>{1.0, -2.0}, {2}).set_requires_grad();
  p.set_grad(from_vector(std::vector<double>{3.0, 4.0}, {2}));
  NamedParams np{{"w", p}};
  CHECK(clip_grad_norm(np, 1.0) == doctest::Approx(5.0));
  CHECK(p.grad().to_vector<double>()[0] == doctest::Approx(0.6).epsilon(1e-5));

  OptimizerConfig oc;
  oc.beta1 = 0.9;
  oc.beta2 = 0.99;
  oc.eps = 1e-8;
  oc.weight_decay = 0.1;
  Tensor w = from_vector(std::vector<double>{1.0, 1.0, 1.0, 1.0}, {2, 2}).set_requires_grad();
  w.set_grad(from_vector(std::vector<double>{0.5, -0.5, 1.0, 0.0}, {2, 2}));
  Optimizer opt({{"x.weight", w}}, oc);
  opt.step(0.01);
  // step 1: m̂ = g, v̂ = g², update = lr·g/(|g|+eps) plus decay lr·wd·p
  auto v = w.to_vector<double>();
  CHECK(v[0] == doctest::Approx(1.0 * (1 - 0.001) - 0.01));
  CHECK(v[1] == doctest::Approx(1.0 * (1 - 0.001) + 0.01));
  CHECK(v[3] == doctest::Approx(1.0 * (1 - 0.001)));
}
