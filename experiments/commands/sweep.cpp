#include "experiments/commands/sweep.h"

#include <fcntl.h>
#include <sched.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <set>
#include <sstream>
#include <thread>

#include "autograd/errors.h"
#include "experiments/run/atomic_file.h"
#include "experiments/run/resume.h"
#include "experiments/run/run_lock.h"
#include "experiments/run/run_log.h"

namespace mtalab {

namespace fs = std::filesystem;
using Clock = std::chrono::steady_clock;

namespace {

volatile sig_atomic_t g_signals = 0;
void on_stop_signal(int) { g_signals = g_signals + 1; }

// SIGINT/SIGTERM reach the sweep alone (each run has its own process group): the first is
// forwarded to every run as one SIGTERM (they stop after their step, checkpointed), a
// second as SIGINT (they exit promptly). No SA_RESTART, so waitpid returns to look.
void install_sweep_handlers() {
  struct sigaction sa {};
  sa.sa_handler = on_stop_signal;
  sigemptyset(&sa.sa_mask);
  sigaction(SIGINT, &sa, nullptr);
  sigaction(SIGTERM, &sa, nullptr);
  g_signals = 0;
}

std::string hms(double s) {
  char buf[32];
  const long t = (long)(s + 0.5);
  std::snprintf(buf, sizeof buf, "%ld:%02ld:%02ld", t / 3600, t / 60 % 60, t % 60);
  return buf;
}

using Plan = RunPlan;

// The OpenMP threads a run was started with (its log's "threads"; 0 when unknown). Its
// reductions are split by thread, so a resumed run keeps the count to stay bit for bit.
int recorded_threads(const std::string& dir) {
  try {
    RunLog l = RunLog::open_read((fs::path(dir) / "run.h5").string());
    auto t = l.find_attr("threads");
    if (t && std::holds_alternative<int64_t>(*t)) return (int)std::get<int64_t>(*t);
  } catch (const std::exception&) {
  }
  return 0;
}

std::string first_line(const std::string& path) {
  std::ifstream f(path);
  std::string line;
  std::getline(f, line);
  return line;
}

}  // namespace

RunPlan plan_sweep_run(const std::string& dir, int64_t steps, const ManifestRow* before, bool retry) {
  const std::string log = (fs::path(dir) / "run.h5").string();
  std::error_code ec;
  const bool has_ckpt = fs::exists(fs::path(dir) / "checkpoint.h5", ec);
  if (auto holder = run_lock_holder(dir)) return {Plan::skip, "busy: held by " + *holder};
  if (!fs::exists(log, ec)) {
    if (before && before->status == "failed")
      return retry ? Plan{Plan::restart, "retrying (failed before with exit " + std::to_string(before->exit_code) + ")"}
                   : Plan{Plan::skip, "failed before with exit " + std::to_string(before->exit_code) +
                                          " (see " + before->log + "; --retry-failed runs it again)"};
    return has_ckpt ? Plan{Plan::restart, "a checkpoint without a run log: started again"} : Plan{Plan::start, ""};
  }
  std::string status;
  int64_t final_steps = -1;
  try {
    RunLog l = RunLog::open_read(log);
    auto s = l.find_attr("status");
    if (s && std::holds_alternative<std::string>(*s)) status = std::get<std::string>(*s);
    const auto fin = l.finals();
    if (fin.count("steps")) final_steps = (int64_t)fin.at("steps");
  } catch (const std::exception& e) {
    return retry ? Plan{Plan::restart, std::string("retrying (unreadable log: ") + e.what() + ")"}
                 : Plan{Plan::skip, std::string("unreadable log: ") + e.what() + " (--retry-failed starts it again)"};
  }
  if (status == "finished" || (status.empty() && final_steps >= 0)) {
    if (final_steps >= steps) return {Plan::done, "finished"};
    return {Plan::resume, "extended from " + std::to_string(final_steps) + " to " + std::to_string(steps) + " steps"};
  }
  if (status == "diverged")
    return retry ? Plan{Plan::restart, "retrying (diverged)"}
                 : Plan{Plan::skip, "diverged (--retry-failed starts it again)"};
  if (before && before->status == "failed" && !retry)
    return {Plan::skip, "failed before with exit " + std::to_string(before->exit_code) + " (see " + before->log +
                            "; --retry-failed runs it again)"};
  if (has_ckpt) return {Plan::resume, "resumed from its checkpoint"};
  return {Plan::restart, "started again (stopped before its first checkpoint)"};
}

std::string sweep_status_for_exit(int code) {
  if (code == 0) return "finished";
  if (code == 3) return "diverged";
  if (code == 130) return "interrupted";
  return "failed";
}

std::vector<std::string> sweep_train_args(const std::string& binary, const std::string& dir, const SweepRun& r,
                                          RunPlan::Kind kind) {
  std::vector<std::string> args{binary, "train", "--run.out", dir};
  if (kind == Plan::resume) args.push_back("--resume");
  if (kind == Plan::restart) args.push_back("--overwrite");
  for (const auto& [k, v] : r.options) {
    args.push_back("--" + k);
    args.push_back(v);
  }
  return args;
}

pid_t start_sweep_run(const std::vector<std::string>& args, RunPlan::Kind kind, const std::string& log,
                      int threads, const std::string& note) {
  {
    std::ofstream f(log, std::ios::app);
    f << "== " << (kind == Plan::resume ? "resume" : kind == Plan::restart ? "start again" : "start") << note << ": ";
    for (const auto& a : args) f << a << ' ';
    f << "\n";
  }
  const int fd = ::open(log.c_str(), O_WRONLY | O_APPEND | O_CLOEXEC);
  if (fd < 0) throw IoError("cannot open '" + log + "': " + errno_text(errno));
  std::vector<std::string> args_s = args;
  std::vector<char*> argv;
  for (auto& a : args_s) argv.push_back(a.data());
  argv.push_back(nullptr);
  const std::string omp = "OMP_NUM_THREADS=" + std::to_string(threads);
  std::vector<std::string> env_s{omp};
  for (char** e = environ; *e; ++e)
    if (std::string(*e).rfind("OMP_NUM_THREADS=", 0) != 0) env_s.push_back(*e);
  std::vector<char*> envp;
  for (auto& e : env_s) envp.push_back(e.data());
  envp.push_back(nullptr);
  const pid_t parent = getpid();
  std::fflush(nullptr);
  // The stop signals are blocked across the fork, so the child holds one sent before it
  // exec's `mtalab train` (which unblocks them in install_stop_handlers). Blocking only in
  // the child left a window after fork in which the sweep's own inherited handler took the
  // signal in the child, and the run never heard of it.
  sigset_t stop, before;
  sigemptyset(&stop);
  sigaddset(&stop, SIGINT);
  sigaddset(&stop, SIGTERM);
  sigprocmask(SIG_BLOCK, &stop, &before);
  const pid_t pid = fork();
  if (pid != 0) sigprocmask(SIG_SETMASK, &before, nullptr);  // the sweep: a deferred signal arrives now
  if (pid < 0) {
    ::close(fd);
    throw IoError("cannot start a run: fork: " + errno_text(errno));
  }
  if (pid == 0) {
    setpgid(0, 0);                          // a terminal's ^C reaches the sweep only
    prctl(PR_SET_PDEATHSIG, SIGTERM);       // a killed sweep stops its runs cleanly
    if (getppid() != parent) _exit(130);
    signal(SIGINT, SIG_DFL);
    signal(SIGTERM, SIG_DFL);
    signal(SIGUSR1, SIG_DFL);
    // SIGINT/SIGTERM stay blocked (from before the fork) until `mtalab train` installs its
    // handlers: a stop signal in between is then a clean stop request, never a default-action
    // death that the manifest would call a failure.
    dup2(fd, 1);
    dup2(fd, 2);
    execvpe(argv[0], argv.data(), envp.data());
    _exit(127);
  }
  ::close(fd);
  return pid;
}

std::string sweep_dry_run_line(const std::string& name, const RunPlan& p) {
  const char* what[] = {"would start", "would resume", "would start again", "done", "skipped"};
  const std::string padded = name + std::string(name.size() < 40 ? 40 - name.size() : 0, ' ');
  return "  " + padded + " " + what[p.kind] + (p.why.empty() ? "" : ": ") + p.why;
}

std::string sweep_run_dir(const SweepSpec& spec, const SweepRun& run) { return (fs::path(spec.out) / run.name).string(); }
std::string sweep_run_log(const SweepRun& run) { return (fs::path("logs") / (run.name + ".log")).string(); }

std::string sweep_run_outcome(const std::string& dir) {
  try {
    RunLog l = RunLog::open_read((fs::path(dir) / "run.h5").string());
    const auto fin = l.finals();
    std::string metric;
    if (auto m = l.find_attr("metric"); m && std::holds_alternative<std::string>(*m)) metric = std::get<std::string>(*m);
    char buf[160];
    std::snprintf(buf, sizeof buf, "eval_loss %.4f | %s %.4f", fin.count("eval_loss") ? fin.at("eval_loss") : NAN,
                  metric.c_str(), fin.count(metric) ? fin.at(metric) : NAN);
    return buf;
  } catch (const std::exception&) {
    return "";
  }
}

namespace {

class Sweep {
 public:
  explicit Sweep(const SweepRequest& req) : req_(req), varied_(sweep_varied_options(req.spec)) {}

