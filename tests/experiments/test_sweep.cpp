// Sweeps: the file format and its expansion into runs, and `mtalab sweep` / `mtalab report`
// as a researcher uses them: N runs at once, seeds grouped as mean ± std, killed and
// relaunched without redoing finished runs, failures reported without stopping the rest; the
// Slurm launcher's settings, batch script and refusal without Slurm (tests/slurm/ runs it on
// a real cluster).
#include <doctest/doctest.h>

#include <algorithm>
#include <filesystem>
#include <fstream>

#include "autograd/errors.h"
#include "experiments/run/run_log.h"
#include "experiments/commands/sweep.h"
#include "experiments/commands/sweep_slurm.h"
#include "experiments/commands/sweep_spec.h"
#include "process_util.h"

using namespace mtalab;
using namespace mtalab::testing;
namespace fs = std::filesystem;

namespace {

std::vector<std::string> names(const std::vector<SweepRun>& runs) {
  std::vector<std::string> out;
  for (const auto& r : runs) out.push_back(r.name);
  return out;
}

void check_throws_with(const std::function<void()>& f, const std::string& needle) {
  std::string what;
  try {
    f();
  } catch (const InputError& e) {
    what = e.what();
  }
  CAPTURE(what);
  CHECK(what.find(needle) != std::string::npos);
}

// A model and task small enough that a run of a few steps takes well under a second.
const std::string kTinyIni =
    "[model]\nd_model = 16\nn_layers = 1\nn_heads = 2\n"
    "[task]\ntotal_len = 24\nblock_len = 3\nquery_len = 2\nn_test = 8\n"
    "[train]\nbatch_size = 4\neval_batch_size = 8\n";

struct Dir : TempDir {
  explicit Dir(const std::string& tag) : TempDir("sweep_" + tag) {}
  ProcResult run(const std::string& args) const { return run_mtalab(path, args); }
  std::unique_ptr<Child> start(const std::string& args) const { return std::make_unique<Child>(path, split_words(args)); }
};

std::map<std::string, std::string> manifest_status(const fs::path& out) {
  std::map<std::string, std::string> m;
  for (const auto& r : read_sweep_manifest(out.string())) m[r.name] = r.status;
  return m;
}

}  // namespace

TEST_CASE("sweep file: axes, seeds, quoted values and configurations expand into named runs") {
  const SweepSpec s = parse_sweep_spec(
      "[model]\nn_layers = 2\n[sweep]\nout = runs/x\nmodel.attention = softmax, mta\nmta.kq_layers = \"0,1\", all\n"
      "seeds = 2\n",
      "x.ini");
  CHECK(s.out == "runs/x");
  CHECK(s.base.at("model.n_layers") == "2");
  REQUIRE(s.axes.size() == 3);
  CHECK(s.axes[1].values == std::vector<std::string>{"0,1", "all"});
  CHECK(s.axes.back().option == "train.seed");
  VariantScope scope{{"softmax", "mta"}, "softmax"};
  const auto runs = expand_sweep(s, scope);
  // softmax x mta.kq_layers collapses: the mta option does not apply to softmax runs.
  CHECK(names(runs) == std::vector<std::string>{"attention=softmax,seed=0", "attention=softmax,seed=1",
                                                "attention=mta,kq_layers=0_1,seed=0", "attention=mta,kq_layers=0_1,seed=1",
                                                "attention=mta,kq_layers=all,seed=0", "attention=mta,kq_layers=all,seed=1"});
  CHECK(runs[2].options.at("mta.kq_layers") == "0,1");
  CHECK(runs[2].configuration == "attention=mta,kq_layers=0_1");
  CHECK(runs[3].seed == 1);
  CHECK(runs[0].options.count("mta.kq_layers") == 0);

  // Named configurations, with the grid under each; --grid adds and replaces axes.
  SweepSpec c = parse_sweep_spec(
      "[sweep]\nout = o\nseeds = 2\n[configuration pre]\nmta.kq_post = false\n[configuration post]\n"
      "mta.kq_pre = false\n",
      "c.ini");
  set_sweep_axis(c, "mta.ck=5,9");
  set_sweep_axis(c, "seeds=1");
  CHECK(names(expand_sweep(c)) ==
        std::vector<std::string>{"pre,ck=5,seed=0", "pre,ck=9,seed=0", "post,ck=5,seed=0", "post,ck=9,seed=0"});
  // The file as run reads back to the same runs.
  CHECK(names(expand_sweep(parse_sweep_spec(sweep_spec_text(c), ""))) == names(expand_sweep(c)));
}

