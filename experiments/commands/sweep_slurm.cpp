#include "experiments/commands/sweep_slurm.h"

#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <ctime>
#include <filesystem>
#include <fstream>
#include <set>
#include <sstream>
#include <thread>

#include "autograd/errors.h"
#include "experiments/commands/slurm_client.h"
#include "experiments/run/atomic_file.h"
#include "experiments/run/run_lock.h"

namespace mtalab {

namespace fs = std::filesystem;

const std::vector<SlurmSetting>& slurm_settings() {
  static const std::vector<SlurmSetting> list = {
      {"partition", "NAME", "partition to submit to (default: the cluster's)"},
      {"time", "[D-]HH:MM:SS", "time limit of each task; the run checkpoints --slurm.signal s before it and is requeued"},
      {"gpus", "N", "GPUs per task (--gpus-per-task)"},
      {"gres", "LIST", "generic resources per node, as --gres (e.g. gpu:a100:1)"},
      {"cpus", "N", "CPUs per task, the run's OpenMP threads (default: train.threads if set, else Slurm's)"},
      {"mem", "SIZE", "memory per node, as --mem (e.g. 16G)"},
      {"parallel", "K", "at most K tasks of the array at once: --array=...%K (default: no limit)"},
      {"ntasks", "N", "ranks per run (MPI data parallelism), started by --slurm.launch (default 1)"},
      {"launch", "CMD", "what starts a run's ranks when ntasks > 1 (default 'srun --mpi=pmix')"},
      {"requeues", "N", "times a task requeues itself after its time-limit signal (default 3)"},
      {"signal", "S", "seconds before the time limit that SIGUSR1 asks the run to checkpoint (default 120)"},
      {"extra", "OPTIONS", "more sbatch options, e.g. '--account=abc --qos=high'"},
  };
  return list;
}

namespace {

std::string trim(const std::string& s) {
  const auto b = s.find_first_not_of(" \t");
  if (b == std::string::npos) return "";
  return s.substr(b, s.find_last_not_of(" \t") - b + 1);
}

int int_setting(const std::string& key, const std::string& v, int lo, int hi) {
  size_t used = 0;
  long long n = lo - 1;
  try {
    n = std::stoll(v, &used);
  } catch (const std::exception&) {
  }
  if (used != v.size() || n < lo || n > hi)
    throw InputError("slurm." + key + " = '" + v + "'; expected an integer in [" + std::to_string(lo) + ", " +
                     std::to_string(hi) + "]");
  return (int)n;
}

// A value that becomes part of an #SBATCH line: one word, nothing a shell or Slurm would split.
std::string word_setting(const std::string& key, const std::string& v, const char* expected) {
  for (char c : v)
    if (std::isspace((unsigned char)c) || c == '\'' || c == '"' || c == '\\' || c == '#' || (unsigned char)c < 0x20)
      throw InputError("slurm." + key + " = '" + v + "'; expected " + expected + " (one word)");
  if (v.empty()) throw InputError("slurm." + key + " is empty; expected " + expected);
  return v;
}

// Slurm's time formats: M, M:S, H:M:S, D-H, D-H:M, D-H:M:S. Seconds, or -1.
long time_seconds(const std::string& v) {
  long days = 0;
  std::string rest = v;
  const auto dash = v.find('-');
  auto number = [](const std::string& s, long* out) {
    if (s.empty() || s.size() > 6 || s.find_first_not_of("0123456789") != std::string::npos) return false;
    *out = std::stol(s);
    return true;
  };
  if (dash != std::string::npos) {
    if (!number(v.substr(0, dash), &days)) return -1;
    rest = v.substr(dash + 1);
  }
  std::vector<long> parts;
  std::istringstream in(rest);
  for (std::string p; std::getline(in, p, ':');) {
    long n = 0;
    if (!number(p, &n)) return -1;
    parts.push_back(n);
  }
  if (parts.empty() || parts.size() > 3 || (!rest.empty() && rest.back() == ':')) return -1;
  if (dash != std::string::npos) {  // D-H[:M[:S]]
    while (parts.size() < 3) parts.push_back(0);
    return ((days * 24 + parts[0]) * 60 + parts[1]) * 60 + parts[2];
  }
  if (parts.size() == 1) return parts[0] * 60;
  if (parts.size() == 2) return parts[0] * 60 + parts[1];
  return (parts[0] * 60 + parts[1]) * 60 + parts[2];
}

std::string shell_quote(const std::string& s) {
  std::string out = "'";
  for (char c : s) out += c == '\'' ? std::string("'\\''") : std::string(1, c);
  return out + "'";
}

// A path as the value of an #SBATCH line: sbatch reads double quotes there, nothing more.
std::string directive_path(const std::string& p) {
  if (p.find_first_of("\"\n\r") != std::string::npos)
    throw InputError("path '" + p + "' holds a double quote or a line break; expected a path an #SBATCH line can hold");
  return p.find_first_of(" \t") == std::string::npos ? p : "\"" + p + "\"";
}

std::string now_utc() {
  const auto now = std::chrono::system_clock::now();
  const std::time_t t = std::chrono::system_clock::to_time_t(now);
  const long ms = (long)(std::chrono::duration_cast<std::chrono::milliseconds>(now.time_since_epoch()).count() % 1000);
  std::tm tm{};
  gmtime_r(&t, &tm);
  char buf[40];
  std::strftime(buf, sizeof buf, "%Y-%m-%dT%H:%M:%S", &tm);
  char out[48];
  std::snprintf(out, sizeof out, "%s.%03ldZ", buf, ms);
  return out;
}

std::string env_or(const char* name, const std::string& fallback) {
  const char* v = std::getenv(name);
  return v && *v ? v : fallback;
}

std::string slurm_dir(const SweepSpec& spec) { return (fs::path(spec.out) / "slurm").string(); }
std::string script_path(const SweepSpec& spec) { return (fs::path(slurm_dir(spec)) / "sweep.sbatch").string(); }

// The sweep's manifest is rewritten whole by the submitter and by every task, on whatever
// node it runs: one writer at a time, through an OFD lock on slurm/manifest.lock.
class ManifestLock {
 public:
  explicit ManifestLock(const SweepSpec& spec) {
    const std::string path = (fs::path(slurm_dir(spec)) / "manifest.lock").string();
    fd_ = ::open(path.c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0644);
    if (fd_ < 0) throw IoError("cannot open '" + path + "': " + errno_text(errno));
    struct flock fl {};
    fl.l_type = F_WRLCK;
    fl.l_whence = SEEK_SET;
    while (fcntl(fd_, F_OFD_SETLKW, &fl) != 0)
      if (errno != EINTR) throw IoError("cannot lock '" + path + "': " + errno_text(errno));
  }
  ~ManifestLock() { ::close(fd_); }
  ManifestLock(const ManifestLock&) = delete;
  ManifestLock& operator=(const ManifestLock&) = delete;

