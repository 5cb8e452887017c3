// Data-parallel training over MPI (experiments/dist), against the real `mpirun` and the
// real binary: N ranks give the bits of one process with N times the gradient
// accumulation, runs repeat bitwise, checkpoints move between world sizes, a dead or hung
// rank stops the other, a signal stops every rank with a checkpoint, and ranks started
// differently refuse to run. Tiny models: each run takes well under a second of compute;
// most of the time is mpirun starting (~0.5-1.5 s per launch).
#include <doctest/doctest.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <string>
#include <thread>

#include "experiments/run/checkpoint_file.h"
#include "experiments/run/run_log.h"

namespace fs = std::filesystem;
using mtalab::CheckpointData;
using mtalab::CheckpointTensor;
using mtalab::RunLog;

namespace {

const std::string kBin = std::string(MTALAB_BINARY_DIR) + "/mtalab";

// Runs as root in CI; two ranks on two (shared) cores; shared memory only.
const std::string kMpirun = "mpirun -np 2 --oversubscribe --mca btl self,vader ";

struct Env {
  Env() {
    setenv("OMPI_ALLOW_RUN_AS_ROOT", "1", 1);
    setenv("OMPI_ALLOW_RUN_AS_ROOT_CONFIRM", "1", 1);
    unsetenv("MTALAB_FAULT");
  }
} env_once;

// Tiny find_block model with dropout on, one thread per rank, a row and a parameter-hash
// check between ranks at every step.
const std::string kTinyModel =
    " --model.d_model 16 --model.n_layers 1 --model.n_heads 2 --task.total_len 24 --task.block_len 3"
    " --task.query_len 2 --task.n_test 8 --train.batch_size 4 --train.eval_batch_size 8 --train.log_every 1"
    " --model.dropout 0.1 --train.threads 1 --quiet";
const std::string kTiny = kTinyModel + " --train.eval_every 3";
const std::string kMta =
    " --model.attention mta --mta.kq_layers all --mta.cq 2 --mta.ck 3 --mta.cq_post 2 --mta.ck_post 3";

struct Run {
  int code = -1;
  double seconds = 0;
  std::string out;  // stdout and stderr together
};

std::string slurp(const fs::path& p) {
  std::ifstream in(p);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

// `cmd` through /bin/sh in `dir`, with a hard limit so a hang fails the test instead of CI.
Run sh(const fs::path& dir, const std::string& cmd, int limit_s = 120) {
  const fs::path log = dir / "sh.out";
  const std::string full = "cd '" + dir.string() + "' && timeout -s KILL " + std::to_string(limit_s) + " sh -c '" +
                           cmd + "' >'" + log.string() + "' 2>&1";
  const auto t0 = std::chrono::steady_clock::now();
  const int st = std::system(full.c_str());
  Run r;
  r.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  r.code = WIFEXITED(st) ? WEXITSTATUS(st) : -1;
  r.out = slurp(log);
  return r;
}

fs::path scratch(const std::string& name) {
  const fs::path d = fs::temp_directory_path() / ("mtalab_mpi_" + name + "_" + std::to_string(getpid()));
  fs::remove_all(d);
  fs::create_directories(d);
  return d;
}

bool same_bits(const CheckpointTensor& a, const CheckpointTensor& b) {
  if (a.shape != b.shape || a.values.index() != b.values.index()) return false;
  return std::visit(
      [&](const auto& va) {
        const auto& vb = std::get<std::decay_t<decltype(va)>>(b.values);
        return va.size() == vb.size() && std::memcmp(va.data(), vb.data(), va.size() * sizeof va[0]) == 0;
      },
      a.values);
}

// Parameters, optimizer state, step, dropout stream and data position: bit for bit.
void same_state(const fs::path& a, const fs::path& b) {
  INFO(a.string() << " vs " << b.string());
  const CheckpointData x = mtalab::load_checkpoint(a.string()), y = mtalab::load_checkpoint(b.string());
  REQUIRE(x.params.size() == y.params.size());
  REQUIRE(x.optim.size() == y.optim.size());
  for (auto& [n, t] : x.params) {
    INFO("parameter " << n);
    REQUIRE(y.params.count(n));
    CHECK(same_bits(t, y.params.at(n)));
  }
  for (auto& [n, t] : x.optim) {
    INFO("optimizer state " << n);
    REQUIRE(y.optim.count(n));
    CHECK(same_bits(t, y.optim.at(n)));
  }
  for (const char* k : {"step", "optimizer.steps", "rng.seed", "rng.counter"}) {
    INFO(std::string(k));
    CHECK(x.ints.at(k) == y.ints.at(k));
  }
  for (auto& [k, v] : x.ints)
    if (k.rfind("data.", 0) == 0) {
      INFO(std::string(k));
      CHECK(y.ints.at(k) == v);
    }
}

void same_column(const fs::path& a, const fs::path& b, const char* table, const char* col) {
  const auto x = RunLog::open_read(a.string()).column(table, col), y = RunLog::open_read(b.string()).column(table, col);
  INFO(table << "/" << col);
  REQUIRE(x.size() == y.size());
  CHECK(std::memcmp(x.data(), y.data(), x.size() * sizeof(double)) == 0);
}

int64_t ckpt_step(const fs::path& p) { return mtalab::load_checkpoint(p.string()).ints.at("step"); }

// Softmax and MTA, float32 and float64, grad_accum 1 and 2 per rank (2 ranks).
struct Config {
  const char* name;
  std::string opts;
  int accum;  // per rank
};
const Config kConfigs[] = {
    {"softmax_f32", "", 1},
    {"softmax_f64_accum2", " --model.dtype float64", 2},
    {"mta_f32", kMta, 1},
    {"mta_f64_accum2", kMta + " --model.dtype float64", 2},
};

}  // namespace

TEST_CASE("ranks_equal_one_process") {
  const fs::path d = scratch("equal");
  for (const Config& c : kConfigs) {
    INFO(std::string(c.name));
    const std::string base = kTiny + c.opts + " --train.steps 4 ";
    const std::string one = std::string(c.name) + "_one", two = std::string(c.name) + "_two";
    Run r1 = sh(d, kBin + " train" + base + "--train.grad_accum " + std::to_string(2 * c.accum) + " --run.out " + one);
    REQUIRE_MESSAGE(r1.code == 0, r1.out);
    Run r2 = sh(d, kMpirun + kBin + " train" + base + "--train.grad_accum " + std::to_string(c.accum) + " --run.out " + two);
    REQUIRE_MESSAGE(r2.code == 0, r2.out);
    same_state(d / one / "checkpoint.h5", d / two / "checkpoint.h5");
    same_column(d / one / "run.h5", d / two / "run.h5", "train", "loss");
    same_column(d / one / "run.h5", d / two / "run.h5", "train", "grad_norm");
    same_column(d / one / "run.h5", d / two / "run.h5", "eval", "loss");
    const RunLog log = RunLog::open_read((d / two / "run.h5").string());
    CHECK(log.attr_int("world_size") == 2);
    CHECK(log.attr_int("global_batch_size") == 4 * 2 * c.accum);
    CHECK(log.attr_int("dist_replica_checks") == 4);  // every rank's parameters hashed equal after every step
    CHECK(RunLog::open_read((d / one / "run.h5").string()).attr_int("world_size") == 1);
  }
  // Four ranks (oversubscribed): with two, a+b = b+a hides the order of the sum; with four,
  // MPI_Allreduce differs from the rank-order sum in ~30% of elements (bench/allreduce_order.c).
  Run four = sh(d, "mpirun -np 4 --oversubscribe --mca btl self,vader " + kBin + " train" + kTiny +
                       " --model.dtype float64 --train.steps 4 --run.out four");
  REQUIRE_MESSAGE(four.code == 0, four.out);
  Run one4 = sh(d, kBin + " train" + kTiny + " --model.dtype float64 --train.steps 4 --train.grad_accum 4 --run.out one4");
  REQUIRE_MESSAGE(one4.code == 0, one4.out);
  same_state(d / "one4/checkpoint.h5", d / "four/checkpoint.h5");
  same_column(d / "one4/run.h5", d / "four/run.h5", "train", "loss");
  // The same two-rank run again: the same bits.
  Run again = sh(d, kMpirun + kBin + " train" + kTiny + kMta + " --train.steps 4 --run.out again");
  REQUIRE_MESSAGE(again.code == 0, again.out);
  same_state(d / "mta_f32_two" / "checkpoint.h5", d / "again" / "checkpoint.h5");
  same_column(d / "mta_f32_two" / "run.h5", d / "again" / "run.h5", "train", "loss");
  fs::remove_all(d);
}

// 4 ranks with `extra` against one process with grad_accum 4 (float64, 3 steps): the same
// bits. Returns the 4-rank run log's gradient_sum attribute.
std::string four_ranks_equal_one(const fs::path& d, const std::string& extra) {
  INFO(extra);
  fs::remove_all(d / "four");
  fs::remove_all(d / "one4");
  Run four = sh(d, "mpirun -np 4 --oversubscribe --mca btl self,vader " + kBin + " train" + kTiny +
                       " --model.dtype float64 --train.steps 3 --run.out four" + extra);
  REQUIRE_MESSAGE(four.code == 0, four.out);
  Run one4 = sh(d, kBin + " train" + kTiny + " --model.dtype float64 --train.steps 3 --train.grad_accum 4 --run.out one4");
  REQUIRE_MESSAGE(one4.code == 0, one4.out);
  same_state(d / "one4/checkpoint.h5", d / "four/checkpoint.h5");
  return RunLog::open_read((d / "four/run.h5").string()).attr_string("gradient_sum");
}

// Each bad value of `option`: one line naming the option, exit 2 on 2 ranks, nothing written.
void refused(const fs::path& d, const std::string& option, std::initializer_list<const char*> bad) {
  for (const char* v : bad) {
    Run r = sh(d, kMpirun + kBin + " train" + kTiny + " --train.steps 2 --" + option + " " + v + " --run.out bad");
    INFO(r.out);
    CHECK(r.code == 2);
    CHECK(r.out.find(option) != std::string::npos);
    CHECK(!fs::exists(d / "bad"));
  }
}

// The gradient sum per bucket, overlapped with backward (dist/bucketed_sum.h): many small
// buckets (about one per parameter), one bucket, and no overlap all give one process's bits.
TEST_CASE("buckets_equal_one_process") {
  const fs::path d = scratch("buckets");
  const char* ways[] = {" --train.bucket_mb 0.0005", " --train.bucket_mb 1000", " --train.overlap_reduce false"};
  for (const Config& c : kConfigs) {
    const std::string base = kTiny + c.opts + " --train.steps 3 ";
    const std::string one = std::string(c.name) + "_one";
    Run r1 = sh(d, kBin + " train" + base + "--train.grad_accum " + std::to_string(2 * c.accum) + " --run.out " + one);
    REQUIRE_MESSAGE(r1.code == 0, r1.out);
    for (int w = 0; w < 3; ++w) {
      INFO(c.name << ways[w]);
      const std::string two = std::string(c.name) + "_two" + std::to_string(w);
      Run r2 = sh(d, kMpirun + kBin + " train" + base + ways[w] + " --train.grad_accum " + std::to_string(c.accum) +
                         " --run.out " + two);
      REQUIRE_MESSAGE(r2.code == 0, r2.out);
      same_state(d / one / "checkpoint.h5", d / two / "checkpoint.h5");
      same_column(d / one / "run.h5", d / two / "run.h5", "train", "loss");
      same_column(d / one / "run.h5", d / two / "run.h5", "train", "grad_norm");
      const std::string how = RunLog::open_read((d / two / "run.h5").string()).attr_string("gradient_sum");
      if (w == 0) CHECK(how.find("overlapped with backward") != std::string::npos);
      if (w == 0) CHECK(how.find(" 1 buckets") == std::string::npos);  // several buckets
      if (w == 1) CHECK(how.find(" 1 buckets") != std::string::npos);
      if (w == 2) CHECK(how.find("one exchange after backward") != std::string::npos);
    }
  }
  // Four ranks, small buckets: the chain's order holds per bucket.
  four_ranks_equal_one(d, " --train.bucket_mb 0.0005");
  refused(d, "train.bucket_mb", {"0", "-1"});  // a bucket size of zero or less
  fs::remove_all(d);
}

// ZeRO-1 (dist/zero_shard.h): the optimizer state sharded over 2 ranks gives one process's
// bits, and its checkpoints hold the whole state: 2 sharded ranks -> 1 process -> 2 sharded
// ranks continues as the uninterrupted run.
TEST_CASE("zero_equals_unsharded") {
  const fs::path d = scratch("zero");
  const std::string configs[] = {"", kMta + " --model.dtype float64"};
  int c = 0;
  for (const std::string& opts : configs) {
    INFO("config " << c);
    const std::string base = kTiny + opts + " --train.steps 3 ";
    const std::string one = "one" + std::to_string(c), two = "zero" + std::to_string(c);
    Run r1 = sh(d, kBin + " train" + base + "--train.grad_accum 4 --run.out " + one);
    REQUIRE_MESSAGE(r1.code == 0, r1.out);
    Run r2 = sh(d, kMpirun + kBin + " train" + base + "--train.grad_accum 2 --train.zero 1 --run.out " + two);
    REQUIRE_MESSAGE(r2.code == 0, r2.out);
    same_state(d / one / "checkpoint.h5", d / two / "checkpoint.h5");
    same_column(d / one / "run.h5", d / two / "run.h5", "train", "loss");
    same_column(d / one / "run.h5", d / two / "run.h5", "train", "grad_norm");
    CHECK(RunLog::open_read((d / two / "run.h5").string()).attr_int("zero_stage") == 1);
    ++c;
  }
  // Four sharded ranks, small buckets and none overlapped: the totals reach their owners.
  for (const char* way : {" --train.bucket_mb 0.0005", " --train.overlap_reduce false"})
    CHECK(four_ranks_equal_one(d, std::string(" --train.zero 1") + way).find("ZeRO-1") != std::string::npos);
  // 2 sharded ranks to step 3, one process to 6, 2 sharded ranks to 9: as one process to 9.
  const std::string base = kTiny + " --train.checkpoint_every 3 ";
  Run ref = sh(d, kBin + " train" + base + "--train.steps 9 --train.grad_accum 2 --run.out ref");
  REQUIRE_MESSAGE(ref.code == 0, ref.out);
  Run a = sh(d, kMpirun + kBin + " train" + base + "--train.steps 3 --train.zero 1 --run.out moved");
  REQUIRE_MESSAGE(a.code == 0, a.out);
  Run b = sh(d, kBin + " train --resume --run.out moved --train.steps 6 --train.grad_accum 2 --train.zero 0 --quiet");
  REQUIRE_MESSAGE(b.code == 0, b.out);
  Run e = sh(d, kMpirun + kBin + " train --resume --run.out moved --train.steps 9 --train.grad_accum 1 --train.zero 1 --quiet");
  REQUIRE_MESSAGE(e.code == 0, e.out);
  same_state(d / "ref/checkpoint.h5", d / "moved/checkpoint.h5");
  same_column(d / "ref/run.h5", d / "moved/run.h5", "train", "loss");
  refused(d, "train.zero", {"2", "-1"});  // not 0 or 1
  fs::remove_all(d);
}

TEST_CASE("checkpoint_moves_between_world_sizes") {
  const fs::path d = scratch("worlds");
  const std::string base = kTiny + " --train.checkpoint_every 3 ";
  Run ref = sh(d, kBin + " train" + base + "--train.steps 6 --train.grad_accum 2 --run.out ref");
  REQUIRE_MESSAGE(ref.code == 0, ref.out);
  // 2 ranks for 3 steps, then one process (grad_accum 2: the same global batch) to 6.
  Run a = sh(d, kMpirun + kBin + " train" + base + "--train.steps 3 --run.out two_then_one");
  REQUIRE_MESSAGE(a.code == 0, a.out);
  Run a2 = sh(d, kBin + " train --resume --run.out two_then_one --train.steps 6 --train.grad_accum 2 --quiet");
  REQUIRE_MESSAGE(a2.code == 0, a2.out);
  same_state(d / "ref/checkpoint.h5", d / "two_then_one/checkpoint.h5");
  same_column(d / "ref/run.h5", d / "two_then_one/run.h5", "train", "loss");
  CHECK(RunLog::open_read((d / "two_then_one/run.h5").string()).attr_int("world_size") == 1);
  // One process for 3 steps, then 2 ranks (grad_accum 1 each) to 6.
  Run b = sh(d, kBin + " train" + base + "--train.steps 3 --train.grad_accum 2 --run.out one_then_two");
  REQUIRE_MESSAGE(b.code == 0, b.out);
  Run b2 = sh(d, kMpirun + kBin + " train --resume --run.out one_then_two --train.steps 6 --train.grad_accum 1 --quiet");
  REQUIRE_MESSAGE(b2.code == 0, b2.out);
  same_state(d / "ref/checkpoint.h5", d / "one_then_two/checkpoint.h5");
  same_column(d / "ref/run.h5", d / "one_then_two/run.h5", "train", "loss");
  const RunLog log = RunLog::open_read((d / "one_then_two/run.h5").string());
  CHECK(log.attr_int("world_size") == 2);
  CHECK(log.attr_int("global_batch_size") == 8);
  fs::remove_all(d);
}

TEST_CASE("killed_rank_stops_the_other") {
  const fs::path d = scratch("killed");
  const std::string base = kTiny + " --train.steps 8 --train.checkpoint_every 2 --train.dist_timeout 5 ";
  Run ref = sh(d, kBin + " train" + base + "--train.grad_accum 2 --run.out ref");
  REQUIRE_MESSAGE(ref.code == 0, ref.out);
  // Rank 1 is SIGKILLed as its 5th step starts; rank 0 is waiting for step 5's sum.
  Run k = sh(d, "mpirun --oversubscribe --mca btl self,vader -np 1 " + kBin + " train" + base +
                    "--run.out r : -np 1 env MTALAB_FAULT=kill@train_step#5 " + kBin + " train" + base + "--run.out r");
  CHECK_MESSAGE(k.code != 0, k.out);
  MESSAGE("the job with a killed rank ended after " << k.seconds << " s");
  CHECK_MESSAGE(k.seconds < 30, "stopped after " << k.seconds << " s (timeout 5 s): " << k.out);
  REQUIRE(ckpt_step(d / "r/checkpoint.h5") == 4);  // the last good checkpoint loads
  Run res = sh(d, kMpirun + kBin + " train --resume --run.out r --quiet");
  REQUIRE_MESSAGE(res.code == 0, res.out);
  same_state(d / "ref/checkpoint.h5", d / "r/checkpoint.h5");
  same_column(d / "ref/run.h5", d / "r/run.h5", "train", "loss");
  fs::remove_all(d);
}

TEST_CASE("hung_rank_times_out") {
  const fs::path d = scratch("hung");
  const std::string base = kTiny + " --train.steps 8 --train.checkpoint_every 2 --train.dist_timeout 2 --run.out r";
  // Rank 1 stops answering (sleeps) as its 3rd step starts: rank 0's exchange times out.
  Run h = sh(d, "mpirun --oversubscribe --mca btl self,vader -np 1 " + kBin + " train" + base +
                    " : -np 1 env MTALAB_FAULT=stall@train_step#3 " + kBin + " train" + base);
  CHECK(h.code != 0);
  MESSAGE("the job with a hung rank ended after " << h.seconds << " s");
  CHECK_MESSAGE(h.seconds < 20, "stopped after " << h.seconds << " s (timeout 2 s): " << h.out);
  CHECK_MESSAGE(h.out.find("rank 0: no ") != std::string::npos, h.out);
  CHECK_MESSAGE(h.out.find("rank 1 within 2 s while exchanging the gradient sum of step 3") != std::string::npos, h.out);
  CHECK_MESSAGE(h.out.find("holds step 2") != std::string::npos, h.out);
  CHECK(ckpt_step(d / "r/checkpoint.h5") == 2);
  fs::remove_all(d);
}

TEST_CASE("signal_stops_every_rank_with_a_checkpoint") {
  const fs::path d = scratch("signal");
  const std::string base = kTinyModel + " --train.steps 40 --train.eval_every 100 ";
  Run ref = sh(d, kBin + " train" + base + "--train.grad_accum 2 --run.out ref");
  REQUIRE_MESSAGE(ref.code == 0, ref.out);
  // From its 4th step each rank pauses 0.5 s per step: the signal comes mid-run (40 steps
  // take ~20 s). mpirun (Open MPI 4.1.4) passed SIGTERM on to every rank about
  // odls_base_sigkill_timeout seconds after it got it (measured here), SIGKILL later.
  // SIGTERM is what Slurm's scancel and time limits send. (A SIGINT sent to mpirun's pid
  // alone was not passed on by Open MPI 4.1.4 here; Ctrl-C in a terminal reaches every
  // process of the foreground group directly.)
  const std::string cmd = "exec mpirun -np 2 --oversubscribe --mca btl self,vader --mca odls_base_sigkill_timeout 5 "
                          "-x MTALAB_FAULT=pause@train_step#4+ " + kBin + " train" + base + "--run.out r >'" +
                          (d / "mpirun.out").string() + "' 2>&1";
  const pid_t pid = fork();
  REQUIRE(pid >= 0);
  if (pid == 0) {
    // A background job of a non-interactive shell (ctest's, CI's) inherits SIGINT ignored,
    // and so would mpirun: give it the default back.
    signal(SIGINT, SIG_DFL);
    if (chdir(d.c_str()) != 0) _exit(127);
    execl("/bin/sh", "sh", "-c", cmd.c_str(), (char*)nullptr);
    _exit(127);
  }
  const auto t0 = std::chrono::steady_clock::now();
  while (!fs::exists(d / "r/run.h5") && std::chrono::steady_clock::now() - t0 < std::chrono::seconds(30))
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
  std::this_thread::sleep_for(std::chrono::milliseconds(2500));  // in the paused steps
  kill(pid, SIGTERM);
  int st = 0;
  pid_t w = 0;
  const auto t1 = std::chrono::steady_clock::now();
  while ((w = waitpid(pid, &st, WNOHANG)) == 0 && std::chrono::steady_clock::now() - t1 < std::chrono::seconds(40))
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
  if (w == 0) {
    kill(pid, SIGKILL);
    waitpid(pid, &st, 0);
    FAIL("mpirun did not stop within 40 s of SIGTERM: " << slurp(d / "mpirun.out"));
  }
  const std::string out = slurp(d / "mpirun.out");
  INFO(out);
  const RunLog log = RunLog::open_read((d / "r/run.h5").string());
  CHECK(log.attr_string("status") == "interrupted");
  const int64_t at = log.attr_int("status_step");
  CHECK(at > 3);
  CHECK(at < 40);
  CHECK(ckpt_step(d / "r/checkpoint.h5") == at);
  CHECK(out.find("stopping after the current step") != std::string::npos);
  Run res = sh(d, kMpirun + kBin + " train --resume --run.out r --quiet");
  REQUIRE_MESSAGE(res.code == 0, res.out);
  same_state(d / "ref/checkpoint.h5", d / "r/checkpoint.h5");
  same_column(d / "ref/run.h5", d / "r/run.h5", "train", "loss");
  fs::remove_all(d);
}

TEST_CASE("ranks_started_differently_refuse") {
  const fs::path d = scratch("mismatch");
  // Each rank records its own exit code (the shell is the process mpirun watches).
  auto rank = [&](const std::string& lr) {
    return "-np 1 sh -c \"" + kBin + " train" + kTiny + " --train.steps 2 --run.out r --train.lr " + lr +
           "; echo \\$? > rc.\\$OMPI_COMM_WORLD_RANK\"";
  };
  Run m = sh(d, "mpirun --oversubscribe --mca btl self,vader " + rank("0.001") + " : " + rank("0.002"));
  INFO(m.out);
  CHECK(slurp(d / "rc.0") == "2\n");
  CHECK(slurp(d / "rc.1") == "2\n");
  const std::string expected =
      "rank 1 was started differently from rank 0: option --train.lr is '0.002' there and '0.001' on rank 0";
  size_t count = 0;
  for (size_t at = m.out.find(expected); at != std::string::npos; at = m.out.find(expected, at + 1)) ++count;
  CHECK(count == 2);  // one line from each rank
  CHECK(!fs::exists(d / "r"));

  // The same options, but the data file the same path names differs (each rank in its own
  // directory): caught by its contents.
  for (const char* w : {"a", "b"}) {
    fs::create_directories(d / w);
    std::ofstream(d / w / "corpus.txt") << std::string(4000, w[0] == 'a' ? 'x' : 'y') << "\n";
  }
  auto text_rank = [&](const char* w) {
    return "-np 1 -wdir " + (d / w).string() + " sh -c \"" + kBin + " train --data.task text --data.path corpus.txt" +
           " --data.seq_len 16 --model.d_model 16 --model.n_layers 1 --model.n_heads 2 --train.batch_size 2" +
           " --train.steps 2 --quiet --run.out " + (d / "t").string() + "; echo \\$? > rc\"";
  };
  Run t = sh(d, "mpirun --oversubscribe --mca btl self,vader " + text_rank("a") + " : " + text_rank("b"));
  INFO(t.out);
  CHECK(slurp(d / "a/rc") == "2\n");
  CHECK(slurp(d / "b/rc") == "2\n");
  CHECK(t.out.find("rank 1 was started differently from rank 0: contents of corpus.txt is '") != std::string::npos);
  CHECK(!fs::exists(d / "t"));
  fs::remove_all(d);
}
