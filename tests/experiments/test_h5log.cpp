#include <doctest/doctest.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <sstream>

#include "autograd/errors.h"
#include "experiments/run/checkpoint_file.h"
#include "experiments/run/run_log.h"
#include "test_util.h"

using namespace mtalab;
using testing::bytes_of;
using testing::input_error;
namespace fs = std::filesystem;

namespace {

struct TempDir : testing::TempDir {
  TempDir() : testing::TempDir("h5log") {}
};

const std::vector<std::string> kTrainColumns = {"step", "loss", "lr", "grad_norm", "tokens_per_s", "elapsed_s"};

std::vector<double> train_row(int64_t step) {
  const double s = static_cast<double>(step);
  return {s, 10.0 - s * 0.01, 1e-3, 0.5 + s, 1000.0 * s, 0.25 * s};
}

std::vector<int64_t> range(int64_t from, int64_t to, int64_t by = 1) {
  std::vector<int64_t> v;
  for (int64_t i = from; i < to; i += by) v.push_back(i);
  return v;
}

}  // namespace

TEST_CASE("run log: root attributes round trip with their types") {
  TempDir dir;
  const std::string path = dir / "run.h5";
  {
    RunLog log = RunLog::create(path);
    log.set_attr("model", "mta");
    log.set_attr("commit", std::string("abc123def456"));
    log.set_attr("threads", 8);
    log.set_attr("seed", int64_t{-1234567890123456789});
    log.set_attr("param_count", size_t{123456789});
    log.set_attr("causal", true);
    log.set_attr("lr", 3e-4);
    log.set_attr("empty", "");
    log.set_attr("host", "héllo");
    log.set_attr("threads", 16);  // replaces
    log.set_attr("lr", "cosine");  // replaces with another type
    CHECK_THROWS_AS(log.set_attr("mtalab_format", "x"), std::invalid_argument);
    log.close();
  }
  RunLog log = RunLog::open_read(path);
  CHECK(log.attr_string("model") == "mta");
  CHECK(log.attr_string("commit") == "abc123def456");
  CHECK(log.attr_int("threads") == 16);
  CHECK(log.attr_int("seed") == -1234567890123456789);
  CHECK(log.attr_int("param_count") == 123456789);
  CHECK(log.attr_int("causal") == 1);
  CHECK(log.attr_string("lr") == "cosine");
  CHECK(log.attr_string("empty").empty());
  CHECK(log.attr_string("host") == "héllo");
  CHECK(log.attr_double("threads") == 16.0);
  auto all = log.attrs();
  CHECK(all.size() == 11);  // 9 set + mtalab_format + mtalab_format_version
  CHECK(std::get<std::string>(all.at("mtalab_format")) == "run_log");
  CHECK(!log.find_attr("nope"));
  CHECK(input_error([&] { log.attr_int("model"); }).find("model") != std::string::npos);
  std::string missing = input_error([&] { log.attr_string("nope"); });
  CHECK(missing.find(path) != std::string::npos);
  CHECK(missing.find("expected") != std::string::npos);
  CHECK_THROWS_AS(log.set_attr("x", 1.0), std::logic_error);  // read-only
}

TEST_CASE("run log: rows appended in several batches read back in order") {
  TempDir dir;
  const std::string path = dir / "run.h5";
  {
    RunLog log = RunLog::create(path);
    auto& train = log.table("train", kTrainColumns);
    auto& eval = log.table("eval", {"step", "loss", "bpb"});
    for (int64_t s = 0; s < 3; ++s) train.append_row(train_row(s));
    log.flush();
    for (int64_t s = 3; s < 5; ++s) train.append_row(train_row(s));
    eval.append_row({4, 2.5, 1.25});
    // Unflushed rows are visible to readers of this log.
    CHECK(log.steps("train") == range(0, 5));
    CHECK(log.column("eval", "bpb") == std::vector<double>{1.25});
    log.flush();
    for (int64_t s = 5; s < 2500; ++s) train.append_row(train_row(s));  // crosses chunk boundaries
    eval.append_row({2499, 2.0, 1.0});
    CHECK(train.rows() == 2500);
    CHECK_THROWS_AS(train.append_row({1.0, 2.0}), std::invalid_argument);
    CHECK_THROWS_AS(train.append_row(train_row(7)), std::invalid_argument);  // step decreases
    CHECK_THROWS_AS(train.append_row({2500.5, 0, 0, 0, 0, 0}), std::invalid_argument);
    CHECK_THROWS_AS(log.table("bad", {"loss", "step"}), std::invalid_argument);
    CHECK(&log.table("train", kTrainColumns) == &train);
    log.close();  // writes the last rows without an explicit flush
  }
  RunLog log = RunLog::open_read(path);
  CHECK(log.table_names() == std::vector<std::string>{"eval", "train"});
  CHECK(log.columns("train") == kTrainColumns);
  CHECK(log.steps("train") == range(0, 2500));
  const auto loss = log.column("train", "loss"), grad = log.column("train", "grad_norm");
  REQUIRE(loss.size() == 2500);
  bool all_match = true;
  for (int64_t s = 0; s < 2500; ++s)
    all_match = all_match && loss[s] == train_row(s)[1] && grad[s] == train_row(s)[3];
  CHECK(all_match);
  CHECK(log.column("train", "step")[2499] == 2499.0);
  CHECK(log.column("eval", "bpb") == std::vector<double>{1.25, 1.0});
  CHECK(log.steps("eval") == std::vector<int64_t>{4, 2499});
  CHECK(input_error([&] { log.column("eval", "error_rate"); }).find("bpb") != std::string::npos);
  CHECK(input_error([&] { log.steps("nope"); }).find("no table /nope") != std::string::npos);
}