 private:
  int fd_ = -1;
};

// slurm/jobs.tsv: the array task each run was last submitted as.
struct JobRow {
  std::string task, submitted, output;  // "12_3", UTC time, "slurm/12_3.out"
};

std::string jobs_path(const SweepSpec& spec) { return (fs::path(slurm_dir(spec)) / "jobs.tsv").string(); }

std::map<std::string, JobRow> read_jobs(const SweepSpec& spec) {
  std::map<std::string, JobRow> out;
  std::ifstream f(jobs_path(spec));
  std::string line;
  std::getline(f, line);  // header
  while (std::getline(f, line)) {
    std::istringstream in(line);
    std::string name;
    JobRow j;
    if (std::getline(in, name, '\t') && std::getline(in, j.task, '\t') && std::getline(in, j.submitted, '\t') &&
        std::getline(in, j.output))
      out[name] = j;
  }
  return out;
}

void write_jobs(const SweepSpec& spec, const std::map<std::string, JobRow>& jobs) {
  std::string s = "name\ttask\tsubmitted\tslurm_output\n";
  for (const auto& [name, j] : jobs) s += name + "\t" + j.task + "\t" + j.submitted + "\t" + j.output + "\n";
  replace_file(jobs_path(spec), s.data(), s.size());
}

// What one run is doing, from its manifest row, its directory and Slurm.
struct RunView {
  std::string state;   // pending, running, requeued, finished, failed, diverged, interrupted, ...
  std::string detail;  // Slurm's reason, the exit code, the outcome
};

RunView view_of(const ManifestRow& row, const std::string& run_dir, const JobRow* job,
                const std::map<std::string, SlurmTask>& queue) {
  auto q = job ? queue.find(job->task) : queue.end();
  // A completing task has ended its script: what it recorded is the news.
  if (q != queue.end() && q->second.state == "COMPLETING" && row.status != "pending" && row.status != "running")
    q = queue.end();
  if (q != queue.end()) {
    const SlurmTask& t = q->second;
    if (t.state == "RUNNING" || t.state == "COMPLETING" || t.state == "CONFIGURING") return {"running", "on " + t.node};
    if (t.state == "PENDING" || t.state == "REQUEUED" || t.state == "REQUEUE_HOLD" || t.state == "REQUEUE_FED")
      return {row.status == "requeued" || t.restarts > 0 ? "requeued" : "pending", t.reason};
    if (t.state == "SUSPENDED") return {"suspended", t.reason};
  }
  RunView v{row.status, ""};
  if (row.status == "finished") v.detail = sweep_run_outcome(run_dir);
  if (row.status == "failed" || row.status == "diverged" || row.status == "interrupted")
    v.detail = "exit " + (row.exit_code < 0 ? std::string("?") : std::to_string(row.exit_code));
  if (job && !queue.count(job->task) && (row.status == "pending" || row.status == "running" || row.status == "requeued")) {
    v.state = "lost";
    v.detail = "its task left Slurm without recording how the run ended (killed?); relaunching the sweep resumes it";
  }
  return v;
}

bool in_flight(const std::string& state) {
  return state == "pending" || state == "running" || state == "requeued" || state == "suspended";
}

}  // namespace

SlurmOptions slurm_options(const std::map<std::string, std::string>& settings) {
  SlurmOptions o;
  std::set<std::string> known;
  for (const auto& s : slurm_settings()) known.insert(s.key);
  for (const auto& [k, raw] : settings) {
    const std::string v = trim(raw);
    if (!known.count(k)) {
      std::string list;
      for (const auto& s : slurm_settings()) list += (list.empty() ? "" : ", ") + std::string(s.key);
      throw InputError("unknown Slurm setting '" + k + "'; expected one of " + list);
    }
    if (k == "partition") o.partition = word_setting(k, v, "a partition name");
    if (k == "mem") o.mem = word_setting(k, v, "a size such as 16G");
    if (k == "gres") o.gres = word_setting(k, v, "a --gres list such as gpu:1");
    if (k == "gpus") o.gpus = int_setting(k, v, 0, 1024);
    if (k == "cpus") o.cpus = int_setting(k, v, 1, 100000);
    if (k == "parallel") o.parallel = int_setting(k, v, 1, 1000000);
    if (k == "ntasks") o.ntasks = int_setting(k, v, 1, 100000);
    if (k == "requeues") o.requeues = int_setting(k, v, 0, 1000);
    if (k == "signal") o.signal_s = int_setting(k, v, 1, 65535);
    if (k == "launch") {
      if (v.empty() || v.find_first_of("\n'\\") != std::string::npos)
        throw InputError("slurm.launch = '" + v + "'; expected a command such as 'srun --mpi=pmix'");
      o.launch = v;
    }
    if (k == "time") {
      if (time_seconds(v) <= 0)
        throw InputError("slurm.time = '" + v + "'; expected a time limit as Slurm writes it: [D-]HH:MM:SS, MM or MM:SS");
      o.time = v;
    }
    if (k == "extra") {
      std::istringstream in(v);
      for (std::string w; in >> w;) {
        if (w.size() < 2 || w[0] != '-' || w.find_first_of("'\"\\#") != std::string::npos)
          throw InputError("slurm.extra word '" + w + "'; expected sbatch options such as --account=abc (one word each)");
        o.extra.push_back(w);
      }
    }
  }
  if (!o.time.empty() && o.signal_s >= time_seconds(o.time))
    throw InputError("slurm.signal = " + std::to_string(o.signal_s) + " s before a time limit of " + o.time +
                     "; expected fewer seconds than the limit (the run needs time to train before it checkpoints)");
  return o;
}

std::string slurm_array_list(const std::vector<size_t>& indices) {
  std::string out;
  for (size_t i = 0; i < indices.size();) {
    size_t j = i;
    while (j + 1 < indices.size() && indices[j + 1] == indices[j] + 1) ++j;
    out += (out.empty() ? "" : ",") + std::to_string(indices[i]);
    if (j > i) out += "-" + std::to_string(indices[j]);
    i = j + 1;
  }
  return out;
}

std::string slurm_batch_script(const SweepSpec& spec, const SlurmOptions& o, int cpus, const std::string& binary,
                               const std::string& cwd) {
  const fs::path out = fs::absolute(fs::path(cwd) / spec.out).lexically_normal();
  std::ostringstream s;
  s << "#!/bin/bash\n"
    << "# The sweep " << (spec.file.empty() ? spec.out : spec.file) << " on Slurm, written by `mtalab sweep --launcher slurm`.\n"
    << "# Array task i runs row i of " << (out / "sweep.tsv").string() << " as the local launcher would\n"
    << "# (same directory, options and seed; its output in logs/<run>.log); the --array list is\n"
    << "# given at submission: relaunching the sweep submits the runs that are not finished.\n"
    << "#SBATCH --job-name=" << directive_path("mtalab:" + out.filename().string()) << "\n"
    << "#SBATCH --chdir=" << directive_path(cwd) << "\n"
    << "#SBATCH --output=" << directive_path((out / "slurm" / "%A_%a.out").string()) << "\n"
    << "#SBATCH --open-mode=append\n"  // a requeued task reruns from the top: keep what it wrote
    << "#SBATCH --requeue\n"
    << "#SBATCH --signal=B:USR1@" << o.signal_s << "\n"
    << "#SBATCH --ntasks=" << o.ntasks << "\n";
  if (cpus > 0) s << "#SBATCH --cpus-per-task=" << cpus << "\n";
  if (!o.time.empty()) s << "#SBATCH --time=" << o.time << "\n";
  if (!o.partition.empty()) s << "#SBATCH --partition=" << o.partition << "\n";
  if (!o.mem.empty()) s << "#SBATCH --mem=" << o.mem << "\n";
  if (o.gpus > 0) s << "#SBATCH --gpus-per-task=" << o.gpus << "\n";
  if (!o.gres.empty()) s << "#SBATCH --gres=" << o.gres << "\n";
  for (const auto& e : o.extra) s << "#SBATCH " << e << "\n";
  s << "# SIGUSR1 (the time-limit warning) reaches this shell only, so it becomes mtalab: the run\n"
    << "# checkpoints and stops, and the task requeues itself (at most " << o.requeues << " times).\n"
    << "exec " << shell_quote(binary) << " sweep-task --sweep " << shell_quote((out / "sweep.ini").string())
    << " --requeues " << o.requeues;
  if (o.ntasks > 1) s << " --launch " << shell_quote(o.launch);
  s << "\n";
  return s.str();
}

namespace {

class SlurmSubmit {
 public:
  SlurmSubmit(const SweepRequest& req, const SlurmOptions& o) : req_(req), o_(o), varied_(sweep_varied_options(req.spec)) {}

