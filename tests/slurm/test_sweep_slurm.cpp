// `mtalab sweep --launcher slurm` against a real Slurm: scripts/slurm_local.sh starts a
// single-node cluster (munged, slurmctld, slurmd) for each ctest entry, exports SLURM_CONF,
// runs this binary with one test suite, and stops the daemons by pid however it ends.
//
//   sweep       a 4-run sweep, 2 tasks at a time, reports what the local launcher reports
//               (and ends bit for bit where it does); relaunched, it submits nothing; a
//               failing run is failed with its task and log, the others finish
//   cancel      a task cancelled mid-run resumes from its checkpoint when the sweep is
//               relaunched, bit for bit
//   time_limit  a task signalled before its time limit checkpoints, requeues itself and
//               resumes, bit for bit
//
// Slow tasks without burning CPU: MTALAB_FAULT=pause@ckpt_write#1+ sleeps 0.5 s in every
// checkpoint write (sbatch passes the environment on to the tasks).
#include <doctest/doctest.h>

#include <algorithm>
#include <chrono>
#include <filesystem>
#include <fstream>
#include <regex>
#include <thread>

#include "experiments/commands/slurm_client.h"
#include "experiments/commands/sweep.h"
#include "experiments/process_util.h"
#include "experiments/run_results.h"
#include "test_util.h"

using namespace mtalab;
using namespace mtalab::testing;
namespace fs = std::filesystem;

namespace {

// An MTA model with its key-query convolution in layer 1 (run_results.h reads that kernel).
const std::string kModel =
    "[model]\nd_model = 16\nn_layers = 2\nn_heads = 2\n[mta]\nkq_layers = all\n"
    "[task]\ntotal_len = 24\nblock_len = 3\nquery_len = 2\nn_test = 8\n"
    "[train]\nbatch_size = 4\neval_batch_size = 8\nthreads = 1\n";

const char* kSlow = "MTALAB_FAULT=pause@ckpt_write#1+";

struct Dir : TempDir {
  explicit Dir(const std::string& tag) : TempDir("slurm_" + tag) {
    REQUIRE_MESSAGE(std::getenv("SLURM_CONF"), "run through scripts/slurm_local.sh run (it starts Slurm)");
  }
  ProcResult run(const std::string& args, const std::vector<std::string>& env = {}) const {
    SpawnOptions o;
    o.env = env;
    return run_mtalab(path, split_words(args), o);
  }
};

// A one-run MTA sweep of `steps` steps checkpointed at every step, and its uninterrupted
// reference: the local launcher's run in local/seed=0.
void slow_sweep(const Dir& d, const std::string& file, int steps) {
  d.write(file, kModel + "[model]\nattention = mta\n[train]\nsteps = " + std::to_string(steps) +
                    "\ncheckpoint_every = 1\nlog_every = 1\neval_every = 10\n[sweep]\nout = out\nseeds = 1\n");
  REQUIRE(d.run("sweep " + file + " --sweep.out local").code == 0);
}

std::map<std::string, ManifestRow> manifest(const fs::path& out) {
  std::map<std::string, ManifestRow> m;
  for (const auto& r : read_sweep_manifest(out.string())) m[r.name] = r;
  return m;
}

template <class P>
bool wait_until(P pred, double seconds) {
  const auto end = std::chrono::steady_clock::now() + std::chrono::duration<double>(seconds);
  while (std::chrono::steady_clock::now() < end) {
    if (pred()) return true;
    std::this_thread::sleep_for(std::chrono::milliseconds(100));
  }
  return pred();
}

std::string job_of(const std::string& submit_output) {
  std::smatch m;
  REQUIRE(std::regex_search(submit_output, m, std::regex("submitted Slurm job ([0-9]+)")));
  return m[1];
}

std::vector<std::string> csv_fields(const std::string& line) {
  std::vector<std::string> f(1);
  bool quoted = false;
  for (char c : line) {
    if (c == '"') quoted = !quoted;
    if (c == ',' && !quoted)
      f.emplace_back();
    else
      f.back() += c;
  }
  return f;
}

// The report as CSV without what depends on the clock or the machine's load.
std::string report_values(const Dir& d, const std::string& sweep) {
  const ProcResult r = d.run("report " + sweep + " --per-seed --format csv");
  REQUIRE(r.code == 0);
  std::istringstream in(r.out);
  std::string line, out;
  std::vector<std::string> cols;
  while (std::getline(in, line)) {
    const auto f = csv_fields(line);
    if (cols.empty()) cols = f;
    for (size_t i = 0; i < f.size() && i < cols.size(); ++i)
      if (cols[i] != "tokens_per_s" && cols[i] != "wall_s" && cols[i] != "wall_s_std" && cols[i] != "peak_rss_mib")
        out += f[i] + ",";
    out += "\n";
  }
  return out;
}

// [begin, end] of each task, from the lines the task writes into the run's output.
std::vector<std::pair<std::string, std::string>> task_intervals(const fs::path& logs) {
  std::vector<std::pair<std::string, std::string>> out;
  const std::regex start(R"(== start \(Slurm task \S+ on \S+, restart \d+, (\S+)\))");
  const std::regex end(R"(== Slurm task \S+ \((\S+)\): finished)");
  for (const auto& e : fs::directory_iterator(logs)) {
    const std::string text = bytes_of(e.path().string());
    std::smatch a, b;
    REQUIRE(std::regex_search(text, a, start));
    REQUIRE(std::regex_search(text, b, end));
    out.push_back({a[1], b[1]});
  }
  return out;
}

}  // namespace