TEST_CASE("sweep file: malformed files and conflicting axes are refused naming the line") {
  check_throws_with([] { parse_sweep_spec("[train]\nsteps = 3\n", "f.ini"); }, "f.ini: no [sweep] section");
  check_throws_with([] { parse_sweep_spec("[sweep]\nmta.cq =\n", "f.ini"); }, "f.ini:2: axis 'mta.cq' has no values");
  check_throws_with([] { parse_sweep_spec("[sweep]\nmta.cq = 2, 2\n", "f.ini"); }, "lists '2' twice");
  check_throws_with([] { parse_sweep_spec("[sweep]\ncq = 2, 3\n", "f.ini"); }, "expected a full option name");
  check_throws_with([] { parse_sweep_spec("[sweep]\nseeds = 0\n", "f.ini"); }, "expected a number of seeds in [1, 1000]");
  check_throws_with([] { parse_sweep_spec("[sweep]\nsteps 3\n", "f.ini"); }, "f.ini:2: 'steps 3'; expected key = value");
  check_throws_with([] { parse_sweep_spec("[sweep]\nmta.cq = \"2, 3\n", "f.ini"); }, "unbalanced quote");
  check_throws_with(
      [] { expand_sweep(parse_sweep_spec("[sweep]\nmta.cq = 2, 3\n[configuration a]\nmta.cq = 4\n", "f.ini")); },
      "configuration 'a' sets mta.cq, which is also a sweep axis");
  SweepSpec s = parse_sweep_spec("[sweep]\nout = o\n", "");
  check_throws_with([&] { set_sweep_axis(s, "mta.ck"); }, "expected option=v1,v2");
}

TEST_CASE("sweep: jobs x threads never oversubscribe the cores") {
  CHECK(sweep_threads_per_job(1, 0, 2) == 2);
  CHECK(sweep_threads_per_job(2, 0, 2) == 1);
  CHECK(sweep_threads_per_job(2, 0, 5) == 2);
  CHECK(sweep_threads_per_job(2, 1, 2) == 1);
  check_throws_with([] { sweep_threads_per_job(3, 0, 2); }, "--jobs 3 on 2 cores");
  check_throws_with([] { sweep_threads_per_job(2, 2, 2); }, "--jobs 2 x --train.threads 2 = 4 threads on 2 cores");
}

