// A sweep knows its runs by what they are (issue 19): an edited model option or another
// sweep file pointed at the same directory is refused, never averaged with the old runs; a
// stop signal in the window before a run installs its handlers interrupts it (never fails
// it); names that are no directory, and the minor silent acceptances of the sweep file and
// command line, are refused with one line and exit 2 before anything runs.
#include <doctest/doctest.h>

#include <sys/stat.h>

#include <cmath>
#include <filesystem>
#include <fstream>
#include <thread>

#include "experiments/commands/sweep.h"
#include "experiments/run/run_log.h"
#include "process_util.h"

using namespace mtalab;
using namespace mtalab::testing;
namespace fs = std::filesystem;

namespace {

// A model and task small enough that a run of a few steps takes well under a second.
const std::string kTiny =
    "[model]\nd_model = 16\nn_layers = 1\nn_heads = 2\n"
    "[task]\ntotal_len = 24\nblock_len = 3\nquery_len = 2\nn_test = 8\n"
    "[train]\nbatch_size = 4\neval_batch_size = 8\nsteps = 2\n";

struct Dir : TempDir {
  explicit Dir(const std::string& tag) : TempDir("sweepid_" + tag) {}
  ProcResult run(const std::string& args, const SpawnOptions& o = {}) const { return run_mtalab(path, args, o); }
};

std::map<std::string, std::string> manifest_status(const fs::path& out) {
  std::map<std::string, std::string> m;
  for (const auto& r : read_sweep_manifest(out.string())) m[r.name] = r.status;
  return m;
}

size_t lines_of(const std::string& s) { return (size_t)std::count(s.begin(), s.end(), '\n'); }

}  // namespace

TEST_CASE("sweep identity: an edited model option is refused naming the run, the option and both values") {
  Dir d("edited");
  d.write("s.ini", kTiny + "[sweep]\nout = out\nseeds = 1\n");
  const ProcResult first = d.run("sweep s.ini");
  CAPTURE(first.err);
  REQUIRE(first.code == 0);
  const std::string log = d.read("out/seed=0/run.h5"), ini = d.read("out/sweep.ini");

  // d_model 16 -> 24, one more seed: the old run must not become a member of this sweep.
  std::string edited = kTiny;
  edited.replace(edited.find("d_model = 16"), 12, "d_model = 24");
  d.write("s.ini", edited + "[sweep]\nout = out\nseeds = 2\n");
  for (const char* args : {"sweep s.ini", "sweep s.ini --dry-run"}) {
    const ProcResult r = d.run(args);
    CAPTURE(args);
    CAPTURE(r.out);
    CAPTURE(r.err);
    CHECK(r.code == 2);
    CHECK(r.err.find("belongs to another sweep") != std::string::npos);
    CHECK(r.err.find("model.d_model is 16 there, 24 here") != std::string::npos);
    CHECK(r.err.find("run 'seed=0'") != std::string::npos);
  }
  CHECK(d.read("out/seed=0/run.h5") == log);  // nothing run, nothing rewritten
  CHECK(d.read("out/sweep.ini") == ini);
  CHECK(!fs::exists(d.path / "out/seed=1"));

  // Without sweep.ini (deleted, or a directory from before it), the run's own log decides.
  fs::remove(d.path / "out/sweep.ini");
  const ProcResult by_log = d.run("sweep s.ini");
  CAPTURE(by_log.err);
  CHECK(by_log.code == 2);
  CHECK(by_log.err.find("run 'seed=0': model.d_model is 24 in the sweep, but") != std::string::npos);
  CHECK(by_log.err.find("was trained with 16 (it defines the model)") != std::string::npos);
  CHECK(d.read("out/seed=0/run.h5") == log);

  // Options that may change follow the resume rules: more steps extend the run, a new seed is added.
  d.write("s.ini", kTiny + "[sweep]\nout = out\nseeds = 2\n");
  const ProcResult grown = d.run("sweep s.ini --train.steps 3");
  CAPTURE(grown.out);
  CAPTURE(grown.err);
  CHECK(grown.code == 0);
  CHECK(grown.out.find("resume seed=0") != std::string::npos);
  CHECK(grown.out.find("start seed=1") != std::string::npos);
  CHECK(RunLog::open_read((d.path / "out/seed=0/run.h5").string()).finals().at("steps") == 3);
}

