// A sweep knows its runs by what they are (issue 19): an edited model option or another
// sweep file pointed at the same directory is refused, never averaged with the old runs; a
// stop signal in the window before a run installs its handlers interrupts it (never fails
// it); names that are no directory, and the minor silent acceptances of the sweep file and
// command line, are refused with one line and exit 2 before anything runs.
#include <doctest/doctest.h>

#include <filesystem>
#include <fstream>

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
