// The task registry: every task is reachable by --data.task with its own options, another
// task's options are refused, and the needle task trains, evaluates its length × depth grid
// by greedy incremental decoding and logs it; `mtalab plot` draws the grid.
#include <doctest/doctest.h>

#include <filesystem>
#include <fstream>

#include "experiments/train/config.h"
#include "experiments/run/run_log.h"
#include "experiments/tasks/train_data.h"
#include "png_util.h"
#include "process_util.h"

using namespace mtalab;
using namespace mtalab::testing;
namespace fs = std::filesystem;

namespace {

// A haystack: varied words, enough for the needle task's two splits.
void write_haystack(const fs::path& p) {
  std::ofstream f(p);
  const char* words[] = {"and", "the", "light", "was", "upon", "waters", "in", "beginning", "earth", "said"};
  for (int i = 0; i < 6000; ++i) f << words[(i * 7 + i / 13) % 10] << (i % 11 == 10 ? ".\n" : " ");
}

const std::string kNeedle =
    " --data.task needle --data.path hay.txt --task.needles 1 --task.context 128 --task.lengths 96,128"
    " --task.depths 0,0.5,1 --task.per_cell 3 --model.d_model 16 --model.n_layers 2 --model.n_heads 2"
    " --train.batch_size 2 --train.eval_batch_size 2 --train.steps 4 --train.eval_every 2 --train.log_every 1 --quiet";

}  // namespace

TEST_CASE("tasks: the registry lists every task, and the options take effect only with their task") {
  std::set<std::string> names;
  for (const TaskSpec* t : TaskRegistry::list()) names.insert(t->name);
  CHECK(names == std::set<std::string>{"babilong", "find_block", "needle", "text"});
  CHECK_THROWS_WITH_AS(TaskRegistry::get("haystack"),
                       doctest::Contains("unknown data.task 'haystack' (expected one of: babilong, find_block, needle, text)"),
                       InputError);
  TempDir d("tasks");
  write_haystack(d.path / "hay.txt");
  const ProcResult wrong = run_mtalab(d.path, "train --run.out r --task.needles 3 --quiet");
  CHECK(wrong.code == 2);
  CHECK(wrong.err.find("option --task.needles has no effect because --data.task is find_block") != std::string::npos);
  const ProcResult seq = run_mtalab(d.path, "train --run.out r" + kNeedle + " --data.seq_len 64");
  CHECK(seq.code == 2);
  CHECK(seq.err.find("option --data.seq_len has no effect because --data.task is needle") != std::string::npos);
  const ProcResult shortlen = run_mtalab(d.path, "train --run.out r --data.task needle --task.lengths 64,256");
  CHECK(shortlen.code == 2);
  CHECK(shortlen.err.find("--task.lengths: 64 bytes cannot hold 2 needles") != std::string::npos);
  CHECK_FALSE(fs::exists(d.path / "r"));
  const ProcResult help = run_mtalab(d.path, "train --help");
  CHECK(help.out.find("--task.depths") != std::string::npos);
  CHECK(help.out.find("--task.block_len") != std::string::npos);
}

TEST_CASE("tasks: the needle task logs its accuracy grid at every evaluation, and plot draws it") {
  TempDir d("needle");
  write_haystack(d.path / "hay.txt");
  const ProcResult r = run_mtalab(d.path, "train --run.out r --model.attention mta --mta.kq_layers all" + kNeedle);
  CAPTURE(r.err);
  REQUIRE(r.code == 0);
  RunLog log = RunLog::open_read(d.path / "r/run.h5");
  CHECK(log.snapshot_steps("eval_grids", "needle_accuracy") == std::vector<int64_t>{2, 4});
  const LoggedArray grid = log.read_array("/eval_grids/needle_accuracy");
  CHECK(grid.shape == std::vector<int64_t>{2, 2, 3});
  for (double a : grid.values) CHECK((a >= 0 && a <= 1));
  CHECK(log.read_array("/eval_grids/needle_accuracy_length").values == std::vector<double>{96, 128});
  CHECK(log.read_array("/eval_grids/needle_accuracy_depth").values == std::vector<double>{0, 0.5, 1});
  // The run's metric is the grid's error rate: one minus its mean accuracy.
  double mean = 0;
  for (size_t i = 6; i < 12; ++i) mean += grid.values[i] / 6;
  CHECK(log.finals().at("error_rate") == doctest::Approx(1 - mean));
  const ProcResult p = run_mtalab(d.path, "plot r --out plots");
  CAPTURE(p.err);
  REQUIRE(p.code == 0);
  const auto [w, h] = png_size(bytes_of((d.path / "plots/needle_r.png").string()));
  CHECK(w >= 300);
  CHECK(h >= 150);
  CHECK(colours(d.path / "plots/needle_r.png") > 16);  // drawn, not blank
  CHECK(bytes_of((d.path / "plots/index.html").string()).find("needle_r.png") != std::string::npos);
}