  SweepResult run() {
    threads_ = sweep_threads_per_job(req_.jobs, requested_threads(), available_cores());
    resolved_ = validate_sweep_runs(req_);
    check_sweep_identity(req_, resolved_);
    rows_ = sweep_manifest_rows(req_.spec, req_.runs);
    if (req_.dry_run) return dry_run();
    lock_ = RunLock::acquire(req_.spec.out, "mtalab sweep");
    fs::create_directories(fs::path(req_.spec.out) / "logs");
    const std::string ini = sweep_spec_text(req_.spec);
    replace_file((fs::path(req_.spec.out) / "sweep.ini").string(), ini.data(), ini.size());
    wait_for_earlier_runs();
    plan_all();
    install_sweep_handlers();
    schedule();
    write_manifest();
    print_summary();
    return result_;
  }

 private:
  struct Job {
    size_t run;
    pid_t pid;
    Clock::time_point start;
  };

  int requested_threads() const {
    auto it = req_.spec.base.find("train.threads");
    if (it == req_.spec.base.end()) return 0;
    try {
      return std::stoi(it->second);
    } catch (const std::exception&) {
      throw InputError("train.threads = '" + it->second + "'; expected an integer");
    }
  }

  std::string dir_of(size_t i) const { return sweep_run_dir(req_.spec, req_.runs[i]); }
  std::string log_of(size_t i) const { return sweep_run_log(req_.runs[i]); }
  int64_t steps_of(size_t i) const { return std::stoll(resolved_[i].at("train.steps")); }