TEST_CASE("sweep identity: a second sweep file pointed at the same directory does not adopt its runs") {
  Dir d("second");
  d.write("a.ini", kTiny + "[sweep]\nout = out\ntrain.lr = 0.001, 0.002\n");
  REQUIRE(d.run("sweep a.ini").code == 0);
  const std::string manifest = d.read("out/sweep.tsv");
  // Another sweep: runs named by another axis.
  d.write("b.ini", kTiny + "[sweep]\nout = out\nmodel.n_heads = 1, 2\n");
  const ProcResult b = d.run("sweep b.ini");
  CAPTURE(b.err);
  CHECK(b.code == 2);
  CHECK(b.err.find("belongs to another sweep (a.ini") != std::string::npos);
  CHECK(b.err.find("named by train.lr there, by model.n_heads here") != std::string::npos);
  CHECK(d.read("out/sweep.tsv") == manifest);
  // Another sweep with the same names but another model.
  d.write("c.ini", kTiny + "[sweep]\nout = out\ntrain.lr = 0.001, 0.002\nmodel.n_layers = 2\n");
  const ProcResult c = d.run("sweep c.ini");
  CAPTURE(c.err);
  CHECK(c.code == 2);
  CHECK(c.err.find("model.n_layers is 1 there, 2 here") != std::string::npos);
  CHECK(d.read("out/sweep.tsv") == manifest);
  // The same sweep under another file name, grown by an axis value: accepted.
  d.write("a2.ini", kTiny + "[sweep]\nout = out\ntrain.lr = 0.001, 0.002, 0.004\n");
  const ProcResult same = d.run("sweep a2.ini");
  CAPTURE(same.err);
  CHECK(same.code == 0);
  CHECK(same.out.find("2 finished earlier, 1 to run") != std::string::npos);
}

TEST_CASE("sweep stop signal: a run stopped before it installs its handlers is interrupted, never failed") {
  Dir d("window");
  d.write("s.ini", kTiny + "[sweep]\nout = out\nseeds = 1\n");
  // Every mtalab process pauses half a second as it starts (before any handler is installed):
  // the sweep's SIGTERM reaches the run in exactly that window.
  SpawnOptions o;
  o.env = {"MTALAB_FAULT=pause@main"};
  Child sweep(d.path, split_words("sweep s.ini"), o);
  REQUIRE(sweep.wait_for_output([](const std::string& s) { return s.find("[1/1] start seed=0") != std::string::npos; }, 60));
  sweep.signal(SIGTERM);
  const ProcResult r = sweep.wait();
  CAPTURE(r.out);
  CAPTURE(r.err);
  CHECK(r.code == 130);
  CHECK(manifest_status(d.path / "out") == std::map<std::string, std::string>{{"seed=0", "interrupted"}});
  CHECK(d.read("out/logs/seed=0.log").find("stopping after the current step") != std::string::npos);
  // --dry-run and the relaunch make one decision: the run is started again, not skipped.
  const ProcResult dry = d.run("sweep s.ini --dry-run");
  CAPTURE(dry.out);
  CHECK(dry.code == 0);
  CHECK(dry.out.find("seed=0") != std::string::npos);
  CHECK(dry.out.find("skipped") == std::string::npos);
  CHECK(dry.out.find("would start") != std::string::npos);
  const ProcResult again = d.run("sweep s.ini");
  CAPTURE(again.out);
  CHECK(again.code == 0);
  CHECK(again.out.find("0 skipped") != std::string::npos);
  CHECK(manifest_status(d.path / "out") == std::map<std::string, std::string>{{"seed=0", "finished"}});
}