TEST_CASE("run log: create refuses an existing file and leaves it byte-identical but overwrite replaces it") {
  TempDir dir;
  const std::string path = dir / "run.h5";
  {
    RunLog log = RunLog::create(path);
    log.set_attr("model", "old");
    log.table("train", kTrainColumns).append_row(train_row(0));
    log.close();
  }
  const std::string before = bytes_of(path);
  REQUIRE(!before.empty());
  const std::string msg = input_error([&] { RunLog::create(path); });
  CHECK(msg.find(path) != std::string::npos);
  CHECK(msg.find("exists") != std::string::npos);
  CHECK(bytes_of(path) == before);

  const std::string text = dir / "notes.txt";
  std::ofstream(text) << "not a log";
  CHECK_THROWS_AS(RunLog::create(text), InputError);
  CHECK(bytes_of(text) == "not a log");

  {
    RunLog log = RunLog::create(path, /*overwrite=*/true);
    log.set_attr("model", "new");
    log.close();
  }
  RunLog log = RunLog::open_read(path);
  CHECK(log.attr_string("model") == "new");
  CHECK(log.table_names().empty());

  // Parent directories are created.
  RunLog nested = RunLog::create(dir / "a/b/run.h5");
  nested.close();
  CHECK(fs::exists(dir / "a/b/run.h5"));
}

TEST_CASE("run log: open_append continues tables and validates the file") {
  TempDir dir;
  const std::string path = dir / "run.h5";
  {
    RunLog log = RunLog::create(path);
    auto& t = log.table("train", kTrainColumns);
    for (int64_t s = 0; s < 5; ++s) t.append_row(train_row(s));
    log.close();
  }
  {
    RunLog log = RunLog::open_append(path);
    auto& t = log.table("train", kTrainColumns);
    CHECK(t.rows() == 5);
    CHECK(t.last_step() == 4);
    CHECK_THROWS_AS(t.append_row(train_row(3)), std::invalid_argument);
    for (int64_t s = 5; s < 8; ++s) t.append_row(train_row(s));
    std::string msg = input_error([&] { log.table("train", {"step", "loss"}); });
    CHECK(msg.find("has columns [step, loss, lr") != std::string::npos);
    CHECK(msg.find(path) != std::string::npos);
    log.close();
  }
  CHECK(RunLog::open_read(path).steps("train") == range(0, 8));
  CHECK(RunLog::open_read(path).column("train", "elapsed_s")[7] == 0.25 * 7);

  CHECK(input_error([&] { RunLog::open_append(dir / "missing.h5"); }).find("does not exist") != std::string::npos);
  const std::string text = dir / "junk.h5";
  std::ofstream(text) << "junk junk junk";
  CHECK(input_error([&] { RunLog::open_append(text); }).find("not an HDF5 file") != std::string::npos);
  const std::string ckpt = dir / "ckpt.h5";
  save_checkpoint(ckpt, CheckpointData{});
  const std::string msg = input_error([&] { RunLog::open_append(ckpt); });
  CHECK(msg.find("checkpoint") != std::string::npos);
  CHECK(msg.find("expected an mtalab run_log") != std::string::npos);
}