TEST_CASE("sweep: runs every combination, reports seeds as mean ± std, and a relaunch redoes nothing") {
  Dir d("grid");
  d.write("s.ini", kTinyIni + "[train]\nsteps = 4\n[sweep]\nout = out\nmodel.attention = softmax, mta\n"
                              "mta.kq_layers = all\nseeds = 2\n");
  const ProcResult r = d.run("sweep s.ini --jobs 2");
  CAPTURE(r.out);
  CAPTURE(r.err);
  REQUIRE(r.code == 0);
  CHECK(r.out.find("4 runs: 0 finished earlier, 4 to run, 0 skipped; 2 at once") != std::string::npos);
  CHECK(count_of(r.out, "] finished ") == 4);
  CHECK(r.out.find("eta ") != std::string::npos);
  const auto st = manifest_status(d.path / "out");
  CHECK(st == std::map<std::string, std::string>{{"attention=mta,seed=0", "finished"},
                                                 {"attention=mta,seed=1", "finished"},
                                                 {"attention=softmax,seed=0", "finished"},
                                                 {"attention=softmax,seed=1", "finished"}});
  CHECK(fs::exists(d.path / "out/sweep.ini"));
  CHECK(fs::exists(d.path / "out/logs/attention=mta,seed=1.log"));
  RunLog log = RunLog::open_read((d.path / "out/attention=mta,seed=1/run.h5").string());
  CHECK(log.attr_string("train.seed") == "1");
  CHECK(log.attr_string("mta.kq_layers") == "all");
  CHECK(log.attr_int("threads") == 1);  // 2 cores split between 2 jobs (on a 2-core machine)

  const ProcResult rep = d.run("report out");
  CAPTURE(rep.out);
  REQUIRE(rep.code == 0);
  CHECK(count_of(rep.out, "\n") == 3);  // the header and one row per configuration
  CHECK(rep.out.find("attention=softmax ") != std::string::npos);
  CHECK(rep.out.find("±") != std::string::npos);
  CHECK(rep.out.find("2 finished") == std::string::npos);  // all finished: the status says just that
  CHECK(rep.out.find(" finished\n") != std::string::npos);
  const ProcResult per = d.run("report out --per-seed --baseline attention=softmax");
  CAPTURE(per.out);
  CHECK(per.code == 0);
  CHECK(count_of(per.out, "\n") == 7);
  CHECK(per.out.find("seed=1") != std::string::npos);
  CHECK(per.out.find("Δvalue") != std::string::npos);
  CHECK(per.out.find("+0.0000") != std::string::npos);  // the baseline against itself
  const ProcResult csv = d.run("report out --format csv");
  CHECK(csv.out.rfind("level,run,attention,n,", 0) == 0);
  CHECK(count_of(csv.out, "\nconfiguration,") == 2);
  const ProcResult md = d.run("report out --format markdown");
  CHECK(md.out.find("| run |") == 0);
  CHECK(d.run("report out --baseline nope").code == 2);

  const std::string before = d.read("out/attention=softmax,seed=0/run.h5");
  const ProcResult again = d.run("sweep s.ini --jobs 2");
  CAPTURE(again.out);
  CHECK(again.code == 0);
  CHECK(again.out.find("4 finished earlier, 0 to run") != std::string::npos);
  CHECK(d.read("out/attention=softmax,seed=0/run.h5") == before);
  // More steps asked for: finished runs are extended, not redone.
  const ProcResult more = d.run("sweep s.ini --jobs 2 --train.steps 6 --grid seeds=1");
  CAPTURE(more.out);
  CHECK(more.code == 0);
  CHECK(count_of(more.out, "] resume ") == 2);
  CHECK(RunLog::open_read((d.path / "out/attention=mta,seed=0/run.h5").string()).finals().at("steps") == 6);
}

TEST_CASE("sweep: invalid combinations are reported before anything runs, naming the run and the option") {
  Dir d("invalid");
  d.write("s.ini", kTinyIni + "[sweep]\nout = out\nmodel.attention = mta\nmta.kq_layers = all\nmta.cq = 2, 0\n");
  const ProcResult r = d.run("sweep s.ini");
  CAPTURE(r.err);
  CHECK(r.code == 2);
  CHECK(r.err.find("1 of 2 runs of the sweep are invalid (nothing was run)") != std::string::npos);
  CHECK(r.err.find("run 'cq=0': ") != std::string::npos);
  CHECK(r.err.find("mta.cq") != std::string::npos);
  CHECK(!fs::exists(d.path / "out"));
  d.write("t.ini", kTinyIni + "[sweep]\nout = out\nrun.out = a, b\n");
  CHECK(d.run("sweep t.ini").err.find("run.out is set by the sweep") != std::string::npos);
  CHECK(d.run("sweep t.ini --jobs 4096").err.find("--jobs 4096 on ") != std::string::npos);
  CHECK(d.run("sweep missing.ini").code == 2);
}

TEST_CASE("sweep: a failed run never stops the others, and is retried only when asked") {
  Dir d("failed");
  d.write("short.txt", "too short");
  d.write("long.txt", std::string(4000, 'a') + "the end\n");
  d.write("s.ini",
          "[model]\nd_model = 16\nn_layers = 1\nn_heads = 2\n[data]\ntask = text\nseq_len = 16\n"
          "[train]\nsteps = 3\nbatch_size = 2\neval_batch_size = 2\n[sweep]\nout = out\ndata.path = short.txt, long.txt\n");
  const ProcResult r = d.run("sweep s.ini");
  CAPTURE(r.out);
  CHECK(r.code == 3);
  CHECK(r.out.find("failed path=short.txt") != std::string::npos);
  CHECK(r.out.find("finished path=long.txt") != std::string::npos);
  CHECK(manifest_status(d.path / "out") ==
        std::map<std::string, std::string>{{"path=long.txt", "finished"}, {"path=short.txt", "failed"}});
  CHECK(d.read("out/logs/path=short.txt.log").find("short.txt") != std::string::npos);  // the run's own message
  const ProcResult rep = d.run("report out");
  CAPTURE(rep.out);
  CHECK(rep.out.find("failed (exit 2, see logs/path=short.txt.log)") != std::string::npos);
  const ProcResult again = d.run("sweep s.ini");
  CHECK(again.code == 3);
  CHECK(again.out.find("skip path=short.txt: failed before with exit 2") != std::string::npos);
  const ProcResult retry = d.run("sweep s.ini --retry-failed");
  CAPTURE(retry.out);
  CHECK(retry.out.find("1 to run") != std::string::npos);
  CHECK(read_sweep_manifest((d.path / "out").string()).at(0).attempts == 2);
}