TEST_CASE("sweep names: '.', '..', and names over NAME_MAX are refused before anything runs") {
  Dir d("names");
  for (const std::string name : {"..", "."}) {
    d.write("s.ini", kTiny + "[sweep]\nout = out\n[configuration " + name + "]\ntrain.lr = 0.002\n");
    const ProcResult r = d.run("sweep s.ini");
    CAPTURE(name);
    CAPTURE(r.err);
    CHECK(r.code == 2);
    CHECK(lines_of(r.err) == 1);
    CHECK(r.err.find("s.ini:16: configuration name '" + name + "' is a path of its own") != std::string::npos);
    CHECK(!fs::exists(d.path / "out"));
    CHECK(!fs::exists(d.path / "run.h5"));
  }
  // A value long enough that logs/<name>.log passes NAME_MAX.
  d.write("long.ini", kTiny + "[sweep]\nout = out\ntrain.lr = " + std::string(260, '1') + ", 0.002\n");
  const ProcResult axis = d.run("sweep long.ini");
  CAPTURE(axis.err);
  CHECK(axis.code == 2);
  CHECK(lines_of(axis.err) == 1);
  CHECK(axis.err.find("with the .log of its output file (NAME_MAX is 255)") != std::string::npos);
  CHECK(!fs::exists(d.path / "out"));
}

TEST_CASE("sweep file and command line: the minor silent acceptances are one line and exit 2") {
  Dir d("minor");
  auto refused = [&](const std::string& ini, const std::string& args, const std::string& needle) {
    d.write("m.ini", ini);
    const ProcResult r = d.run("sweep m.ini " + args);
    CAPTURE(ini);
    CAPTURE(r.err);
    CHECK(r.code == 2);
    CHECK(r.err.find(needle) != std::string::npos);
    CHECK(!fs::exists(d.path / "out"));
  };
  refused(kTiny + "[sweep]\nout = out\nseeds = 2\nseeds = 3\n", "", "m.ini:17: seeds is set twice");
  refused(kTiny + "[sweep]\nout = out\nout = other\n", "", "m.ini:16: out is set twice");
  refused(kTiny + "[sweep]\nout = out\nmta.kq_layers = \"0,1\"x, all\n", "", "m.ini:16: text after the closing quote");
  refused(kTiny + "[sweep]\nout = out\ntrain.lr = 0.001, 0.002\n", "--train.lr 0.01",
          "--train.lr 0.01 is given on the command line, but train.lr is a sweep axis (train.lr = 0.001, 0.002) at m.ini:16");
  refused("[model]\nd_model = 16\nd_modle = 8\n[sweep]\nout = out\n", "", "m.ini:3: unknown option 'model.d_modle'");
  refused(kTiny + "[sweep]\nout = out\nmodel.attention = softmax, mta\n[configuration x]\nmta.kq_layer = all\n", "",
          "m.ini:18: unknown option 'mta.kq_layer'");
  // Train's up-front checks, for every run: a missing data file, a model that cannot fit.
  refused("[model]\nd_model = 16\nn_layers = 1\nn_heads = 2\n[data]\ntask = text\nseq_len = 16\n[sweep]\nout = out\n"
          "data.path = missing.txt, also_missing.txt\n",
          "", "data file 'missing.txt' (data.path) does not exist");
  refused(kTiny + "[sweep]\nout = out\nseeds = 1\n", "--model.d_model 65536 --model.n_layers 48 --model.n_heads 8",
          "the model and batch need about");
  // A run's files must fit PATH_MAX: an out of 17 nested 250-byte names does not.
  std::string deep = "out";
  for (int i = 0; i < 17; ++i) deep += "/" + std::string(250, 'd');
  refused(kTiny + "[sweep]\nout = " + deep + "\n", "", "expected under 4096 (PATH_MAX)");

  // Several bad runs: one line each, with real line breaks (not a literal \x0A).
  d.write("bad.ini", kTiny + "[sweep]\nout = out\nmodel.attention = mta\nmta.kq_layers = all\nmta.cq = 0, -1\n");
  const ProcResult r = d.run("sweep bad.ini");
  CAPTURE(r.err);
  CHECK(r.code == 2);
  CHECK(r.err.find("\\x0A") == std::string::npos);
  CHECK(r.err.find("\n  run 'cq=0': ") != std::string::npos);
  CHECK(r.err.find("\n  run 'cq=-1': ") != std::string::npos);
}