TEST_CASE("run log: truncate_after drops the rows of a crashed run past the checkpoint") {
  TempDir dir;
  const std::string path = dir / "run.h5";
  {
    RunLog log = RunLog::create(path);
    auto& t = log.table("train", kTrainColumns);
    auto& e = log.table("eval", {"step", "loss", "error_rate"});
    for (int64_t s = 0; s < 100; s += 10) {
      t.append_row(train_row(s));
      if (s % 20 == 0) e.append_row({double(s), 1.0, 0.5});
      if (s == 50) log.flush();
    }
    log.snapshot("kernels", "layer_0", 20, {2}, std::vector<float>{1, 2});
    log.snapshot("kernels", "layer_0", 60, {2}, std::vector<float>{3, 4});
    log.close();
  }
  RunLog log = RunLog::open_append(path);
  log.truncate_after("train", 45);
  CHECK(log.steps("train") == range(0, 50, 10));
  CHECK(log.column("train", "loss").size() == 5);
  auto& t = log.table("train", kTrainColumns);
  CHECK(t.last_step() == 40);
  t.append_row(train_row(50));
  t.append_row(train_row(60));
  log.truncate_after("train", 50);  // also cuts unflushed rows
  CHECK(log.steps("train") == range(0, 60, 10));
  log.truncate_after("train", -1);
  CHECK(log.steps("train").empty());
  CHECK(!t.last_step());
  t.append_row(train_row(0));

  log.truncate_all_after(40);  // eval and the snapshots too
  CHECK(log.steps("eval") == std::vector<int64_t>{0, 20, 40});
  CHECK(log.snapshot_steps("kernels", "layer_0") == std::vector<int64_t>{20});
  CHECK(log.read_array("kernels/layer_0").shape == std::vector<int64_t>{1, 2});
  CHECK(input_error([&] { log.truncate_after("nope", 3); }).find("no table /nope") != std::string::npos);
  log.close();
  RunLog back = RunLog::open_read(path);
  CHECK(back.steps("train") == std::vector<int64_t>{0});
  CHECK(back.column("eval", "error_rate") == std::vector<double>{0.5, 0.5, 0.5});
}

TEST_CASE("run log: snapshots stack into [n ...shape] and arrays and finals round trip") {
  TempDir dir;
  const std::string path = dir / "run.h5";
  {
    RunLog log = RunLog::create(path);
    for (int i = 0; i < 3; ++i) {
      std::vector<float> k(2 * 3 * 4);
      for (size_t j = 0; j < k.size(); ++j) k[j] = 0.5f * i + 0.001f * j;
      log.snapshot("kernels", "layer_1.q", 100 * (i + 1), {2, 3, 4}, k);
    }
    std::vector<double> wide{1.0 / 3, 2.0 / 3};
    log.snapshot("kernels", "wide", 7, {2}, wide);
    // A shape or dtype unlike the earlier snapshots is a mismatched resume, not a new series.
    CHECK_THROWS_AS(log.snapshot("kernels", "layer_1.q", 400, {2, 3, 5}, std::vector<float>(30)), InputError);
    CHECK_THROWS_AS(log.snapshot("kernels", "layer_1.q", 400, {2, 3, 4}, std::vector<double>(24)), InputError);
    CHECK_THROWS_AS(log.snapshot("kernels", "layer_1.q", 50, {2, 3, 4}, std::vector<float>(24)),
                    std::invalid_argument);
    CHECK_THROWS_AS(log.snapshot("kernels", "x", 1, {2, 2}, std::vector<float>(3)), std::invalid_argument);

    std::vector<float> att(2 * 4 * 4, 0.25f);
    log.write_array("/attention/layer_0", {2, 4, 4}, att);
    att[5] = 1.0f;
    log.write_array("/attention/layer_0", {2, 4, 4}, att);  // replaces
    log.write_array("/attention/scalar", {}, std::vector<double>{42.0});
    CHECK_THROWS_AS(log.write_array("/attention", {1}, std::vector<float>{1}), std::invalid_argument);
    log.set_final("val_loss", 1.5);
    log.set_final("val_bpb", 0.75);
    log.set_final("val_loss", 1.25);
    log.close();
  }
  RunLog log = RunLog::open_read(path);
  LoggedArray k = log.read_array("/kernels/layer_1.q");
  CHECK(k.shape == std::vector<int64_t>{3, 2, 3, 4});
  REQUIRE(k.values.size() == 72);
  CHECK(k.values[24 * 2 + 5] == static_cast<double>(0.5f * 2 + 0.001f * 5));
  CHECK(log.snapshot_steps("kernels", "layer_1.q") == std::vector<int64_t>{100, 200, 300});
  LoggedArray w = log.read_array("kernels/wide");
  CHECK(w.shape == std::vector<int64_t>{1, 2});
  CHECK(w.values[0] == 1.0 / 3);
  LoggedArray a = log.read_array("/attention/layer_0");
  CHECK(a.shape == std::vector<int64_t>{2, 4, 4});
  CHECK(a.values[5] == 1.0);
  CHECK(a.values[6] == 0.25);
  LoggedArray s = log.read_array("/attention/scalar");
  CHECK(s.shape.empty());
  CHECK(s.values == std::vector<double>{42.0});
  CHECK(log.finals() == std::map<std::string, double>{{"val_bpb", 0.75}, {"val_loss", 1.25}});
  CHECK(log.table_names().empty());  // snapshot and array groups are not tables
  CHECK(input_error([&] { log.read_array("/attention/layer_9"); }).find("no array") != std::string::npos);
}

