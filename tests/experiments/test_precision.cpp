// Mixed-precision training (--train.precision bf16, autograd/autocast.h) on the CPU: it
// follows the float32 loss curve, resumes bit for bit, and its checkpoint (float32 master
// weights) evaluates in either precision. tests/cuda/test_cuda_training.cpp does the same
// on the CUDA backend.
#include <doctest/doctest.h>

#include <unistd.h>

#include <cmath>
#include <filesystem>
#include <fstream>

#include "autograd/errors.h"
#include "experiments/run/checkpoint_file.h"
#include "experiments/run/run_log.h"
#include "experiments/tasks/train_data.h"
#include "experiments/train/config.h"
#include "experiments/train/trainer.h"
#include "layers/attention.h"

using namespace mtalab;
namespace fs = std::filesystem;

namespace {

std::string temp_dir(const std::string& name) {
  fs::path p = fs::temp_directory_path() / ("mtalab_test_prec_" + name + "_" + std::to_string(::getpid()));
  fs::remove_all(p);
  fs::create_directories(p);
  return p.string();
}

const std::string kKjv = std::string(MTALAB_SOURCE_DIR) + "/data/corpora/kjv.txt";

// A small run of `task` ("find_block" or byte-level "text" on the KJV Bible) in `dir`.
OptionValues options(const std::string& dir, const std::string& task, const std::string& attention,
                     const std::string& precision, int64_t steps) {
  OptionValues v(train_option_specs(), "");
  v.set("model.attention", attention);
  v.set("model.d_model", "64");
  v.set("model.n_layers", "2");
  v.set("model.n_heads", "2");
  v.set("data.task", task);
  if (task == "text") {
    v.set("data.path", kKjv);
    v.set("data.seq_len", "64");
  } else {
    v.set("task.n_test", "32");
  }
  v.set("train.steps", std::to_string(steps));
  v.set("train.batch_size", "8");
  v.set("train.lr", "3e-3");
  v.set("train.eval_every", std::to_string(steps));
  v.set("train.eval_max_batches", "2");
  v.set("train.eval_batch_size", "16");
  v.set("train.log_every", "1");
  v.set("train.precision", precision);
  v.set("model.dropout", "0.1");  // the dropout stream too, across a resume
  v.set("run.out", dir + "/run");
  return v;
}

RunRequest request(const OptionValues& v) {
  OptionValues a = AttentionRegistry::options_for(v.get_string("model.attention"));
  if (v.get_string("model.attention") == "mta") a.set("kq_layers", "all");  // the kq convolution in both layers
  RunRequest r;
  r.config = make_train_config(v, a);
  r.options = v.resolved();
  r.quiet = true;
  return r;
}

std::vector<double> losses(const std::string& dir) {
  return RunLog::open_read(run_log_path(dir + "/run")).column("train", "loss");
}

}  // namespace

// bf16 moves each matrix product by about u = 2^-8 relative (tests/cuda/test_cuda_ops.cpp),
// so the first step's loss agrees to ~u; then the two runs' parameters drift apart as
// AdamW amplifies the gradients' rounding differences. Over 20 steps at lr 3e-3 a 2%
// relative difference in the loss is the allowance (measured: see the MESSAGE lines), far
// below the loss's own fall, which both runs must show.
TEST_CASE("precision: bf16 training follows the fp32 loss curve (find_block and byte-level KJV, softmax and MTA)") {
  REQUIRE_MESSAGE(fs::exists(kKjv), "the KJV corpus is written by scripts/setup.sh");
  for (const std::string task : {"find_block", "text"})
    for (const std::string attention : {"softmax", "mta"}) {
      CAPTURE(task);
      CAPTURE(attention);
      std::vector<std::vector<double>> curves;
      for (const std::string precision : {"fp32", "bf16"}) {
        const std::string dir = temp_dir(task + attention + precision);
        train(request(options(dir, task, attention, precision, 20)));
        curves.push_back(losses(dir));
        fs::remove_all(dir);
      }
      REQUIRE(curves[0].size() == 20);
      REQUIRE(curves[1].size() == 20);
      double worst = 0;
      for (size_t i = 0; i < 20; ++i) worst = std::max(worst, std::abs(curves[1][i] - curves[0][i]) / curves[0][i]);
      MESSAGE(task << " " << attention << ": largest relative loss difference, bf16 vs fp32, over 20 steps: " << worst
                   << " (step 1: " << std::abs(curves[1][0] - curves[0][0]) / curves[0][0] << ")");
      CHECK(std::abs(curves[1][0] - curves[0][0]) / curves[0][0] < 4 * 0x1p-8);
      CHECK(worst < 0.02);
      CHECK(curves[1].back() < 0.9 * curves[1].front());
      CHECK(curves[0].back() < 0.9 * curves[0].front());
    }
}