TEST_CASE("sweep: killed and relaunched, it resumes the interrupted run and keeps the finished ones") {
  Dir d("killed");
  // log_every 50: a run's cost is its steps, not rewriting its log (a loaded CI machine).
  d.write("s.ini", kTinyIni + "[train]\nsteps = 2000\ncheckpoint_every = 50\neval_every = 1000\nlog_every = 50\n"
                              "[sweep]\nout = out\n"
                              "train.lr = 0.001, 0.002, 0.003\n");
  auto first = d.start("sweep s.ini --jobs 1");
  // Kill the sweep while its second run is going: its run stops cleanly (SIGTERM from the
  // dying sweep) after a checkpoint.
  REQUIRE(first->wait_for_output([](const std::string& o) { return o.find("[2/3] start lr=0.002") != std::string::npos; },
                                 600));
  const fs::path second_log = d.path / "out/logs/lr=0.002.log";
  for (int i = 0; i < 30000 && bytes_of(second_log.string()).find("step 100/") == std::string::npos; ++i)
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  first->signal(SIGKILL);
  first->wait();
  const std::string done_before = d.read("out/lr=0.001/run.h5");
  const ProcResult again = d.run("sweep s.ini --jobs 1");
  CAPTURE(again.out);
  REQUIRE(again.code == 0);
  CHECK(again.out.find("1 finished earlier, 2 to run") != std::string::npos);
  CHECK(again.out.find("resume lr=0.002") != std::string::npos);
  CHECK(d.read("out/lr=0.001/run.h5") == done_before);
  CHECK(bytes_of(second_log.string()).find("== resume") != std::string::npos);
  for (const auto& [name, status] : manifest_status(d.path / "out")) CHECK(status == "finished");
  CHECK(RunLog::open_read((d.path / "out/lr=0.002/run.h5").string()).finals().at("steps") == 2000);
}

// --- the Slurm launcher without a cluster (tests/slurm/ runs it against a real one) ------

TEST_CASE("sweep --launcher slurm: settings are checked, and the array list is Slurm's") {
  CHECK(slurm_array_list({0, 1, 2, 3}) == "0-3");
  CHECK(slurm_array_list({1, 3, 4, 5, 9}) == "1,3-5,9");
  CHECK(slurm_array_list({7}) == "7");
  const SlurmOptions o = slurm_options({{"time", "1-02:00:00"}, {"signal", "300"}, {"parallel", "4"},
                                        {"extra", "--account=abc  --qos=high"}});
  CHECK(o.time == "1-02:00:00");
  CHECK(o.extra == std::vector<std::string>{"--account=abc", "--qos=high"});
  CHECK(o.requeues == 3);
  check_throws_with([] { slurm_options({{"time", "2h"}}); }, "slurm.time = '2h'; expected a time limit");
  check_throws_with([] { slurm_options({{"time", "01:00"}, {"signal", "60"}}); }, "expected fewer seconds than the limit");
  check_throws_with([] { slurm_options({{"parallel", "0"}}); }, "slurm.parallel = '0'; expected an integer in [1,");
  check_throws_with([] { slurm_options({{"partition", "a b"}}); }, "expected a partition name (one word)");
  check_throws_with([] { slurm_options({{"extra", "account=abc"}}); }, "expected sbatch options such as --account=abc");
  check_throws_with([] { slurm_options({{"gpu", "1"}}); }, "unknown Slurm setting 'gpu'; expected one of partition,");
  // A [slurm] section is the launcher's, not a train option, and survives the sweep as run.
  const SweepSpec s = parse_sweep_spec("[sweep]\nout = o\nseeds = 2\n[slurm]\ntime = 04:00:00\n", "f.ini");
  CHECK(s.slurm == std::map<std::string, std::string>{{"time", "04:00:00"}});
  CHECK(s.base.empty());
  CHECK(parse_sweep_spec(sweep_spec_text(s), "").slurm == s.slurm);
}