  SweepResult dry_run() {
    std::printf("sweep %s: %zu runs, %d at once, %d thread%s each\n", req_.spec.out.c_str(), req_.runs.size(),
                req_.jobs, threads_, threads_ == 1 ? "" : "s");
    std::vector<Plan> plans;
    for (size_t i = 0; i < req_.runs.size(); ++i)
      plans.push_back(plan_sweep_run(dir_of(i), steps_of(i), &rows_[i], req_.retry_failed));
    check_resumed_threads(plans);
    for (size_t i = 0; i < req_.runs.size(); ++i)
      std::printf("%s%s\n", sweep_dry_run_line(req_.runs[i].name, plans[i]).c_str(), thread_note(i, plans[i]).c_str());
    return result_;
  }

  // The threads a run is started with: a resumed run's recorded count when the sweep does
  // not set train.threads (check_resumed_threads refused any count above this --jobs').
  int threads_for(size_t i, const Plan& p) const {
    if (p.kind != Plan::resume || req_.spec.base.count("train.threads")) return threads_;
    const int t = recorded_threads(dir_of(i));
    return t > 0 ? t : threads_;
  }

  std::string thread_note(size_t i, const Plan& p) const {
    const int t = threads_for(i, p);
    if (t == threads_) return "";
    return " (with its recorded " + std::to_string(t) + " thread" + (t == 1 ? "" : "s") + ", bit for bit; --jobs " +
           std::to_string(req_.jobs) + " gives " + std::to_string(threads_) + ")";
  }