  SweepResult run(bool wait) {
    resolved_ = validate_sweep_runs(req_);
    check_sweep_identity(req_, resolved_);
    if (!req_.dry_run) require_slurm_clients();
    cpus_ = o_.cpus > 0 ? o_.cpus : threads_setting();
    std::error_code ec;
    cwd_ = fs::current_path(ec).string();
    const std::string script = slurm_batch_script(req_.spec, o_, cpus_, req_.binary, cwd_);
    rows_ = sweep_manifest_rows(req_.spec, req_.runs);
    jobs_ = read_jobs(req_.spec);
    // Tasks of an earlier submission still in Slurm are left to it (a dry run asks too, when
    // it can: it shows the decision a submission would make).
    if (!jobs_.empty() && !find_on_path("squeue").empty()) queue_ = settled_queue();
    plan_all();
    if (req_.dry_run) {
      std::printf("\nwould submit: sbatch --array=%s %s\n--- %s\n%s", array_spec().c_str(), script_path(req_.spec).c_str(),
                  script_path(req_.spec).c_str(), script.c_str());
      return result_;
    }
    if (!submit_.empty()) test_submission(script);
    if (submit_.empty()) {
      std::printf("nothing to submit: %d of %zu runs finished", result_.finished, req_.runs.size());
      if (left_to_slurm_ > 0) std::printf(", %d pending or running in Slurm", left_to_slurm_);
      std::printf("\n");
      if (left_to_slurm_ > 0 && wait) follow();
      return result_;
    }
    {
      RunLock lock = RunLock::acquire(req_.spec.out, "mtalab sweep --launcher slurm");
      fs::create_directories(fs::path(req_.spec.out) / "logs");
      fs::create_directories(slurm_dir(req_.spec));
      const std::string ini = sweep_spec_text(req_.spec);
      replace_file((fs::path(req_.spec.out) / "sweep.ini").string(), ini.data(), ini.size());
      replace_file(script_path(req_.spec), script.data(), script.size());
      submit();
    }
    if (wait) follow();
    return result_;
  }