TEST_SUITE("sweep") {
  TEST_CASE("slurm: 2 configurations x 2 seeds, 2 tasks at once: the local launcher's report, bit for bit; "
            "relaunched, nothing is submitted") {
    Dir d("grid");
    d.write("s.ini", kModel + "[train]\nsteps = 30\neval_every = 10\n[sweep]\nout = out\n"
                              "model.attention = softmax, mta\nseeds = 2\n");
    const ProcResult local = d.run("sweep s.ini --sweep.out local");
    REQUIRE(local.code == 0);

    const ProcResult r = d.run("sweep s.ini --sweep.out slurm --launcher slurm --slurm.parallel 2 --wait");
    CAPTURE(r.out);
    CAPTURE(r.err);
    REQUIRE(r.code == 0);
    CHECK(r.out.find("--array=0-3%2 (4 tasks)") != std::string::npos);
    CHECK(r.out.find("sweep slurm: 4 of 4 runs finished") != std::string::npos);
    for (const auto& [name, row] : manifest(d.path / "slurm")) {
      CAPTURE(name);
      CHECK(row.status == "finished");
      CHECK(row.attempts == 1);
      // Checked by what the task produced, not by Slurm's word (a launch that failed can
      // look like success): the run's own output says it ran under Slurm and finished.
      const std::string log = d.read("slurm/logs/" + name + ".log");
      CHECK(log.find("== start (Slurm task ") != std::string::npos);
      CHECK(log.find("done: 30 steps") != std::string::npos);
    }
    // --slurm.parallel 2: never more than two tasks at once.
    const auto spans = task_intervals(d.path / "slurm/logs");
    REQUIRE(spans.size() == 4);
    for (const auto& [b, e] : spans) {
      int at_once = 0;
      for (const auto& [b2, e2] : spans) at_once += (b2 <= b && b < e2) ? 1 : 0;  // ISO times sort as text
      CHECK(at_once <= 2);
    }
    // The same report, value for value, and the same bits.
    const std::string want = report_values(d, "local");
    CHECK(count_of(want, "\n") == 7);
    CHECK(report_values(d, "slurm") == want);
    for (const char* run : {"attention=mta,seed=0", "attention=mta,seed=1"}) {
      CAPTURE(run);
      check_same(results_of(d / ("local/" + std::string(run))), results_of(d / ("slurm/" + std::string(run))));
    }
    const ProcResult plot = d.run("plot slurm");
    CAPTURE(plot.err);
    CHECK(plot.code == 0);
    CHECK(fs::exists(d.path / "slurm/plots/index.html"));
    CHECK(fs::exists(d.path / "slurm/plots/curves.png"));
    const ProcResult status = d.run("sweep s.ini --sweep.out slurm --status");
    CAPTURE(status.out);
    CHECK(status.out.find("4 runs: 4 finished") != std::string::npos);
    CHECK(std::regex_search(status.out, std::regex(R"(attention=mta,seed=1\s+finished\s+1\s+[0-9]+_3\s+slurm/logs/attention=mta,seed=1\.log)")));

    // Relaunched: nothing submitted, nothing touched.
    const auto jobs_known = [] { return count_of(capture({"scontrol", "show", "jobs", "--oneliner"}).out, "JobId="); };
    const int jobs_before = jobs_known();
    const std::string log_before = d.read("slurm/attention=softmax,seed=0/run.h5");
    const std::string submitted_before = d.read("slurm/slurm/jobs.tsv");
    const ProcResult again = d.run("sweep s.ini --sweep.out slurm --launcher slurm --slurm.parallel 2 --wait");
    CAPTURE(again.out);
    CHECK(again.code == 0);
    CHECK(again.out.find("nothing to submit: 4 of 4 runs finished") != std::string::npos);
    CHECK(jobs_known() == jobs_before);
    CHECK(d.read("slurm/slurm/jobs.tsv") == submitted_before);
    CHECK(d.read("slurm/attention=softmax,seed=0/run.h5") == log_before);
  }

  TEST_CASE("slurm: a failing run is failed with its task and log, the others finish; --retry-failed resubmits it") {
    Dir d("failed");
    d.write("short.txt", "too short");
    d.write("long.txt", std::string(4000, 'a') + "the end\n");
    d.write("s.ini", "[model]\nd_model = 16\nn_layers = 1\nn_heads = 2\n[data]\ntask = text\nseq_len = 16\n"
                     "[train]\nsteps = 3\nbatch_size = 2\neval_batch_size = 2\nthreads = 1\n"
                     "[sweep]\nout = out\ndata.path = short.txt, long.txt\n");
    const ProcResult r = d.run("sweep s.ini --launcher slurm --wait");
    CAPTURE(r.out);
    CHECK(r.code == 3);
    const std::string job = job_of(r.out);
    auto m = manifest(d.path / "out");
    CHECK(m["path=long.txt"].status == "finished");
    CHECK(m["path=short.txt"].status == "failed");
    CHECK(m["path=short.txt"].exit_code == 2);
    CHECK(d.read("out/logs/path=short.txt.log").find("short.txt") != std::string::npos);  // the run's own message
    const ProcResult status = d.run("sweep s.ini --status");
    CAPTURE(status.out);
    CHECK(status.out.find("1 failed, 1 finished") != std::string::npos);
    CHECK(std::regex_search(status.out, std::regex("path=short.txt +failed +1 +" + job +
                                                   "_0 +out/logs/path=short.txt.log +exit 2; Slurm's output out/slurm/" +
                                                   job + "_0.out")));
    const ProcResult rep = d.run("report out");
    CAPTURE(rep.out);
    CHECK(rep.out.find("failed (exit 2, see logs/path=short.txt.log)") != std::string::npos);
    // Relaunched: the failure is not submitted again unless asked.
    const ProcResult again = d.run("sweep s.ini --launcher slurm");
    CAPTURE(again.out);
    CHECK(again.code == 3);
    CHECK(again.out.find("skip path=short.txt: failed before with exit 2") != std::string::npos);
    CHECK(again.out.find("nothing to submit") != std::string::npos);
    const ProcResult retry = d.run("sweep s.ini --launcher slurm --retry-failed --wait");
    CAPTURE(retry.out);
    CHECK(retry.code == 3);
    CHECK(retry.out.find("--array=0 (1 tasks)") != std::string::npos);
    CHECK(manifest(d.path / "out")["path=short.txt"].attempts == 2);
  }
}