TEST_CASE("tasks: the babilong task trains, logs its task x distraction grid, and plot draws it") {
  TempDir d("babilong");
  write_haystack(d.path / "hay.txt");
  const std::string base =
      " --data.task babilong --data.path hay.txt --task.facts 4 --task.context 320 --task.per_cell 3 --model.d_model 16 --model.n_layers 2 --model.n_heads 2"
      " --train.batch_size 2 --train.eval_batch_size 2 --train.steps 4 --train.eval_every 2 --train.log_every 1 --quiet";
  const std::string opts = base + " --task.qa 1,4,5 --task.distractions 0,64";
  const ProcResult r = run_mtalab(d.path, "train --run.out r --model.attention mta --mta.kq_layers all" + opts);
  CAPTURE(r.err);
  REQUIRE(r.code == 0);
  RunLog log = RunLog::open_read(d.path / "r/run.h5");
  CHECK(log.snapshot_steps("eval_grids", "babilong_accuracy") == std::vector<int64_t>{2, 4});
  const LoggedArray grid = log.read_array("/eval_grids/babilong_accuracy");
  CHECK(grid.shape == std::vector<int64_t>{2, 3, 2});
  for (double a : grid.values) CHECK((a >= 0 && a <= 1));
  CHECK(log.read_array("/eval_grids/babilong_accuracy_qa").values == std::vector<double>{1, 4, 5});
  CHECK(log.read_array("/eval_grids/babilong_accuracy_distraction").values == std::vector<double>{0, 64});
  double mean = 0;
  for (size_t i = 6; i < 12; ++i) mean += grid.values[i] / 6;
  CHECK(log.finals().at("error_rate") == doctest::Approx(1 - mean));
  const ProcResult p = run_mtalab(d.path, "plot r --out plots");
  CAPTURE(p.err);
  REQUIRE(p.code == 0);
  const auto [w, h] = png_size(bytes_of((d.path / "plots/babilong_r.png").string()));
  CHECK(w >= 300);
  CHECK(h >= 150);
  CHECK(colours(d.path / "plots/babilong_r.png") > 16);
  CHECK(bytes_of((d.path / "plots/index.html").string()).find("babilong_r.png") != std::string::npos);
  // Bad options exit 2 naming them, before anything is written.
  const ProcResult far = run_mtalab(d.path, "train --run.out bad" + base + " --task.distractions 0,4000");
  CHECK(far.code == 2);
  CHECK(far.err.find("option --task.distractions: 4000 bytes of haystack") != std::string::npos);
  const ProcResult qa = run_mtalab(d.path, "train --run.out bad" + base + " --task.qa 1,7");
  CHECK(qa.code == 2);
  CHECK(qa.err.find("option --task.qa: 7 is not a bAbI task") != std::string::npos);
  const ProcResult neg = run_mtalab(d.path, "train --run.out bad" + base + " --task.distractions 0,-5");
  CHECK(neg.code == 2);
  CHECK(neg.err.find("option --task.distractions: '-5' is not an integer >= 0") != std::string::npos);
  CHECK_FALSE(fs::exists(d.path / "bad"));
}