 private:
  int threads_setting() const {
    auto it = req_.spec.base.find("train.threads");
    return it == req_.spec.base.end() ? 0 : std::max(0, std::atoi(it->second.c_str()));
  }

  std::string dir_of(size_t i) const { return sweep_run_dir(req_.spec, req_.runs[i]); }

  // Slurm's queue once none of this sweep's tasks is completing (one that just ended, or
  // is being requeued): whether it comes back is known then. Up to 2 minutes (KillWait).
  std::map<std::string, SlurmTask> settled_queue() const {
    std::map<std::string, SlurmTask> q = slurm_queue();
    for (int t = 0; t < 240; ++t) {
      int completing = 0;
      for (const auto& [name, j] : jobs_) completing += q.count(j.task) && q.at(j.task).state == "COMPLETING" ? 1 : 0;
      if (completing == 0) break;
      if (t == 0) std::printf("waiting for %d tasks completing in Slurm\n", completing);
      std::fflush(stdout);
      std::this_thread::sleep_for(std::chrono::milliseconds(500));
      q = slurm_queue();
    }
    return q;
  }

  std::string array_spec() const {
    return slurm_array_list(submit_) + (o_.parallel > 0 ? "%" + std::to_string(o_.parallel) : "");
  }

  void plan_all() {
    int skipped = 0;
    for (size_t i = 0; i < req_.runs.size(); ++i) {
      const auto job = jobs_.find(req_.runs[i].name);
      const auto q = job == jobs_.end() ? queue_.end() : queue_.find(job->second.task);
      RunPlan p;
      if (q != queue_.end()) {
        p = {RunPlan::skip, "left to Slurm: task " + q->first + " is " + q->second.state};
        ++left_to_slurm_;
      } else {
        p = plan_sweep_run(dir_of(i), std::stoll(resolved_[i].at("train.steps")), &rows_[i], req_.retry_failed);
        if (p.kind == RunPlan::done) ++result_.finished;
        if (p.kind == RunPlan::skip) {
          ++skipped;
          if (p.why.rfind("busy", 0) == 0) ++result_.busy;
          else if (p.why.rfind("diverged", 0) == 0) ++result_.diverged;
          else ++result_.failed;
        }
        if (p.kind == RunPlan::start || p.kind == RunPlan::resume || p.kind == RunPlan::restart) submit_.push_back(i);
      }
      if (p.kind != RunPlan::done && (q != queue_.end() || p.kind != RunPlan::skip)) followed_.insert(i);
      if (req_.dry_run) std::printf("%s\n", sweep_dry_run_line(req_.runs[i].name, p).c_str());
      else if (p.kind == RunPlan::skip) std::printf("skip %s: %s\n", req_.runs[i].name.c_str(), p.why.c_str());
    }
    std::printf("sweep %s: %zu runs: %d finished earlier, %zu to submit, %d skipped, %d left to Slurm\n",
                req_.spec.out.c_str(), req_.runs.size(), result_.finished, submit_.size(), skipped, left_to_slurm_);
    std::fflush(stdout);
  }