TEST_SUITE("cancel") {
  TEST_CASE("slurm: a task cancelled mid-run resumes from its checkpoint when the sweep is relaunched, bit for bit") {
    Dir d("cancel");
    slow_sweep(d, "c.ini", 40);
    const ProcResult sub = d.run("sweep c.ini --sweep.out slurm --launcher slurm", {kSlow});
    CAPTURE(sub.out);
    REQUIRE(sub.code == 0);
    const std::string task = job_of(sub.out) + "_0";
    const std::string log = "slurm/logs/seed=0.log";
    REQUIRE(wait_until([&] { return d.read(log).find("step 6/40") != std::string::npos; }, 120));
    REQUIRE(capture({"scancel", task}).code == 0);
    REQUIRE(wait_until([&] { return manifest(d.path / "slurm")["seed=0"].status == "interrupted"; }, 30));
    CHECK(d.read(log).find("stopped by SIGTERM (cancelled, preempted or out of time)") != std::string::npos);
    std::smatch stopped;
    const std::string text = d.read(log);
    REQUIRE(std::regex_search(text, stopped, std::regex("stopped by signal 15 at step ([0-9]+)")));
    CHECK(std::stoi(stopped[1]) < 40);
    const ProcResult status = d.run("sweep c.ini --sweep.out slurm --status");
    CHECK(std::regex_search(status.out, std::regex("seed=0 +interrupted +1 +" + task)));

    // Relaunched (at full speed): the run resumes from its checkpoint and ends where an
    // uninterrupted one does.
    const ProcResult again = d.run("sweep c.ini --sweep.out slurm --launcher slurm --wait");
    CAPTURE(again.out);
    REQUIRE(again.code == 0);
    CHECK(d.read(log).find("== resume (Slurm task ") != std::string::npos);
    CHECK(manifest(d.path / "slurm")["seed=0"].attempts == 2);
    check_same(results_of(d / "local/seed=0"), results_of(d / "slurm/seed=0"));
  }
}