TEST_CASE("sweep relaunched with another --jobs: a resumed run keeps its recorded thread count, or is refused") {
  if (available_cores() < 2) return;  // one core: every --jobs gives one thread
  Dir d("threads");
  d.write("s.ini", kTiny + "[sweep]\nout = out\nseeds = 1\n");
  const std::string long_run = "--train.steps 100000 --train.checkpoint_every 5 --train.log_every 5 --train.eval_every 100000";
  // Started with --jobs 2 (half the cores each), stopped by the sweep's signal after a checkpoint.
  auto interrupted = [&](const std::string& jobs) {
    Child sweep(d.path, split_words("sweep s.ini " + long_run + " --jobs " + jobs));
    const fs::path log = d.path / "out/logs/seed=0.log";
    for (int i = 0; i < 6000 && bytes_of(log.string()).find("step 10/") == std::string::npos; ++i)
      std::this_thread::sleep_for(std::chrono::milliseconds(10));
    sweep.signal(SIGTERM);
    const ProcResult r = sweep.wait();
    CAPTURE(r.out);
    REQUIRE(r.code == 130);
    REQUIRE(fs::exists(d.path / "out/seed=0/checkpoint.h5"));
    return RunLog::open_read((d.path / "out/seed=0/run.h5").string()).attr_int("threads");
  };
  const int64_t half = interrupted("2");
  CHECK(half == available_cores() / 2);
  // Relaunched with --jobs 1 (all cores): it resumes with its own count, and says so.
  const ProcResult more = d.run("sweep s.ini --train.steps 20 --jobs 1");
  CAPTURE(more.out);
  CAPTURE(more.err);
  CHECK(more.code == 0);
  CHECK(more.out.find("resume seed=0") != std::string::npos);
  CHECK(more.out.find("with its recorded " + std::to_string(half) + " thread") != std::string::npos);
  CHECK(RunLog::open_read((d.path / "out/seed=0/run.h5").string()).attr_int("threads") == half);
  const std::string output = d.read("out/logs/seed=0.log");
  const std::string resumed = output.substr(output.rfind("training "));
  CHECK(resumed.find(", " + std::to_string(half) + " thread") != std::string::npos);  // what it ran with

  // Started with all cores, relaunched with --jobs 2: refused, naming the run and the --jobs it needs.
  fs::remove_all(d.path / "out");
  const int64_t all = interrupted("1");
  CHECK(all == available_cores());
  const std::string log_before = d.read("out/seed=0/run.h5");
  for (const char* args : {"sweep s.ini --train.steps 20 --jobs 2", "sweep s.ini --train.steps 20 --jobs 2 --dry-run"}) {
    const ProcResult r = d.run(args);
    CAPTURE(r.err);
    CHECK(r.code == 2);
    CHECK(r.err.find("run 'seed=0' was started with " + std::to_string(all) + " threads; --jobs 2 gives each run") !=
          std::string::npos);
    CHECK(r.err.find("expected --jobs 1") != std::string::npos);
  }
  CHECK(d.read("out/seed=0/run.h5") == log_before);
}