  // sbatch --test-only with the script on stdin: a partition, limit or resource the cluster
  // refuses is an error before anything is written.
  void test_submission(const std::string& script) const {
    const Captured r = capture({"sbatch", "--test-only", "--array=" + array_spec()}, script);
    if (r.code != 0)
      throw InputError("sbatch refuses the sweep's job array: " + one_line(r.err + r.out) + " (nothing was submitted or written)");
  }

  void submit() {
    ManifestLock lock(req_.spec);  // tasks that start at once wait for the rows written here
    const std::string spec = array_spec();
    const auto t0 = std::chrono::steady_clock::now();
    const Captured r = capture({"sbatch", "--parsable", "--array=" + spec, script_path(req_.spec)});
    const double submit_s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    const std::string id = trim(r.out.substr(0, r.out.find_first_of(";\n")));
    if (r.code != 0 || id.empty() || id.find_first_not_of("0123456789") != std::string::npos)
      throw InputError("sbatch refused the sweep's job array (exit " + std::to_string(r.code) + "): " +
                       one_line(r.err + r.out) + " (the script: " + script_path(req_.spec) + "; nothing was submitted)");
    job_id_ = id;
    const std::string when = now_utc();
    rows_ = sweep_manifest_rows(req_.spec, req_.runs);  // again, under the lock: tasks may have written
    for (size_t i : submit_) {
      const std::string task = id + "_" + std::to_string(i);
      jobs_[req_.runs[i].name] = {task, when, (fs::path("slurm") / (task + ".out")).string()};
      rows_[i].status = "pending";
      rows_[i].exit_code = -1;
    }
    write_jobs(req_.spec, jobs_);
    write_sweep_manifest(req_.spec.out, varied_, rows_);
    std::printf("submitted Slurm job %s: --array=%s (%zu tasks) in %.2f s; script %s\n"
                "  each run's output in %s/logs/<run>.log, Slurm's in %s/slurm/%s_<i>.out; "
                "this command with --status shows where they are\n",
                id.c_str(), spec.c_str(), submit_.size(), submit_s, script_path(req_.spec).c_str(),
                req_.spec.out.c_str(), req_.spec.out.c_str(), id.c_str());
    std::fflush(stdout);
  }