TEST_CASE("run log: a process killed with SIGKILL leaves every flushed row readable") {
  TempDir dir;
  const std::string path = dir / "run.h5", early = dir / "early.h5";
  int ready[2], go[2];
  REQUIRE(::pipe(ready) == 0);
  REQUIRE(::pipe(go) == 0);
  fflush(nullptr);  // nothing buffered may be written twice by the child
  const pid_t pid = ::fork();
  REQUIRE(pid >= 0);
  if (pid == 0) {
    // Child: only HDF5 work, then it is killed without unwinding, atexit handlers or HDF5's
    // cleanup; every exit path is _exit.
    try {
      RunLog first = RunLog::create(early);
      first.table("train", kTrainColumns).append_row(train_row(0));  // never flushed
      RunLog log = RunLog::create(path);
      log.set_attr("model", "mta");
      auto& t = log.table("train", kTrainColumns);
      for (int64_t s = 0; s < 10; ++s) t.append_row(train_row(s));
      log.flush();
      for (int64_t s = 10; s < 1500; ++s) t.append_row(train_row(s));
      log.snapshot("kernels", "layer_0", 1499, {3}, std::vector<float>{1, 2, 3});
      log.flush();
      for (int64_t s = 1500; s < 1600; ++s) t.append_row(train_row(s));  // lost with the process
      log.set_attr("late", 1);
      char c = 1;
      if (::write(ready[1], &c, 1) == 1) (void)::read(go[0], &c, 1);  // the parent kills us here
      ::raise(SIGKILL);
    } catch (...) {
    }
    ::_exit(3);
  }
  // Kills and reaps the child however this test ends, so a failing check cannot leave it
  // blocked (and holding the test's output open).
  struct Reaper {
    pid_t pid;
    int status = 0;
    void reap() {
      if (pid > 0) {
        ::kill(pid, SIGKILL);
        ::waitpid(pid, &status, 0);
      }
      pid = -1;
    }
    ~Reaper() { reap(); }
  } child{pid};
  ::close(ready[1]);  // so a child that dies early ends the read below
  char c = 0;
  const bool child_ready = ::read(ready[0], &c, 1) == 1;
  if (child_ready) {
    // A reader can look at the live log (the writer holds HDF5's file lock).
    CHECK(RunLog::open_read(path).steps("train").size() == 1500);
  }
  child.reap();
  const int status = child.status;
  for (int fd : {ready[0], go[0], go[1]}) ::close(fd);
  REQUIRE(child_ready);
  REQUIRE(WIFSIGNALED(status));
  REQUIRE(WTERMSIG(status) == SIGKILL);

  {
    RunLog log = RunLog::open_read(path);
    CHECK(log.attr_string("model") == "mta");
    CHECK(log.steps("train") == range(0, 1500));
    CHECK(log.column("train", "loss")[1499] == train_row(1499)[1]);
    CHECK(log.read_array("kernels/layer_0").values == std::vector<double>{1, 2, 3});
    CHECK(!log.find_attr("late"));
  }
  // A log killed before its first flush leaves no file: nothing half-made for a reader,
  // and nothing to block the next attempt.
  CHECK_FALSE(fs::exists(early));
  // And the crashed log resumes.
  RunLog log = RunLog::open_append(path);
  log.truncate_all_after(1200);
  auto& t = log.table("train", kTrainColumns);
  t.append_row(train_row(1201));
  log.close();
  CHECK(RunLog::open_read(path).steps("train").size() == 1202);
  CHECK(RunLog::open_read(path).snapshot_steps("kernels", "layer_0").empty());
}
