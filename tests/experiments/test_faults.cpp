// Fault injection on the real binary: SIGKILL at random moments and inside checkpoint and
// log writes, then --resume, compared bit for bit with an uninterrupted run; two processes
// racing for one run directory; a full file system (a small tmpfs where this process may
// mount one, and always an injected ENOSPC). Tiny models: the whole file runs in seconds.
#include <doctest/doctest.h>
#include <sys/mount.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <random>

#include "experiments/run/checkpoint_file.h"
#include "experiments/run/run_log.h"
#include "process_util.h"
#include "run_results.h"
#include "test_util.h"

namespace fs = std::filesystem;
using namespace mtalab;
using namespace mtalab::testing;

namespace {

// MTA with learned kernels (snapshots to truncate on resume) and dropout (a random stream
// to restore), small enough that 30 steps take a fraction of a second.
const std::string kRun =
    " --model.attention mta --mta.kq_layers all --mta.cq 2 --mta.ck 3 --mta.head_mix_pre false"
    " --mta.head_mix_post false --model.dropout 0.1 --model.d_model 16 --model.n_layers 2 --model.n_heads 2"
    " --task.total_len 24 --task.block_len 3 --task.query_len 2 --task.n_test 8 --train.batch_size 4"
    " --train.eval_batch_size 8 --train.log_every 1 --train.eval_every 5 --train.checkpoint_every 3";

auto printed(const std::string& needle) {
  return [needle](const std::string& out) { return out.find(needle) != std::string::npos; };
}

// What a run killed at any moment must leave: a log that opens with contiguous rows, and a
// checkpoint (if any) that loads, no further than the log's rows.
void check_whole(const std::string& dir) {
  if (!fs::exists(dir + "/run.h5")) return;
  RunLog log = RunLog::open_read(dir + "/run.h5");
  const auto tables = log.table_names();
  if (std::find(tables.begin(), tables.end(), "train") == tables.end()) return;  // killed before its first flush
  const auto steps = log.steps("train");
  for (size_t i = 0; i < steps.size(); ++i) REQUIRE(steps[i] == (int64_t)i + 1);
  if (fs::exists(dir + "/checkpoint.h5")) load_checkpoint(dir + "/checkpoint.h5");
}

}  // namespace

TEST_CASE("faults: SIGKILL at random moments and inside checkpoint and log writes, --resume is bit for bit") {
  TempDir d("faults_kill");
  const int64_t steps = 90;
  const std::string straight = "train --run.out straight --quiet --train.steps " + std::to_string(steps) + kRun;
  const auto t0 = std::chrono::steady_clock::now();
  REQUIRE(run_mtalab(d.path, straight).code == 0);
  const Results want = results_of(d / "straight");
  // Random kills land anywhere in a run's lifetime, however fast this build is.
  const double run_ms = std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count();

  const unsigned seed = std::random_device{}();
  CAPTURE(seed);  // a failure names the seed; the kills follow from it
  std::mt19937 rng(seed);
  const char* points[] = {"log_write", "log_rename", "ckpt_write", "ckpt_rename"};
  int kills = 0;
  std::map<std::string, int> killed_at;
  bool finished = false;
  // First twice at each write point (an early occurrence: every session gets killed), then
  // at random moments until a session finishes the run.
  for (int attempt = 0; attempt < 80 && !finished; ++attempt) {
    CAPTURE(attempt);
    const bool resume = fs::exists(d / "faulted/checkpoint.h5");
    const std::string args = "train --run.out faulted --quiet --train.steps " + std::to_string(steps) + kRun +
                             (resume ? " --resume" : " --overwrite");
    SpawnOptions o;
    const bool at_point = attempt < 8;
    const std::string point = points[attempt % 4];
    if (at_point) o.env.push_back("MTALAB_FAULT=kill@" + point + "#" + std::to_string(1 + rng() % 3));
    Child c(d.path, split_words(args), o);
    if (!at_point) {
      std::this_thread::sleep_for(std::chrono::duration<double, std::milli>(
          run_ms * std::uniform_real_distribution<double>(0.05, 0.6)(rng)));
      c.signal(SIGKILL);
    }
    const ProcResult r = c.wait();
    CAPTURE(r.err);
    if (r.code == 0) {
      finished = true;
      break;
    }
    REQUIRE(r.signal == SIGKILL);
    ++kills;
    if (at_point) ++killed_at[point];
    check_whole(d / "faulted");
    // Killed after its last write, on its way out: the run is complete, and says so.
    finished = fs::exists(d / "faulted/run.h5") && RunLog::open_read(d / "faulted/run.h5").find_attr("status") ==
                                                      std::optional<h5::AttrValue>(std::string("finished"));
  }
  REQUIRE(finished);
  CHECK(kills >= 8);
  for (const std::string p : points) CHECK_MESSAGE(killed_at[p] == 2, "killed at ", p, " ", killed_at[p], " times");
  check_same(want, results_of(d / "faulted"));
  CHECK(RunLog::open_read(d / "faulted/run.h5").attr_string("status") == "finished");
}