TEST_CASE("precision: a bf16 run of k steps + resume + m steps equals k + m steps bit for bit, and logs its precision") {
  for (const std::string attention : {"softmax", "mta"}) {
    CAPTURE(attention);
    const std::string a = temp_dir("straight" + attention), b = temp_dir("resumed" + attention);
    train(request(options(a, "text", attention, "bf16", 10)));
    RunRequest part = request(options(b, "text", attention, "bf16", 10));
    part.stop_after = 6;
    CHECK(train(part).interrupted);
    RunRequest rest = request(options(b, "text", attention, "bf16", 10));
    rest.resume = true;
    train(rest);
    CHECK(losses(a) == losses(b));  // exact
    CHECK(RunLog::open_read(run_log_path(a + "/run")).column("eval", "loss") ==
          RunLog::open_read(run_log_path(b + "/run")).column("eval", "loss"));
    const CheckpointData ca = load_checkpoint(checkpoint_path(a + "/run")), cb = load_checkpoint(checkpoint_path(b + "/run"));
    for (const auto* group : {&ca.params, &ca.optim})
      for (const auto& [name, t] : *group) {
        CAPTURE(name);
        CHECK(t.is_f32());  // master weights and AdamW state stay float32
        const auto& other = group == &ca.params ? cb.params : cb.optim;
        CHECK(t.values == other.at(name).values);
      }
    CHECK(RunLog::open_read(run_log_path(a + "/run")).attr_string("train.precision") == "bf16");
    fs::remove_all(a);
    fs::remove_all(b);
  }
}

TEST_CASE("precision: a bf16 checkpoint evaluates in fp32 and in bf16 (the run's own numbers), and an fp32 one in bf16") {
  const std::string dir = temp_dir("eval");
  const OptionValues v = options(dir, "text", "mta", "bf16", 8);
  const RunRequest r = request(v);
  const RunSummary s = train(r);
  const CheckpointData ck = load_checkpoint(checkpoint_path(dir + "/run"));
  auto evaluate = [&](DType precision) {
    TrainConfig c = r.config;
    c.model.precision = precision;
    auto data = make_train_data(c);
    Transformer model(c.model);
    load_parameters(ck, model.named_parameters(), "checkpoint");
    model.train(false);
    return data->evaluate(model).loss;
  };
  const double bf16 = evaluate(DType::bf16), fp32 = evaluate(DType::f32);
  CHECK(bf16 == s.eval_loss);  // the run's own evaluation, reproduced exactly
  MESSAGE("eval loss of a bf16 checkpoint: bf16 " << bf16 << ", fp32 " << fp32);
  CHECK(std::abs(fp32 - bf16) / fp32 < 4 * 0x1p-8);
  CHECK(fp32 != bf16);  // the precision really changed the computation
  // ... and back: an fp32 run's checkpoint in a bf16 model.
  const std::string dir32 = temp_dir("eval32");
  const RunRequest r32 = request(options(dir32, "text", "mta", "fp32", 8));
  const RunSummary s32 = train(r32);
  TrainConfig c = r32.config;
  c.model.precision = DType::bf16;
  auto data = make_train_data(c);
  Transformer model(c.model);
  load_parameters(load_checkpoint(checkpoint_path(dir32 + "/run")), model.named_parameters(), "checkpoint");
  model.train(false);
  CHECK(std::abs(data->evaluate(model).loss - s32.eval_loss) / s32.eval_loss < 4 * 0x1p-8);
  fs::remove_all(dir);
  fs::remove_all(dir32);
}

TEST_CASE("precision: --train.precision bf16 with float64 weights is refused naming both options") {
  OptionValues v = options("/tmp", "text", "softmax", "bf16", 2);
  v.set("model.dtype", "float64");
  CHECK_THROWS_WITH_AS(make_train_config(v, AttentionRegistry::options_for("softmax")),
                       doctest::Contains("--train.precision=bf16 keeps float32 master weights; it needs --model.dtype "
                                         "float32, got float64"),
                       InputError);
}