TEST_CASE("report: a NaN value makes the mean nan (n counts what was averaged); a FIFO is refused, not read") {
  Dir d("nan");
  d.write("text.txt", std::string(400, 'a') + "in the beginning god created the heaven and the earth\n");
  const std::string train =
      "train --quiet --data.task text --data.path text.txt --data.seq_len 16 --model.d_model 16 --model.n_layers 1 "
      "--model.n_heads 2 --train.steps 2 --train.batch_size 2 --train.eval_batch_size 2 --train.eval_every 2";
  REQUIRE(d.run(train + " --run.out r/seed0").code == 0);
  REQUIRE(d.run(train + " --run.out r/seed1 --train.seed 1").code == 0);
  const ProcResult before = d.run("report r/seed0 r/seed1 --format csv");
  REQUIRE(before.code == 0);
  {
    RunLog log = RunLog::open_append((d.path / "r/seed1/run.h5").string());
    log.set_final("eval_loss", std::nan(""));
    log.close();
  }
  const ProcResult r = d.run("report r/seed0 r/seed1 --format csv");
  CAPTURE(before.out);
  CAPTURE(r.out);
  CAPTURE(r.err);
  REQUIRE(r.code == 0);
  // level,run,attention,n,params,steps,tokens,train_loss,train_loss_std,eval_loss,eval_loss_std,...
  const std::string row = r.out.substr(r.out.find("\nconfiguration,") + 1);
  std::vector<std::string> f;
  for (size_t b = 0, e; b <= row.size(); b = e + 1) {
    e = std::min(row.find(',', b), row.find('\n', b));
    if (e == std::string::npos) e = row.size();
    f.push_back(row.substr(b, e - b));
    if (row[e] == '\n' || e == row.size()) break;
  }
  REQUIRE(f.size() > 10);
  CHECK(f[3] == "2");      // n: both runs ...
  CHECK(f[9] == "nan");    // ... and their mean eval loss is nan, not the other seed's value
  CHECK(f[10] == "nan");
  CHECK(f[7] != "nan");    // the train loss has no NaN
  const ProcResult text = d.run("report r/seed0 r/seed1");
  CHECK(text.out.find("nan") != std::string::npos);

  REQUIRE(::mkfifo((d.path / "fifo.h5").c_str(), 0644) == 0);
  const ProcResult fifo = d.run("report fifo.h5");
  CAPTURE(fifo.out);
  CHECK(fifo.code == 2);
  CHECK(fifo.out.find("is not a regular file") != std::string::npos);
}

TEST_CASE("plot: matplotlib is blamed only when it is missing, and a failed script's exit says what was written") {
  Dir d("plotexit");
  d.write("text.txt", std::string(400, 'a') + "in the beginning god created the heaven and the earth\n");
  REQUIRE(d.run("train --quiet --data.task text --data.path text.txt --data.seq_len 16 --model.d_model 16 "
                "--model.n_layers 1 --model.n_heads 2 --train.steps 2 --train.batch_size 2 --train.eval_batch_size 2 "
                "--train.eval_every 2 --run.out run")
              .code == 0);
  // A python without matplotlib: refused before anything is written.
  d.write("no_mpl.sh", "#!/bin/sh\necho \"ModuleNotFoundError: No module named 'matplotlib'\" >&2\nexit 1\n");
  // A python with everything, whose script fails after drawing one figure.
  d.write("fails.sh", "#!/bin/sh\n[ \"$1\" = -c ] && exit 0\ntouch \"$2/curves.png\"\necho 'OSError: disk quota' >&2\nexit 1\n");
  fs::permissions(d.path / "no_mpl.sh", fs::perms::owner_all);
  fs::permissions(d.path / "fails.sh", fs::perms::owner_all);
  SpawnOptions o;
  o.env = {"MTALAB_PYTHON=" + (d.path / "no_mpl.sh").string()};
  const ProcResult missing = d.run("plot run --out plots", o);
  CAPTURE(missing.err);
  CHECK(missing.code == 2);
  CHECK(missing.err.find("cannot import matplotlib") != std::string::npos);
  CHECK(missing.err.find("nothing was written") != std::string::npos);
  CHECK(!fs::exists(d.path / "plots"));
  o.env = {"MTALAB_PYTHON=" + (d.path / "fails.sh").string()};
  const ProcResult failed = d.run("plot run --out plots", o);
  CAPTURE(failed.err);
  CHECK(failed.code == 1);
  CHECK(failed.err.find("matplotlib") == std::string::npos);
  CHECK(failed.err.find("OSError: disk quota") != std::string::npos);
  CHECK(failed.err.find("held: curves.png, report.csv, runs.tsv (no index.html)") != std::string::npos);
}