TEST_CASE("faults: two processes racing for one run directory: one runs, the other exits 2 and touches nothing") {
  TempDir d("faults_race");
  const std::string endless = " --train.steps 100000" + kRun;
  for (auto [a, b] : std::vector<std::pair<std::string, std::string>>{
           {"", ""}, {" --overwrite", " --overwrite"}, {" --overwrite", " --resume"}}) {
    CAPTURE(a);
    CAPTURE(b);
    Child first(d.path, split_words("train --run.out race" + endless + a));
    Child second(d.path, split_words("train --run.out race" + endless + b));
    // The loser gives up at once; the winner trains until it is stopped.
    for (int i = 0; i < 3000 && !first.ended() && !second.ended(); ++i)
      std::this_thread::sleep_for(std::chrono::milliseconds(5));
    REQUIRE((first.ended() || second.ended()));
    Child& lost = first.ended() ? first : second;
    Child& winner = first.ended() ? second : first;
    const ProcResult l = lost.wait();
    CAPTURE(l.err);
    CHECK(l.code == 2);
    CHECK(l.err.find("is in use by pid " + std::to_string(winner.pid())) != std::string::npos);
    // A few steps of its own (a resumed winner starts where the last round stopped).
    REQUIRE(winner.wait_for_output([](const std::string& out) {
      size_t n = 0;
      for (size_t at = out.find("\nstep "); at != std::string::npos; at = out.find("\nstep ", at + 1)) ++n;
      return n >= 5;
    }));
    winner.signal(SIGINT);
    CHECK(winner.wait().code == 130);
    check_whole(d / "race");
    RunLog log = RunLog::open_read(d / "race/run.h5");
    CHECK(log.attr_string("status") == "interrupted");
    const CheckpointData ck = load_checkpoint(d / "race/checkpoint.h5");
    CHECK(ck.ints.at("step") == log.steps("train").back());
    CHECK(ck.strings.at("run_id") == log.attr_string("run_id"));
  }
}

