// Results are never mixed: report and plot group runs by what they are (their defining
// options), name every row uniquely (also as a figure's file name), and refuse a baseline
// that is ambiguous or reports another metric.
#include <doctest/doctest.h>

#include <fstream>
#include <regex>
#include <set>

#include "experiments/commands/report.h"
#include "process_util.h"

using namespace mtalab;
using namespace mtalab::testing;

namespace {

const char* kTrain =
    "train --quiet --data.task text --data.path text.txt --data.seq_len 16 --model.n_layers 1 --model.n_heads 2 "
    "--train.steps 2 --train.batch_size 2 --train.eval_batch_size 2 --train.eval_every 2";

void train(const TempDir& d, const std::string& out, const std::string& extra) {
  std::vector<std::string> args = split_words(std::string(kTrain) + " " + extra);
  args.insert(args.end(), {"--run.out", out});
  const ProcResult r = run_mtalab(d.path, args);
  REQUIRE_MESSAGE(r.code == 0, r.err);
}

std::string stem(const std::string& name) { return std::regex_replace(name, std::regex("[^A-Za-z0-9._+=-]"), "_"); }

}  // namespace

TEST_CASE("report identity: runs are grouped by their options, rows named uniquely, figures too") {
  TempDir d("report_identity");
  std::ofstream(d.path / "text.txt") << std::string(400, 'a') + "in the beginning god created the heaven and the earth\n";
  train(d, "a/x", "--model.d_model 16");
  train(d, "b/x", "--model.d_model 32");   // the same name, another model
  train(d, "c/x", "--model.d_model 16 --train.seed 1");  // the same model as a/x, another seed
  train(d, "x y", "--model.d_model 16 --train.lr 2e-3");
  train(d, "x_y", "--model.d_model 16 --train.lr 3e-3");  // "x y" and "x_y": one file name once sanitised
  const std::vector<std::string> in{(d.path / "a/x").string(), (d.path / "b/x").string(), (d.path / "c/x").string(),
                                    (d.path / "x y").string(), (d.path / "x_y").string()};
  const std::vector<ReportRun> runs = report_runs(in);
  REQUIRE(runs.size() == 5);
  std::map<std::string, std::set<std::string>> by_config;
  for (const auto& r : runs) by_config[r.configuration].insert(r.log);
  CHECK(by_config.size() == 4);  // a/x and c/x are seeds of one configuration; b/x is not
  std::set<std::string> stems;
  for (const auto& [name, logs] : by_config) stems.insert(stem(name));
  CHECK(stems.size() == 4);  // no two configurations share a figure's file name
  const std::string table = format_report(in).table;
  CAPTURE(table);
  CHECK(table.find("x [" + (d.path / "a/x").string() + "]") != std::string::npos);
  CHECK(table.find("x [" + (d.path / "b/x").string() + "]") != std::string::npos);
  // --baseline: a name several configurations answer to is refused, naming them.
  ReportOptions o;
  o.baseline = "x";
  CHECK_THROWS_WITH(format_report(in, o), doctest::Contains("--baseline 'x' matches several configurations"));
  o.baseline = "x [" + (d.path / "b/x").string() + "]";
  CHECK(format_report(in, o).table.find("+0.0000") != std::string::npos);  // the baseline's own row
}

TEST_CASE("report identity: a baseline with another metric is refused (error rate minus bits per byte is no difference)") {
  TempDir d("report_metric");
  std::ofstream(d.path / "text.txt") << std::string(400, 'a') + "in the beginning god created the heaven and the earth\n";
  train(d, "text", "--model.d_model 16");
  const ProcResult fb = run_mtalab(d.path, "train --quiet --run.out block --model.d_model 16 --model.n_layers 1 "
                                           "--model.n_heads 2 --train.steps 2 --train.batch_size 2 --train.eval_every 2 "
                                           "--task.n_test 4 --train.eval_batch_size 4");
  REQUIRE_MESSAGE(fb.code == 0, fb.err);
  const ProcResult r = run_mtalab(d.path, "report text block --baseline text");
  CHECK(r.code == 2);
  CHECK(r.err.find("--baseline 'text' reports bpb but 'block' reports error_rate") != std::string::npos);
  CHECK(run_mtalab(d.path, "report text block").code == 0);
}