TEST_CASE("sweep --launcher slurm --dry-run: the batch script and its array, without Slurm, nothing written") {
  Dir d("slurm_dry");
  d.write("s.ini", kTinyIni + "[train]\nsteps = 4\nthreads = 1\n[sweep]\nout = out\nmodel.attention = softmax, mta\n"
                              "mta.kq_layers = all\nseeds = 2\n[slurm]\ntime = 04:00:00\npartition = cpu\n");
  SpawnOptions no_slurm;
  no_slurm.env.push_back("PATH=/nonexistent");
  const ProcResult r = run_mtalab(d.path,
                                  split_words("sweep s.ini --launcher slurm --dry-run --slurm.parallel 2 --slurm.gpus 1 "
                                              "--slurm.partition gpu --slurm.ntasks 2 --slurm.mem 8G"),
                                  no_slurm);
  CAPTURE(r.out);
  CAPTURE(r.err);
  REQUIRE(r.code == 0);
  CHECK(count_of(r.out, "would start") == 4);
  CHECK(r.out.find("would submit: sbatch --array=0-3%2 out/slurm/sweep.sbatch") != std::string::npos);
  for (const char* line : {"#SBATCH --time=04:00:00\n", "#SBATCH --partition=gpu\n", "#SBATCH --gpus-per-task=1\n",
                           "#SBATCH --signal=B:USR1@120\n", "#SBATCH --requeue\n", "#SBATCH --open-mode=append\n",
                           "#SBATCH --ntasks=2\n", "#SBATCH --cpus-per-task=1\n", "#SBATCH --mem=8G\n"})
    CHECK_MESSAGE(r.out.find(line) != std::string::npos, line);
  CHECK(r.out.find("#SBATCH --output=" + (d.path / "out/slurm/%A_%a.out").string() + "\n") != std::string::npos);
  CHECK(r.out.find("sweep-task --sweep '" + (d.path / "out/sweep.ini").string() + "' --requeues 3 --launch 'srun --mpi=pmix'\n") !=
        std::string::npos);
  CHECK(!fs::exists(d.path / "out"));
}

TEST_CASE("sweep --launcher slurm without Slurm: one clear line, exit 2, nothing written") {
  Dir d("slurm_absent");
  d.write("s.ini", kTinyIni + "[train]\nsteps = 4\n[sweep]\nout = out\nseeds = 2\n");
  SpawnOptions no_slurm;
  no_slurm.env.push_back("PATH=/nonexistent");
  const ProcResult r = run_mtalab(d.path, split_words("sweep s.ini --launcher slurm"), no_slurm);
  CAPTURE(r.err);
  CHECK(r.code == 2);
  CHECK(count_of(r.err, "\n") == 1);
  CHECK(r.err.find("--launcher slurm: sbatch, squeue, scontrol not found on PATH") != std::string::npos);
  CHECK(r.out.empty());
  CHECK(!fs::exists(d.path / "out"));
  // Settings that are not the local launcher's, and a launcher that does not exist.
  CHECK(d.run("sweep s.ini --slurm.time 10").err.find("--slurm.time is for --launcher slurm") != std::string::npos);
  CHECK(d.run("sweep s.ini --launcher slurm --jobs 2").err.find("--jobs is for the local launcher") != std::string::npos);
  CHECK(d.run("sweep s.ini --launcher pbs").err.find("--launcher 'pbs'; expected local or slurm") != std::string::npos);
  d.write("typo.ini", kTinyIni + "[sweep]\nout = out\n[slurm]\ngpu = 1\n");
  CHECK(d.run("sweep typo.ini").err.find("unknown Slurm setting 'gpu'") != std::string::npos);
  CHECK(d.run("sweep-task --sweep s.ini").err.find("SLURM_ARRAY_TASK_ID") != std::string::npos);
  CHECK(!fs::exists(d.path / "out"));
}
