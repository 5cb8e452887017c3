// --resume checks every field of a checkpoint against the run before it touches a file: a
// checkpoint written by the library (its digest valid) but holding a wrong value must still
// be refused, naming the field, with the run log left byte for byte as it was.
#include <doctest/doctest.h>

#include <cmath>
#include <filesystem>
#include <fstream>
#include <functional>

#include "autograd/errors.h"
#include "experiments/run/checkpoint_file.h"
#include "experiments/train/config.h"
#include "experiments/run/run_log.h"
#include "experiments/train/trainer.h"
#include "layers/attention.h"
#include "test_util.h"

using namespace mtalab;
using testing::bytes_of;
using testing::input_error;
namespace fs = std::filesystem;

namespace {

RunRequest text_run(const testing::TempDir& dir, int64_t steps) {
  std::string text;
  for (int i = 0; i < 300; ++i) text += "pack my box with five dozen liquor jugs. ";
  std::ofstream(dir / "corpus.txt") << text;
  OptionValues v(train_option_specs(), "");
  v.set("model.d_model", "16");
  v.set("model.n_layers", "1");
  v.set("data.task", "text");
  v.set("data.path", dir / "corpus.txt");
  v.set("data.seq_len", "16");
  v.set("train.steps", std::to_string(steps));
  v.set("train.batch_size", "4");
  v.set("train.eval_every", "5");
  v.set("train.eval_max_batches", "1");
  v.set("train.log_every", "1");
  v.set("model.dropout", "0.1");
  v.set("run.out", dir / "run");
  RunRequest r;
  r.config = make_train_config(v, AttentionRegistry::options_for("softmax"));
  r.options = v.resolved();
  r.quiet = true;
  return r;
}

}  // namespace

TEST_CASE("resume: every state field of a checkpoint is checked before the log is touched") {
  testing::TempDir dir("resume_fields");
  RunRequest first = text_run(dir, 12);
  first.stop_after = 7;
  REQUIRE(train(first).interrupted);
  const std::string ck_path = checkpoint_path(first.config.out_dir), log_path = run_log_path(first.config.out_dir);
  const CheckpointData good = load_checkpoint(ck_path);
  const std::string log_before = bytes_of(log_path);

  using Edit = std::function<void(CheckpointData&)>;
  auto first_param = [](CheckpointData& c) -> std::vector<float>& {
    return std::get<std::vector<float>>(c.params.begin()->second.values);
  };
  const std::vector<std::pair<std::string, Edit>> cases = {
      {"state 'step' is -1; expected an integer in [0,", [](CheckpointData& c) { c.ints["step"] = -1; }},
      {"state 'optimizer.steps' is 7 but 'step' is 3", [](CheckpointData& c) { c.ints["step"] = 3; }},
      {"past --train.steps 12", [](CheckpointData& c) { c.ints["step"] = c.ints["optimizer.steps"] = 13; }},
      {"state 'rng.seed' is 5, this run's dropout stream has seed 17", [](CheckpointData& c) { c.ints["rng.seed"] = 5; }},
      {"state 'rng.counter' is -1", [](CheckpointData& c) { c.ints["rng.counter"] = -1; }},
      {"state 'data.seed' is 99, this run's data has seed", [](CheckpointData& c) { c.ints["data.seed"] = 99; }},
      {"state has no integer 'data.epoch'", [](CheckpointData& c) { c.ints.erase("data.epoch"); }},
      {"batcher state index is 1000000", [](CheckpointData& c) { c.ints["data.index"] = 1000000; }},
      {"state 'elapsed_s' is nan", [](CheckpointData& c) { c.reals["elapsed_s"] = std::nan(""); }},
      {"belongs to another run", [](CheckpointData& c) { c.strings["run_id"] = "0123456789abcdef0123456789abcdef"; }},
      {"is of attention variant 'mta', the run's is 'softmax'",
       [](CheckpointData& c) { c.strings["model.attention"] = "mta"; }},
      {"holds a non-finite value (at index 2)", [&](CheckpointData& c) { first_param(c)[2] = INFINITY; }},
      {"holds parameter 'extra.weight' [2], which this model does not have",
       [](CheckpointData& c) { c.params["extra.weight"] = {{2}, std::vector<float>{1, 2}}; }},
      {"is stored as float64, the run's model.dtype is float32",
       [](CheckpointData& c) {
         auto& t = c.params.begin()->second;
         const auto& f = std::get<std::vector<float>>(t.values);
         t.values = std::vector<double>(f.begin(), f.end());
       }},
      {"optimizer state '", [](CheckpointData& c) { c.optim.erase(c.optim.begin()); }},
  };
  for (const auto& [needle, edit] : cases) {
    CAPTURE(needle);
    CheckpointData bad = good;
    edit(bad);
    save_checkpoint(ck_path, bad);  // a valid digest: only the field checks can catch it
    RunRequest again = text_run(dir, 12);
    again.resume = true;
    const std::string msg = input_error([&] { train(again); });
    CHECK(msg.find(needle) != std::string::npos);
    CHECK(msg.find(ck_path) != std::string::npos);
    CHECK(bytes_of(log_path) == log_before);
  }
  save_checkpoint(ck_path, good);
  RunRequest rest = text_run(dir, 12);
  rest.resume = true;
  CHECK(train(rest).steps == 12);
}