  // Follows the sweep until none of its tasks is left in Slurm: one line per change.
  void follow() {
    std::map<std::string, std::string> shown;
    const auto t0 = std::chrono::steady_clock::now();
    for (int failures = 0;;) {
      std::map<std::string, SlurmTask> queue;
      try {
        queue = slurm_queue();
        failures = 0;
      } catch (const InputError&) {  // a busy controller: ask again, for a minute
        if (++failures > 60) throw;
        std::this_thread::sleep_for(std::chrono::seconds(1));
        continue;
      }
      const auto rows = sweep_manifest_rows(req_.spec, req_.runs);
      const auto jobs = read_jobs(req_.spec);
      bool any = false;
      std::vector<RunView> views;
      int ended = 0;
      for (size_t i = 0; i < req_.runs.size(); ++i) {
        const auto j = jobs.find(req_.runs[i].name);
        views.push_back(view_of(rows[i], dir_of(i), j == jobs.end() ? nullptr : &j->second, queue));
        const bool flying = followed_.count(i) && in_flight(views[i].state);
        any = any || flying;
        ended += followed_.count(i) && !flying ? 1 : 0;
      }
      for (size_t i : followed_) {
        const RunView& v = views[i];
        const std::string& name = req_.runs[i].name;
        if (shown[name] == v.state || v.state == "pending") continue;
        shown[name] = v.state;
        const auto j = jobs.find(name);
        const double t = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
        std::printf("[%6.1f s] %d/%zu %-11s %s (task %s)%s%s\n", t, ended, followed_.size(), v.state.c_str(), name.c_str(),
                    j == jobs.end() ? "-" : j->second.task.c_str(), v.detail.empty() ? "" : ": ", v.detail.c_str());
        std::fflush(stdout);
      }
      if (!any) {
        tally(rows, queue, jobs);
        return;
      }
      std::this_thread::sleep_for(std::chrono::milliseconds(500));
    }
  }

  void tally(const std::vector<ManifestRow>& rows, const std::map<std::string, SlurmTask>& queue,
             const std::map<std::string, JobRow>& jobs) {
    result_ = {};
    for (size_t i = 0; i < rows.size(); ++i) {
      const auto j = jobs.find(req_.runs[i].name);
      const std::string s = view_of(rows[i], dir_of(i), j == jobs.end() ? nullptr : &j->second, queue).state;
      if (s == "finished") ++result_.finished;
      else if (s == "diverged") ++result_.diverged;
      else if (s == "interrupted") ++result_.interrupted;
      else ++result_.failed;
    }
    std::printf("sweep %s: %d of %zu runs finished, %d diverged, %d failed, %d interrupted\n"
                "  manifest: %s; table: mtalab report %s\n",
                req_.spec.out.c_str(), result_.finished, rows.size(), result_.diverged, result_.failed,
                result_.interrupted, sweep_manifest_path(req_.spec.out).c_str(), req_.spec.out.c_str());
  }

  const SweepRequest& req_;
  const SlurmOptions& o_;
  std::vector<std::string> varied_;
  std::vector<std::map<std::string, std::string>> resolved_;
  std::vector<ManifestRow> rows_;
  std::map<std::string, JobRow> jobs_;
  std::map<std::string, SlurmTask> queue_;
  std::vector<size_t> submit_;
  std::set<size_t> followed_;  // submitted now, or left to an earlier submission
  std::string cwd_, job_id_;
  int cpus_ = 0, left_to_slurm_ = 0;
  SweepResult result_;
};

}  // namespace

SweepResult submit_slurm_sweep(const SweepRequest& req, const SlurmOptions& o, bool wait) {
  return SlurmSubmit(req, o).run(wait);
}

void print_sweep_status(const SweepRequest& req) {
  const auto rows = sweep_manifest_rows(req.spec, req.runs);
  const auto jobs = read_jobs(req.spec);
  std::map<std::string, SlurmTask> queue;
  std::string note;
  if (!jobs.empty()) {
    if (find_on_path("squeue").empty()) note = " (squeue is not on PATH: Slurm's view is missing)";
    else queue = slurm_queue();
  }
  std::map<std::string, int> counts;
  std::vector<std::vector<std::string>> table{{"run", "state", "attempts", "task", "log", "detail"}};
  for (size_t i = 0; i < req.runs.size(); ++i) {
    const auto j = jobs.find(req.runs[i].name);
    const JobRow* job = j == jobs.end() ? nullptr : &j->second;
    RunView v = view_of(rows[i], sweep_run_dir(req.spec, req.runs[i]), job, queue);
    if (v.state == "pending" && !job) v.state = "not started";
    if (v.state == "running" && !job && !run_lock_holder(sweep_run_dir(req.spec, req.runs[i]))) v.state = "stopped";
    ++counts[v.state];
    std::string log = (fs::path(req.spec.out) / rows[i].log).string();
    if (job && (v.state == "failed" || v.state == "lost" || v.state == "interrupted"))
      v.detail += "; Slurm's output " + (fs::path(req.spec.out) / job->output).string();
    table.push_back({req.runs[i].name, v.state, std::to_string(rows[i].attempts), job ? job->task : "-", log, v.detail});
  }
  std::string summary;
  for (const auto& [state, n] : counts) summary += (summary.empty() ? "" : ", ") + std::to_string(n) + " " + state;
  std::printf("sweep %s: %zu runs: %s%s\n", req.spec.out.c_str(), req.runs.size(), summary.c_str(), note.c_str());
  std::vector<size_t> width(table[0].size(), 0);
  for (const auto& r : table)
    for (size_t c = 0; c < r.size(); ++c) width[c] = std::max(width[c], r[c].size());
  for (const auto& r : table) {
    std::string line;
    for (size_t c = 0; c < r.size(); ++c)
      line += c + 1 == r.size() ? r[c] : r[c] + std::string(width[c] - r[c].size() + 2, ' ');
    std::printf("%s\n", trim(line).c_str());
  }
}

// ---- the array task -------------------------------------------------------------------

namespace {

volatile sig_atomic_t g_usr1 = 0, g_term = 0;
void on_task_signal(int sig) {
  if (sig == SIGUSR1) g_usr1 = 1;
  else g_term = 1;
}

class SlurmTaskRun {
 public:
  SlurmTaskRun(const SweepRequest& req, const SlurmOptions& o) : req_(req), o_(o) {}

