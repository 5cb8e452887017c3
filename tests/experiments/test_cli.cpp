// The `mtalab` command line as a user meets it: a child process per case, checking exit
// codes, the one-line messages, and that files which must not change did not.
#include <doctest/doctest.h>

#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <thread>

#include "experiments/run/run_log.h"
#include "test_util.h"

namespace fs = std::filesystem;
using mtalab::RunLog;

namespace {

const std::string kBin = std::string(MTALAB_BINARY_DIR) + "/mtalab";
// A model and task small enough that a run takes well under a second.
const std::string kTinyRest =
    " --model.n_layers 1 --model.n_heads 2 --task.total_len 24 --task.block_len 3"
    " --task.query_len 2 --task.n_test 8 --train.batch_size 4 --train.eval_batch_size 8 --quiet";
const std::string kTiny = " --model.d_model 16" + kTinyRest;

struct Result {
  int code;
  std::string out, err;
};

const auto slurp = mtalab::testing::bytes_of;

// A temporary working directory to run mtalab in.
struct Sandbox : mtalab::testing::TempDir {
  const fs::path& dir = path;
  explicit Sandbox(const std::string& name) : TempDir("cli_" + name) {}
  Result run(const std::string& args) const {
    const std::string out = (dir / "stdout").string(), err = (dir / "stderr").string();
    const std::string cmd = "cd '" + dir.string() + "' && OMP_NUM_THREADS=1 '" + kBin + "' " + args + " >'" + out +
                            "' 2>'" + err + "'";
    const int st = std::system(cmd.c_str());
    return {WIFEXITED(st) ? WEXITSTATUS(st) : -1, slurp(out), slurp(err)};
  }
};

void check_bad(const Result& r, const std::string& needle) {
  CAPTURE(r.err);
  CHECK(r.code == 2);
  CHECK(r.err.find(needle) != std::string::npos);
  CHECK(r.err.rfind("mtalab: error: ", 0) == 0);
  CHECK(std::count(r.err.begin(), r.err.end(), '\n') == 1);  // one line
}

}  // namespace

TEST_CASE("cli: help lists every option with its default, the variants' included") {
  Sandbox s("help");
  Result r = s.run("train --help");
  CHECK(r.code == 0);
  for (auto needle : {"--train.steps", "(default 1000)", "--model.attention", "--mta.cq", "(default 6)",
                      "--temperature.init", "--resume", "--init-from", "--overwrite", "--config"})
    CHECK(r.out.find(needle) != std::string::npos);
  Result v = s.run("variants");
  CHECK(v.code == 0);
  CHECK(v.out.find("talking_heads") != std::string::npos);
}

TEST_CASE("cli: bad options exit 2 with one line naming what was wrong and what was expected") {
  Sandbox s("badopts");
  check_bad(s.run("train --train.stepz 3"), "train.stepz");
  check_bad(s.run("train --train.step 3"), "train.step");  // no prefix guessing
  check_bad(s.run("train --model.attention nope"), "unknown attention variant 'nope' (expected one of:");
  check_bad(s.run("train --train.steps -3"), "--train.steps: -3 is out of range, expected an integer in [1,");
  check_bad(s.run("train --train.steps -3"), "expected an integer in [1, 1099511627776]");
  check_bad(s.run("train --train.lr fast"), "--train.lr: 'fast' is not a number");
  check_bad(s.run("train --model.dtype float16"), "not one of float32|float64");
  check_bad(s.run("train --mta.cq 3"), "option --mta.cq belongs to attention variant 'mta', but --model.attention is 'softmax'");
  check_bad(s.run("train --model.attention mta --mta.pad both --mta.ck 10"), "--mta.pad=both needs an odd key kernel size");
  check_bad(s.run("train --model.d_model 30 --model.n_heads 4"), "--model.d_model=30 is not divisible by --model.n_heads=4");
  check_bad(s.run("frobnicate"), "unknown command 'frobnicate'");
  CHECK_FALSE(fs::exists(s / "runs"));  // nothing was written
}

TEST_CASE("cli: bad data exits 2 naming the file") {
  Sandbox s("baddata");
  check_bad(s.run("train --data.task text --data.path missing.txt --run.out r"), "missing.txt");
  std::ofstream(s / "empty.txt").close();
  check_bad(s.run("train --data.task text --data.path empty.txt --run.out r"), "empty.txt");
  std::ofstream(s / "short.txt") << "just a few bytes";
  check_bad(s.run("train --data.task text --data.path short.txt --data.seq_len 64 --run.out r"), "short.txt");
  CHECK_FALSE(fs::exists(s / "r"));
}

TEST_CASE("cli: config file with sections, the command line overriding it") {
  Sandbox s("config");
  std::ofstream(s / "exp.ini") << "[train]\nsteps = 3\nlr = 0.01\n[model]\nattention = mta\n[mta]\nkq_layers = all\ncq = 2\nck = 3\n";
  Result r = s.run("train --config exp.ini --train.lr 0.02 --run.out r" + kTiny);
  REQUIRE(r.code == 0);
  RunLog log = RunLog::open_read(s / "r/run.h5");
  CHECK(log.attr_string("train.steps") == "3");   // from the file
  CHECK(log.attr_string("train.lr") == "0.02");   // the command line wins
  CHECK(log.attr_string("mta.cq") == "2");
  CHECK(log.attr_string("mta.ck_post") == "11");  // a default, recorded too
  CHECK(log.steps("train").back() == 3);
  std::ofstream(s / "bad.ini") << "[train]\nsteps = 3\nwarp = 9\n";
  check_bad(s.run("train --config bad.ini --run.out r2"), "bad.ini");
  check_bad(s.run("train --config nothere.ini"), "config file 'nothere.ini' cannot be opened");
}