TEST_SUITE("time_limit") {
  TEST_CASE("slurm: a task signalled before its time limit checkpoints, requeues itself and resumes, bit for bit") {
    Dir d("time_limit");
    // Slurm's controller looks at time limits every 30 s from its start, and sends the
    // warning at the first look within 30 s of the moment asked for: with 40 s before a
    // 1-minute limit, at its first look after the task starts (on a fresh cluster ~27 s in;
    // in general 0-30 s). A run of ~35 s (70 checkpoints, 0.5 s each) is signalled at least
    // once; a requeued attempt waits ~15 s in the queue (cred_expire) and gets ~15 s before
    // the next look, so a run signalled early may take a few attempts.
    slow_sweep(d, "t.ini", 70);
    const auto t0 = std::chrono::steady_clock::now();
    const ProcResult r = d.run(
        "sweep t.ini --sweep.out slurm --launcher slurm --slurm.time 1:00 --slurm.signal 40 --slurm.requeues 6 --wait",
        {kSlow});
    const double wall = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    CAPTURE(r.out);
    REQUIRE(r.code == 0);
    const std::string task = job_of(r.out) + "_0";
    const std::string log = d.read("slurm/logs/seed=0.log");
    CAPTURE(log);
    CHECK(log.find("== Slurm task " + task) != std::string::npos);
    CHECK(log.find("stopped with a checkpoint after the time-limit signal; requeued (1 of 6)") != std::string::npos);
    CHECK(log.find("== resume (Slurm task " + task + " on ") != std::string::npos);
    CHECK(log.find(", restart 1, ") != std::string::npos);
    CHECK(log.find("stopped by signal 15 at step ") != std::string::npos);
    // Slurm's output file kept the first attempt's lines (--open-mode=append).
    const std::string slurm_out = d.read("slurm/slurm/" + task + ".out");
    CHECK(slurm_out.find("== start seed=0 (Slurm task " + task + " on ") != std::string::npos);
    CHECK(slurm_out.find("== resume seed=0 (Slurm task " + task + " on ") != std::string::npos);
    const auto row = manifest(d.path / "slurm")["seed=0"];
    CHECK(row.status == "finished");
    CHECK(row.attempts >= 2);
    MESSAGE("time-limit sweep: ", row.attempts, " attempts (", row.attempts - 1, " requeues), ", wall, " s");
    check_same(results_of(d / "local/seed=0"), results_of(d / "slurm/seed=0"));
  }
}