  // A relaunch with another --jobs must not change a resumed run's thread count silently:
  // fewer threads than it had would oversubscribe nothing, so it keeps its own; more than
  // this --jobs leaves each run is refused, naming the run and the --jobs it needs.
  void check_resumed_threads(const std::vector<Plan>& plans) const {
    if (req_.spec.base.count("train.threads")) return;  // given explicitly: a recorded option change
    std::string errors;
    int bad = 0, need = req_.jobs;
    for (size_t i = 0; i < plans.size(); ++i) {
      if (plans[i].kind != Plan::resume) continue;
      const int t = recorded_threads(dir_of(i));
      if (t <= threads_) continue;
      need = std::min(need, std::max(1, available_cores() / t));
      if (++bad <= 20)
        errors += "\n  run '" + req_.runs[i].name + "' was started with " + std::to_string(t) + " threads; --jobs " +
                  std::to_string(req_.jobs) + " gives each run " + std::to_string(threads_);
    }
    if (bad > 0)
      throw InputError(std::to_string(bad) + " run" + (bad == 1 ? "" : "s") +
                       " to resume would change thread count, and so would no longer be bit for bit (nothing was run):" +
                       errors + "\n  expected --jobs " + std::to_string(need) +
                       " (or --train.threads N to change it, recorded in each run's log)");
  }

  // Runs of an earlier sweep that was killed stop after their current step (they get
  // SIGTERM when their sweep dies): wait for them rather than skip them as busy.
  void wait_for_earlier_runs() {
    auto held = [&] {
      int n = 0;
      for (size_t i = 0; i < req_.runs.size(); ++i) n += run_lock_holder(dir_of(i)) ? 1 : 0;
      return n;
    };
    int n = held();
    if (n == 0) return;
    std::printf("waiting up to 60 s for %d runs held by other processes (an earlier sweep's runs stopping)\n", n);
    std::fflush(stdout);
    for (int t = 0; t < 600 && n > 0; ++t) {
      std::this_thread::sleep_for(std::chrono::milliseconds(100));
      n = held();
    }
  }

  void plan_all() {
    int todo = 0, done = 0, skipped = 0;
    for (size_t i = 0; i < req_.runs.size(); ++i) {
      const Plan p = plan_sweep_run(dir_of(i), steps_of(i), &rows_[i], req_.retry_failed);
      plans_.push_back(p);
      if (p.kind == Plan::done) {
        ++done;
        rows_[i].status = "finished";
        ++result_.finished;
      } else if (p.kind == Plan::skip) {
        ++skipped;
        std::printf("skip %s: %s\n", req_.runs[i].name.c_str(), p.why.c_str());
        count_skip(i, p);
      } else {
        ++todo;
        queue_.push_back(i);
      }
    }
    check_resumed_threads(plans_);
    // Seed by seed: every configuration's first seed runs before any second one, so a sweep
    // stopped half-way already compares every configuration.
    std::stable_sort(queue_.begin(), queue_.end(),
                     [&](size_t a, size_t b) { return req_.runs[a].seed < req_.runs[b].seed; });
    todo_ = todo;
    std::printf("sweep %s: %zu runs: %d finished earlier, %d to run, %d skipped; %d at once, %d thread%s each\n",
                req_.spec.out.c_str(), req_.runs.size(), done, todo, skipped, req_.jobs, threads_, threads_ == 1 ? "" : "s");
    std::fflush(stdout);
  }

  void count_skip(size_t i, const Plan& p) {
    if (p.why.rfind("busy", 0) == 0) {
      ++result_.busy;
    } else if (p.why.rfind("diverged", 0) == 0) {
      ++result_.diverged;
      rows_[i].status = "diverged";
    } else {
      ++result_.failed;
      if (rows_[i].status != "failed") rows_[i].status = "failed";
    }
  }