  int run() {
    install();
    const std::string id = env_or("SLURM_ARRAY_TASK_ID", "");
    if (id.empty() || id.find_first_not_of("0123456789") != std::string::npos)
      throw InputError("sweep-task runs as a task of the job array `mtalab sweep --launcher slurm` submits "
                       "(SLURM_ARRAY_TASK_ID is '" + id + "'; expected a task index)");
    index_ = std::stoul(id);
    if (index_ >= req_.runs.size())
      throw InputError("array task " + id + " of a sweep of " + std::to_string(req_.runs.size()) +
                       " runs; the sweep file changed since it was submitted? (relaunch the sweep)");
    task_ = env_or("SLURM_ARRAY_JOB_ID", "?") + "_" + id;
    restarts_ = std::atoi(env_or("SLURM_RESTART_COUNT", "0").c_str());
    const SweepRun& run = req_.runs[index_];
    dir_ = sweep_run_dir(req_.spec, run);
    log_ = (fs::path(req_.spec.out) / sweep_run_log(run)).string();
    const int64_t steps = std::stoll(req_.validate(run).at("train.steps"));

    RunPlan plan;
    {
      ManifestLock lock(req_.spec);
      auto rows = read_sweep_manifest(req_.spec.out);
      ManifestRow* row = find_row(rows, run.name);
      // Decided again: a requeued task resumes, and a run finished meanwhile is left alone.
      plan = plan_sweep_run(dir_, steps, row, /*retry_failed=*/true);
      if (plan.kind == RunPlan::done) {
        row->status = "finished";
        write_sweep_manifest(req_.spec.out, sweep_varied_options(req_.spec), rows);
        say("nothing to do: " + run.name + " is finished");
        return 0;
      }
      if (plan.kind == RunPlan::skip) {
        say("not run: " + run.name + ": " + plan.why);
        return 2;
      }
      row->status = "running";
      row->exit_code = -1;
      ++row->attempts;
      write_sweep_manifest(req_.spec.out, sweep_varied_options(req_.spec), rows);
    }
    if (g_term) return finish(run, 130, 0);  // cancelled while it was being set up
    const auto t0 = std::chrono::steady_clock::now();
    const int code = run_child(run, plan);
    const double wall = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    return finish(run, code, wall);
  }

 private:
  void install() {
    struct sigaction sa {};
    sa.sa_handler = on_task_signal;
    sigemptyset(&sa.sa_mask);  // no SA_RESTART: waitpid returns to look at the signal
    sigaction(SIGUSR1, &sa, nullptr);
    sigaction(SIGTERM, &sa, nullptr);
    sigaction(SIGINT, &sa, nullptr);
  }

  void say(const std::string& what) {
    const std::string line = "== Slurm task " + task_ + " (" + now_utc() + "): " + what + "\n";
    std::fputs(line.c_str(), stdout);
    std::fflush(stdout);
    if (!log_.empty()) std::ofstream(log_, std::ios::app) << line;
  }

  ManifestRow* find_row(std::vector<ManifestRow>& rows, const std::string& name) {
    if (index_ < rows.size() && rows[index_].name == name) return &rows[index_];
    throw InputError("row " + std::to_string(index_) + " of " + sweep_manifest_path(req_.spec.out) + " is not run '" +
                     name + "'; the sweep changed since this task was submitted (relaunch the sweep)");
  }