TEST_CASE("cli: an existing run log is never overwritten without --overwrite") {
  Sandbox s("nooverwrite");
  REQUIRE(s.run("train --train.steps 2 --run.out r" + kTiny).code == 0);
  const std::string before = slurp(s / "r/run.h5"), ck = slurp(s / "r/checkpoint.h5");
  check_bad(s.run("train --train.steps 2 --run.out r" + kTiny), "already exists (use --overwrite to replace the run");
  CHECK(slurp(s / "r/run.h5") == before);
  CHECK(slurp(s / "r/checkpoint.h5") == ck);
  CHECK(s.run("train --train.steps 2 --run.out r --overwrite" + kTiny).code == 0);
}

TEST_CASE("cli: corrupt and mismatched checkpoints exit 2 naming the parameter and both shapes") {
  Sandbox s("ckpt");
  REQUIRE(s.run("train --train.steps 1 --run.out small" + kTiny).code == 0);
  {
    std::ofstream f(s / "junk.h5", std::ios::binary);
    for (int i = 0; i < 4096; ++i) f.put((char)(i * 131 % 251));
  }
  check_bad(s.run("train --train.steps 1 --run.out a --init-from junk.h5" + kTiny), "junk.h5");
  check_bad(s.run("train --train.steps 1 --run.out b --init-from small/checkpoint.h5 --model.d_model 32" + kTinyRest),
            "'tok_embeddings.weight' has shape [256, 16], the model expects [256, 32]");
  check_bad(s.run("eval --checkpoint junk.h5"), "junk.h5");
  CHECK_FALSE(fs::exists(s / "a"));
  CHECK_FALSE(fs::exists(s / "b"));
  Result ok = s.run("train --train.steps 1 --run.out c --init-from small/checkpoint.h5" + kTiny);
  CHECK(ok.code == 0);
  Result ev = s.run("eval --checkpoint small/checkpoint.h5");
  CHECK(ev.code == 0);
  CHECK(ev.out.find("error_rate") != std::string::npos);
}

TEST_CASE("cli: --no-shuffle is data.shuffle=false") {
  Sandbox s("noshuffle");
  std::string text;
  for (int i = 0; i < 200; ++i) text += "some text to train on. ";
  std::ofstream(s / "t.txt") << text;
  // Text data: the task.* options of kTiny would have no effect (and be refused).
  const std::string text_model = " --model.d_model 16 --model.n_layers 1 --train.batch_size 4 --quiet";
  REQUIRE(s.run("train --data.task text --data.path t.txt --data.seq_len 16 --train.steps 1 --no-shuffle --run.out r" +
                text_model).code == 0);
  CHECK(RunLog::open_read(s / "r/run.h5").attr_string("data.shuffle") == "false");
  check_bad(s.run("train --data.task text --data.path t.txt --no-shuffle --data.shuffle true --run.out q" + text_model),
            "--no-shuffle contradicts");
  check_bad(s.run("train --no-shuffle --run.out q" + kTiny), "option --data.shuffle has no effect");
}

TEST_CASE("cli: a run killed with SIGKILL leaves a log that reads back with its rows, SIGINT stops cleanly") {
  Sandbox s("kill");
  for (int sig : {SIGKILL, SIGINT}) {
    CAPTURE(sig);
    const std::string out = s / ("out" + std::to_string(sig)), run = "r" + std::to_string(sig);
    std::fflush(stdout);  // the child must not inherit (and re-emit) our buffered output
    std::fflush(stderr);
    pid_t pid = fork();
    REQUIRE(pid >= 0);
    if (pid == 0) {
      if (chdir(s.dir.c_str()) != 0) _exit(99);
      FILE* f = freopen(out.c_str(), "w", stdout);
      (void)f;
      setenv("OMP_NUM_THREADS", "1", 1);
      execl(kBin.c_str(), "mtalab", "train", "--train.steps", "100000", "--train.log_every", "1", "--run.out",
            run.c_str(), "--model.d_model", "16", "--model.n_layers", "1", "--model.n_heads", "2", "--task.total_len",
            "24", "--task.block_len", "3", "--task.query_len", "2", "--task.n_test", "8", "--train.batch_size", "4",
            (char*)nullptr);
      _exit(98);
    }
    // Wait until the run has logged a few steps.
    for (int i = 0; i < 600 && slurp(out).find("step 5/") == std::string::npos; ++i)
      std::this_thread::sleep_for(std::chrono::milliseconds(50));
    REQUIRE(slurp(out).find("step 5/") != std::string::npos);
    kill(pid, sig);
    int st = 0;
    waitpid(pid, &st, 0);
    RunLog log = RunLog::open_read(s / (run + "/run.h5"));
    auto steps = log.steps("train");
    CHECK(steps.size() >= 5);
    for (size_t i = 0; i < steps.size(); ++i) CHECK(steps[i] == (int64_t)i + 1);
    if (sig == SIGINT) {
      CHECK(WIFEXITED(st));
      CHECK(WEXITSTATUS(st) == 130);
      CHECK(fs::exists(s / (run + "/checkpoint.h5")));
      CHECK(slurp(out).find("continue with --resume") != std::string::npos);
    } else {
      CHECK(WIFSIGNALED(st));
    }
  }
}