  void schedule() {
    size_t next = 0;
    while (next < queue_.size() || !jobs_.empty()) {
      if (g_signals > 0) stop_children();
      while (g_signals == 0 && next < queue_.size() && (int)jobs_.size() < req_.jobs) launch(queue_[next++]);
      if (jobs_.empty()) break;
      int status = 0;
      const pid_t pid = waitpid(-1, &status, 0);
      if (pid < 0) continue;  // a signal: look at it first
      reap(pid, status);
    }
    if (g_signals > 0) result_.stopped = true;
  }

  void stop_children() {
    if (forwarded_ == (int)g_signals || forwarded_ >= 2) return;
    const int sig = forwarded_ == 0 ? SIGTERM : SIGINT;
    for (const auto& j : jobs_) kill(j.pid, sig);
    if (forwarded_ == 0)
      std::fprintf(stderr, "sweep: stopping: %zu running runs asked to stop after their step (again: at once); "
                           "relaunch the sweep to resume them\n", jobs_.size());
    forwarded_ = forwarded_ + 1;
  }

  void launch(size_t i) {
    const SweepRun& r = req_.runs[i];
    const Plan& p = plans_[i];
    const std::string note = thread_note(i, p);
    const pid_t pid = start_sweep_run(sweep_train_args(req_.binary, dir_of(i), r, p.kind), p.kind,
                                      (fs::path(req_.spec.out) / log_of(i)).string(), threads_for(i, p), note);
    jobs_.push_back({i, pid, Clock::now()});
    ++rows_[i].attempts;
    rows_[i].status = "running";
    rows_[i].exit_code = -1;
    ++started_;
    std::printf("[%d/%d] %s %s (pid %d, log %s/%s)%s\n", started_, todo_,
                p.kind == Plan::resume ? "resume" : p.kind == Plan::restart ? "restart" : "start", r.name.c_str(), pid,
                req_.spec.out.c_str(), log_of(i).c_str(), note.c_str());
    std::fflush(stdout);
    write_manifest();
  }

  void reap(pid_t pid, int status) {
    size_t k = 0;
    while (k < jobs_.size() && jobs_[k].pid != pid) ++k;
    if (k == jobs_.size()) return;
    const Job j = jobs_[k];
    jobs_.erase(jobs_.begin() + (long)k);
    const int code = WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
    const double wall = std::chrono::duration<double>(Clock::now() - j.start).count();
    ManifestRow& m = rows_[j.run];
    m.exit_code = code;
    m.wall_s += wall;
    // A run the sweep asked to stop is interrupted however it ended (a second signal's
    // default action included): the relaunch resumes it.
    const bool our_stop = forwarded_ > 0 && WIFSIGNALED(status) &&
                          (WTERMSIG(status) == SIGTERM || WTERMSIG(status) == SIGINT);
    m.status = our_stop ? "interrupted" : sweep_status_for_exit(code);
    ++ended_;
    if (m.status == "finished") {
      ++result_.finished;
      walls_ += wall;
      ++timed_;
    } else if (m.status == "diverged") {
      ++result_.diverged;
    } else if (m.status == "interrupted") {
      ++result_.interrupted;
    } else {
      ++result_.failed;
    }
    std::string detail = m.status == "finished" ? sweep_run_outcome(dir_of(j.run))
                         : m.status == "failed" ? "exit " + std::to_string(code) + ", see " + req_.spec.out + "/" + m.log
                                                : "exit " + std::to_string(code);
    const int left = todo_ - ended_;
    std::string eta = "-";
    if (timed_ > 0 && g_signals == 0) eta = hms(walls_ / timed_ * left / std::max(1, req_.jobs));
    std::printf("[%d/%d] %s %s in %s: %s | %d done, %zu running, %d to go, eta %s\n", ended_, todo_, m.status.c_str(),
                req_.runs[j.run].name.c_str(), hms(wall).c_str(), detail.c_str(), ended_, jobs_.size(),
                left - (int)jobs_.size(), eta.c_str());
    std::fflush(stdout);
    write_manifest();
  }

  void write_manifest() { write_sweep_manifest(req_.spec.out, varied_, rows_); }