namespace {

// A small tmpfs at `dir`, if this process may mount one (root with CAP_SYS_ADMIN).
struct SmallFs {
  std::string dir;
  bool mounted = false;
  explicit SmallFs(const std::string& where) : dir(where) {
    fs::create_directories(dir);
    mounted = ::mount("tmpfs", dir.c_str(), "tmpfs", 0, "size=4m") == 0;
  }
  ~SmallFs() {
    if (mounted) ::umount2(dir.c_str(), MNT_DETACH);
  }
  // Writes a file until the file system is full.
  void fill(const std::string& name) const {
    std::FILE* f = std::fopen((dir + "/" + name).c_str(), "wb");
    REQUIRE(f);
    std::vector<char> block(64 * 1024, 'x');
    while (std::fwrite(block.data(), 1, block.size(), f) == block.size()) {
    }
    std::fclose(f);
    // Fill the last partial block too: a small write must fail.
    std::FILE* g = std::fopen((dir + "/" + name + ".2").c_str(), "wb");
    if (g) {
      while (std::fputc('x', g) != EOF && std::fflush(g) == 0) {
      }
      std::fclose(g);
    }
  }
  void free_space(const std::string& name) const {
    fs::remove(dir + "/" + name);
    fs::remove(dir + "/" + name + ".2");
  }
};

void check_io_failure(const ProcResult& r, const std::string& file) {
  CAPTURE(r.err);
  CHECK(r.code == 4);
  CHECK(r.err.rfind("mtalab: error: ", 0) == 0);
  CHECK(std::count(r.err.begin(), r.err.end(), '\n') == 1);
  CHECK(r.err.find(file) != std::string::npos);
  CHECK(r.err.find("No space left on device") != std::string::npos);
}

// A disk that is full when the run starts, then one that fills up during it. `full_env`
// injects the failure instead where no file system could be mounted; `fs` is null then.
void full_disk(const TempDir& d, const std::string& root, const SmallFs* small) {
  const std::string out = root + "/r", args = "train --run.out " + out + " --quiet" + kRun;
  auto enospc = [&](const std::string& faults) {
    SpawnOptions o;
    if (!small) o.env.push_back("MTALAB_FAULT=" + faults);
    return o;
  };
  // Full at the start: one line, exit 4, and no empty run.h5 to block the next attempt.
  if (small) small->fill("filler");
  check_io_failure(run_mtalab(d.path, args + " --train.steps 5", enospc("enospc@log_write#1+")), out + "/run.h5");
  CHECK_FALSE(fs::exists(d / (out + "/run.h5")));
  if (small) small->free_space("filler");
  REQUIRE(run_mtalab(d.path, args + " --train.steps 5").code == 0);

  // Full in the middle of a run: the rows and checkpoint written before are intact.
  const std::string mid = root + "/m", margs = "train --run.out " + mid + kRun;
  SpawnOptions o = enospc("enospc@log_write#15+,enospc@ckpt_write#7+");
  Child c(d.path, split_words(margs + " --train.steps 100000"), o);
  if (small) {
    REQUIRE(c.wait_for_output(printed("step 12/")));
    small->fill("filler");
  }
  const ProcResult r = c.wait();
  CAPTURE(r.err);
  CHECK(r.code == 4);
  CHECK(r.err.find("No space left on device") != std::string::npos);
  CHECK(r.err.find(mid + "/") != std::string::npos);
  CHECK(r.err.find("the log on disk holds every row up to step") != std::string::npos);
  check_whole(d / mid);
  RunLog log = RunLog::open_read(d / (mid + "/run.h5"));
  const auto losses = log.column("train", "loss");
  REQUIRE(losses.size() >= 10);
  for (double l : losses) CHECK(l > 0);  // no phantom zero row
  const int64_t saved = load_checkpoint(d / (mid + "/checkpoint.h5")).ints.at("step");
  CHECK(saved >= 9);
  CHECK(r.err.find(mid + "/checkpoint.h5 holds step " + std::to_string(saved)) != std::string::npos);
  // Space is back: --resume continues, and the run is the one it would have been.
  if (small) small->free_space("filler");
  const std::string steps = " --train.steps " + std::to_string(saved + 6);
  REQUIRE(run_mtalab(d.path, margs + " --quiet --resume" + steps).code == 0);
  REQUIRE(run_mtalab(d.path, "train --run.out " + root + "/straight --quiet" + kRun + steps).code == 0);
  check_same(results_of(d / (root + "/straight")), results_of(d / mid));
}

}  // namespace

TEST_CASE("faults: a full file system: exit 4 naming the file, earlier rows and checkpoint intact, --resume after") {
  TempDir d("faults_full");
  SUBCASE("injected write failures") { full_disk(d, "inj", nullptr); }
  SUBCASE("a small tmpfs, where this process may mount one") {
    SmallFs small(d / "tmpfs");
    if (!small.mounted) {
      MESSAGE("cannot mount a tmpfs here (" << std::strerror(errno) << "): covered by the injected failures");
      return;
    }
    full_disk(d, "tmpfs", &small);
  }
}