  int threads() const {
    const int cpus = std::atoi(env_or("SLURM_CPUS_PER_TASK", "0").c_str());
    return cpus > 0 ? cpus : available_cores();
  }

  int run_child(const SweepRun& run, const RunPlan& plan) {
    std::vector<std::string> args = sweep_train_args(req_.binary, dir_, run, plan.kind);
    if (o_.ntasks > 1 || std::atoi(env_or("SLURM_NTASKS", "1").c_str()) > 1) {
      std::istringstream in(o_.launch);
      std::vector<std::string> launch;
      for (std::string w; in >> w;) launch.push_back(w);
      args.insert(args.begin(), launch.begin(), launch.end());
      // Since Slurm 22.05 srun no longer inherits the batch job's --cpus-per-task: each rank
      // gets its CPUs only when asked again.
      const std::string cpus = env_or("SLURM_CPUS_PER_TASK", "");
      if (!cpus.empty()) setenv("SRUN_CPUS_PER_TASK", cpus.c_str(), 1);
    }
    char node[256] = "?";
    gethostname(node, sizeof node - 1);
    const std::string note = " (Slurm task " + task_ + " on " + node + ", restart " + std::to_string(restarts_) +
                             ", " + now_utc() + ")";
    const pid_t pid = start_sweep_run(args, plan.kind, log_, threads(), note);
    std::printf("== %s %s%s\n", plan.kind == RunPlan::resume ? "resume" : "start", run.name.c_str(), note.c_str());
    std::fflush(stdout);
    bool forwarded = false;
    for (;;) {
      if (g_usr1 && !forwarded) {
        // The time-limit warning: the run stops after its step with a checkpoint. SIGTERM
        // (scancel, requeue, preemption, the limit) is not forwarded: Slurm sends it to
        // every process of the task, the run included.
        kill(pid, SIGTERM);
        forwarded = true;
        warned_ = true;
      }
      int status = 0;
      const pid_t r = waitpid(pid, &status, 0);
      if (r == pid) return WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
      if (r < 0 && errno != EINTR) throw IoError("waitpid: " + errno_text(errno));
    }
  }

  // The outcome into the manifest, the task's last line into the run's output first (who
  // sees the manifest's word finds the line there).
  int finish(const SweepRun& run, int code, double wall) {
    // SIGTERM before the run installed its handlers (the warning came as it started): nothing
    // was lost, the run is as interrupted as one that checkpointed.
    if (warned_ && code == 128 + SIGTERM) code = 130;
    const std::string status = sweep_status_for_exit(code);
    const std::string after_warning = "stopped with a checkpoint after the time-limit signal; ";
    if (status == "interrupted" && warned_ && restarts_ < o_.requeues) {
      record(run, "requeued", code, wall);  // before the requeue: Slurm then ends this task
      const Captured r = capture({"scontrol", "requeue", task_}, "", /*ignore_term=*/true);
      if (r.code == 0) {
        say(after_warning + "requeued (" + std::to_string(restarts_ + 1) + " of " + std::to_string(o_.requeues) + ")");
        return 0;
      }
      say(after_warning + "scontrol requeue failed (" + one_line(r.err + r.out) + "): relaunch the sweep to resume it");
      record(run, "interrupted", code, 0);
      return code;
    }
    if (status == "interrupted" && warned_)
      say(after_warning + "not requeued: " + std::to_string(o_.requeues) +
          " requeues reached (relaunch the sweep to resume it)");
    else if (status == "interrupted")
      say("stopped by SIGTERM (cancelled, preempted or out of time): relaunch the sweep to resume it");
    else
      say(status + " (exit " + std::to_string(code) + ")");
    record(run, status, code, wall);
    return code;
  }

  void record(const SweepRun& run, const std::string& status, int code, double wall) {
    ManifestLock lock(req_.spec);
    auto rows = read_sweep_manifest(req_.spec.out);
    ManifestRow* row = find_row(rows, run.name);
    row->status = status;
    row->exit_code = code;
    row->wall_s += wall;
    write_sweep_manifest(req_.spec.out, sweep_varied_options(req_.spec), rows);
  }


  const SweepRequest& req_;
  const SlurmOptions& o_;
  size_t index_ = 0;
  int restarts_ = 0;
  bool warned_ = false;
  std::string task_ = "?", dir_, log_;
};

}  // namespace

int run_slurm_task(const SweepRequest& req, const SlurmOptions& o) { return SlurmTaskRun(req, o).run(); }

}  // namespace mtalab