  void print_summary() {
    std::printf("sweep %s: %d of %zu runs finished, %d diverged, %d failed, %d interrupted, %d busy%s\n"
                "  manifest: %s; table: mtalab report %s\n",
                req_.spec.out.c_str(), result_.finished, req_.runs.size(), result_.diverged, result_.failed,
                result_.interrupted, result_.busy, result_.stopped ? " (stopped: relaunch to resume)" : "",
                sweep_manifest_path(req_.spec.out).c_str(), req_.spec.out.c_str());
  }

  const SweepRequest& req_;
  std::vector<std::string> varied_;
  std::vector<std::map<std::string, std::string>> resolved_;
  std::vector<ManifestRow> rows_;
  std::vector<Plan> plans_;
  std::vector<size_t> queue_;
  std::vector<Job> jobs_;
  RunLock lock_;
  SweepResult result_;
  int threads_ = 1, todo_ = 0, started_ = 0, ended_ = 0, timed_ = 0, forwarded_ = 0;
  double walls_ = 0;
};

std::vector<std::string> split_tabs(const std::string& line) {
  std::vector<std::string> out;
  std::string cur;
  std::istringstream in(line);
  while (std::getline(in, cur, '\t')) out.push_back(cur);
  return out;
}

}  // namespace

int available_cores() {
  cpu_set_t set;
  if (sched_getaffinity(0, sizeof set, &set) == 0) return std::max(1, CPU_COUNT(&set));
  return std::max(1u, std::thread::hardware_concurrency());
}

int sweep_threads_per_job(int jobs, int threads, int cores) {
  if (jobs < 1) throw InputError("--jobs " + std::to_string(jobs) + "; expected at least 1");
  if (jobs > cores)
    throw InputError("--jobs " + std::to_string(jobs) + " on " + std::to_string(cores) +
                     " cores; expected at most one run per core (OpenMP threads spin: an oversubscribed run was "
                     "measured 3.4x slower)");
  if (threads == 0) return std::max(1, cores / jobs);
  if (jobs * threads > cores)
    throw InputError("--jobs " + std::to_string(jobs) + " x --train.threads " + std::to_string(threads) + " = " +
                     std::to_string(jobs * threads) + " threads on " + std::to_string(cores) +
                     " cores; expected jobs x threads <= cores (OpenMP threads spin: an oversubscribed run was "
                     "measured 3.4x slower)");
  return threads;
}

std::string sweep_manifest_path(const std::string& sweep_dir) { return (fs::path(sweep_dir) / "sweep.tsv").string(); }

std::vector<ManifestRow> read_sweep_manifest(const std::string& sweep_dir) {
  std::ifstream f(sweep_manifest_path(sweep_dir));
  std::vector<ManifestRow> out;
  std::string line;
  if (!f || !std::getline(f, line)) return out;
  const auto header = split_tabs(line);
  while (std::getline(f, line)) {
    const auto cols = split_tabs(line);
    if (cols.size() != header.size()) continue;  // a foreign or hand-edited line
    ManifestRow m;
    for (size_t i = 0; i < cols.size(); ++i) {
      const std::string& h = header[i];
      const std::string& v = cols[i];
      try {
        if (h == "name") m.name = v;
        else if (h == "configuration") m.configuration = v;
        else if (h == "seed") m.seed = std::stoll(v);
        else if (h == "status") m.status = v;
        else if (h == "exit_code") m.exit_code = v == "-" ? -1 : std::stoi(v);
        else if (h == "attempts") m.attempts = std::stoi(v);
        else if (h == "wall_s") m.wall_s = std::stod(v);
        else if (h == "log") m.log = v;
        else m.varied[h] = v;
      } catch (const std::exception&) {
      }
    }
    if (!m.name.empty()) out.push_back(m);
  }
  return out;
}

std::vector<std::string> sweep_varied_options(const SweepSpec& spec) {
  std::vector<std::string> out;
  for (const auto& a : spec.axes) out.push_back(a.option);
  std::set<std::string> seen(out.begin(), out.end());
  for (const auto& c : spec.configurations)
    for (const auto& [k, v] : c.options)
      if (seen.insert(k).second) out.push_back(k);
  return out;
}

std::vector<ManifestRow> sweep_manifest_rows(const SweepSpec& spec, const std::vector<SweepRun>& runs) {
  std::map<std::string, ManifestRow> previous;
  for (auto& row : read_sweep_manifest(spec.out)) previous[row.name] = row;
  const auto varied = sweep_varied_options(spec);
  std::vector<ManifestRow> rows(runs.size());
  for (size_t i = 0; i < runs.size(); ++i) {
    const auto& r = runs[i];
    ManifestRow& m = rows[i];
    if (auto it = previous.find(r.name); it != previous.end()) m = it->second;
    m.name = r.name;
    m.configuration = r.configuration;
    m.seed = r.seed;
    m.log = sweep_run_log(r);
    m.varied.clear();
    for (const auto& k : varied) m.varied[k] = r.options.count(k) ? r.options.at(k) : "-";
  }
  return rows;
}

void write_sweep_manifest(const std::string& sweep_dir, const std::vector<std::string>& varied,
                          const std::vector<ManifestRow>& rows) {
  std::ostringstream o;
  o << "name\tconfiguration\tseed\tstatus\texit_code\tattempts\twall_s\tlog";
  for (const auto& k : varied) o << "\t" << k;
  o << "\n";
  for (const auto& m : rows) {
    char wall[32];
    std::snprintf(wall, sizeof wall, "%.1f", m.wall_s);
    o << m.name << "\t" << m.configuration << "\t" << m.seed << "\t" << m.status << "\t"
      << (m.exit_code < 0 ? std::string("-") : std::to_string(m.exit_code)) << "\t" << m.attempts << "\t" << wall
      << "\t" << m.log;
    for (const auto& k : varied) o << "\t" << (m.varied.count(k) ? m.varied.at(k) : "-");
    o << "\n";
  }
  const std::string s = o.str();
  replace_file(sweep_manifest_path(sweep_dir), s.data(), s.size());
}

namespace {

// Every file a run's directory will hold fits PATH_MAX, each component NAME_MAX.
void check_run_paths(const std::string& dir) {
  std::error_code ec;
  const fs::path longest = fs::absolute(fs::path(dir) / "checkpoint_diverged.h5.tmp", ec);
  for (const auto& part : longest)
    if (part.native().size() > 255)
      throw InputError("path component '" + part.native().substr(0, 40) + "...' of " + dir + " is " +
                       std::to_string(part.native().size()) + " bytes; expected at most 255 (NAME_MAX)");
  if (longest.native().size() >= 4096)
    throw InputError("the run's files would have paths of " + std::to_string(longest.native().size()) + " bytes (" +
                     dir + "/checkpoint_diverged.h5.tmp); expected under 4096 (PATH_MAX): a shorter out or run name");
}

}  // namespace

std::vector<std::map<std::string, std::string>> validate_sweep_runs(const SweepRequest& req) {
  std::vector<std::map<std::string, std::string>> resolved;
  std::string errors;
  int bad = 0;
  for (const auto& r : req.runs) {
    try {
      check_run_paths(sweep_run_dir(req.spec, r));
      resolved.push_back(req.validate(r));
    } catch (const InputError& e) {
      resolved.emplace_back();
      if (++bad <= 20) errors += "\n  run '" + r.name + "': " + e.what();
    }
  }
  if (bad > 0)
    throw InputError(std::to_string(bad) + " of " + std::to_string(req.runs.size()) +
                     " runs of the sweep are invalid (nothing was run):" + errors);
  return resolved;
}

namespace {

// The options that name a sweep's runs: the axes with more than one value, the seeds, and
// whether configurations lead the names.
std::vector<std::string> naming_options(const SweepSpec& spec) {
  std::vector<std::string> out;
  for (const auto& a : spec.axes)
    if (a.values.size() > 1 || a.option == "train.seed") out.push_back(a.option);
  std::sort(out.begin(), out.end());
  if (!spec.configurations.empty()) out.push_back("[configuration ...]");
  return out;
}

std::string joined(const std::vector<std::string>& v) {
  std::string out;
  for (const auto& x : v) out += (out.empty() ? "" : ", ") + x;
  return out.empty() ? "nothing" : out;
}

std::string shown(const std::string& v) { return v.empty() ? "''" : v; }

}  // namespace

std::vector<std::string> sweep_identity_differences(const SweepSpec& owner, const SweepSpec& now,
                                                    const VariantScope& scope) {
  std::vector<std::string> out;
  const auto a = naming_options(owner), b = naming_options(now);
  if (a != b) out.push_back("its runs are named by " + joined(a) + " there, by " + joined(b) + " here");
  std::map<std::string, const SweepRun*> mine;
  const auto old_runs = expand_sweep(owner, scope), new_runs = expand_sweep(now, scope);
  for (const auto& r : old_runs) mine[r.name] = &r;
  std::set<std::string> said;
  for (const auto& r : new_runs) {
    auto it = mine.find(r.name);
    if (it == mine.end()) continue;
    for (const auto& d : defining_differences(it->second->options, r.options))
      if (said.insert(d.option).second)
        out.push_back(d.option + " is " + shown(d.was) + " there, " + shown(d.now) + " here (e.g. run '" + r.name +
                      "'; it defines the " + d.defines + ")");
  }
  return out;
}

void check_sweep_identity(const SweepRequest& req, const std::vector<std::map<std::string, std::string>>& resolved) {
  const fs::path ini = fs::path(req.spec.out) / "sweep.ini";
  std::error_code ec;
  if (fs::exists(ini, ec)) {
    SweepSpec owner;
    try {
      owner = read_sweep_spec(ini.string());
    } catch (const InputError& e) {
      throw InputError("sweep directory " + req.spec.out + " holds a sweep.ini that cannot be read (" + e.what() +
                       "); expected the sweep.ini mtalab sweep wrote, or another out");
    }
    const auto diffs = sweep_identity_differences(owner, req.spec, req.scope);
    if (!diffs.empty()) {
      std::string from = owner.file;
      if (auto p = first_line(ini.string()); p.find("(from ") != std::string::npos)
        from = p.substr(p.find("(from ") + 6, p.rfind(')') - p.find("(from ") - 6);
      std::string lines;
      for (const auto& d : diffs) lines += "\n  " + d;
      throw InputError("sweep directory " + req.spec.out + " belongs to another sweep (" + from + ", its sweep.ini): " +
                       std::to_string(diffs.size()) + " difference" + (diffs.size() == 1 ? "" : "s") + " from " +
                       (req.spec.file.empty() ? std::string("this sweep") : req.spec.file) + ":" + lines +
                       "\n  expected the same sweep (only tunable options such as train.steps or train.lr, more "
                       "seeds, axis values or configurations may change), or another out (nothing was run)");
    }
  }
  std::string errors;
  int bad = 0;
  for (size_t i = 0; i < req.runs.size() && i < resolved.size(); ++i) {
    const std::string log = (fs::path(sweep_run_dir(req.spec, req.runs[i])) / "run.h5").string();
    if (!fs::exists(log, ec)) continue;
    LoggedRun run;
    try {
      run = read_logged_run(log);
    } catch (const std::exception&) {
      continue;  // unreadable: plan_sweep_run says what happens to it
    }
    const auto diffs = defining_differences(run.options, resolved[i]);
    if (diffs.empty()) continue;
    const auto& d = diffs.front();
    if (++bad <= 20)
      errors += "\n  run '" + req.runs[i].name + "': " + d.option + " is " + shown(d.now) + " in the sweep, but " + log +
                " was trained with " + shown(d.was) + " (it defines the " + d.defines + ")" +
                (diffs.size() > 1 ? " and " + std::to_string(diffs.size() - 1) + " more" : "");
  }
  if (bad > 0)
    throw InputError(std::to_string(bad) + " of the sweep's runs in " + req.spec.out +
                     " are of another model or data than the sweep asks for (nothing was run):" + errors +
                     "\n  expected the sweep they were trained in, or another out");
}

SweepResult run_sweep(const SweepRequest& req) { return Sweep(req).run(); }

}  // namespace mtalab
