#include "experiments/train/trainer.h"

#include <sys/resource.h>
#include <unistd.h>

#include <chrono>
#include <cmath>
#include <csignal>
#include <cstdarg>
#include <cstdio>
#include <ctime>
#include <filesystem>
#include <limits>
#include <memory>
#include <new>
#include <optional>
#include <unordered_map>

#include "autograd/errors.h"
#include "autograd/kernels.h"
#include "autograd/ops.h"
#include "autograd/grad_ready_hook.h"
#include "experiments/dist/bucketed_sum.h"
#include "experiments/dist/communicator.h"
#include "experiments/dist/nccl_buckets.h"
#include "experiments/dist/ordered_sum.h"
#include "experiments/dist/zero_shard.h"
#include "experiments/run/atomic_file.h"
#include "experiments/run/checkpoint_file.h"
#include "experiments/run/fault_injection.h"
#include "experiments/train/memory_check.h"
#include "experiments/run/resume.h"
#include "experiments/run/run_dir.h"
#include "experiments/run/run_lock.h"
#include "experiments/run/run_log.h"
#include "experiments/run/stop_signal.h"
#include "experiments/tasks/train_data.h"

#ifndef MTALAB_VERSION
#define MTALAB_VERSION "0.0.0"
#endif
#ifndef MTALAB_GIT_COMMIT
#define MTALAB_GIT_COMMIT "unknown"
#endif

namespace mtalab {

namespace {

using Clock = std::chrono::steady_clock;
double seconds_since(Clock::time_point t) { return std::chrono::duration<double>(Clock::now() - t).count(); }

std::string hms(double s) {
  if (!std::isfinite(s) || s < 0) return "?";
  const long t = (long)(s + 0.5);
  char buf[32];
  if (t >= 3600)
    std::snprintf(buf, sizeof buf, "%ld:%02ld:%02ld", t / 3600, t / 60 % 60, t % 60);
  else
    std::snprintf(buf, sizeof buf, "%ld:%02ld", t / 60, t % 60);
  return buf;
}

std::string fmt(const char* f, ...) __attribute__((format(printf, 1, 2)));
std::string fmt(const char* f, ...) {
  char buf[1024];
  va_list ap;
  va_start(ap, f);
  std::vsnprintf(buf, sizeof buf, f, ap);
  va_end(ap);
  return buf;
}

CheckpointTensor to_ckpt(const Tensor& t) {
  CheckpointTensor c;
  c.shape = t.shape();
  if (t.dtype() == DType::f64)
    c.values = t.to_vector<double>();
  else
    c.values = t.to_vector<float>();
  return c;
}

Tensor from_ckpt(const CheckpointTensor& c, DType dtype) {
  return std::visit([&](const auto& v) { return from_vector(v, c.shape, {dtype}); }, c.values);
}

// The first tensor holding a NaN or an infinity ("" when all are finite). Runs on the host
// copies a checkpoint is made of: no extra device reads.
std::string first_nonfinite_grad(const NamedParams& params) {
  NoGradGuard ng;
  for (auto& [n, p] : params)
    if (p.grad().defined() && !std::isfinite(sum(to_dtype(p.grad(), DType::f64)).item())) return n;
  return "none";
}

std::string host_name() {
  char buf[256] = {0};
  gethostname(buf, sizeof buf - 1);
  return buf;
}

std::string now_iso() {
  std::time_t t = std::time(nullptr);
  char buf[64];
  std::strftime(buf, sizeof buf, "%Y-%m-%dT%H:%M:%SZ", std::gmtime(&t));
  return buf;
}

// Progress lines on stdout. A closed pipe (`mtalab train ... | head`) ends them, not the
// run: SIGPIPE is ignored (stop_signal.h) and the first failed write says so on stderr.
class Console {
 public:
  Console(bool quiet, std::string log_path) : quiet_(quiet), log_path_(std::move(log_path)) {}
  void line(const std::string& s) {
    if (quiet_ || broken_) return;
    std::fputs(s.c_str(), stdout);
    std::fputc('\n', stdout);
    if (std::fflush(stdout) != 0 || std::ferror(stdout)) {
      broken_ = true;
      std::clearerr(stdout);
      std::fprintf(stderr, "mtalab: stdout is closed; the run continues without progress lines, logging to %s\n",
                   log_path_.c_str());
    }
  }

 private:
  bool quiet_, broken_ = false;
  std::string log_path_;
};

// One training run, from options to a closed log. The setup steps run in this order and
// nothing before open_log() writes a file; the loop is a sequence of the named steps below.
class Training {
 public:
  explicit Training(const RunRequest& req)
      : req_(req), c_(req.config), files_(req.config.out_dir), out_(req.quiet || dist::rank() != 0, files_.log),
        dropout_gen_(req.config.seed * 7919ull + 17) {}

  RunSummary run() {
    dist::set_timeout(c_.dist_timeout);
    std::string error;  // with several ranks, a rank's bad input is every rank's (agree())
    try {
      if (req_.resume) check_resumed_options();
      build();
    } catch (const InputError& e) {
      if (world_ == 1) throw;
      error = e.what();
    }
    agree(error, identity(), "the options, data and build of every rank");
    setup_gradient_sum();
    fault::at("startup");
    check_startup_stop("setting up the model");
    try {
      claim_directory();
      if (req_.resume)
        restore_checkpoint();
      else if (!req_.init_from.empty())
        load_init_from();
    } catch (const InputError& e) {
      if (world_ == 1) throw;
      error = e.what();
    }
    agree(error, checkpoint_identity(), "the checkpoint every rank starts from");
    shard_optimizer();
    check_startup_stop("checking the run directory");
    if (writer()) open_log();
    try {
      announce();
      if (!req_.resume && !req_.init_from.empty()) {
        announce_init_from();
        session_start_ = window_start_ = Clock::now();
      }
      while (step_ < c_.steps) {
        if (stop_due()) return stop_cleanly();
        train_step();
        const bool eval_now = step_ % c_.eval_every == 0 || step_ == c_.steps;
        if (step_ % c_.log_every == 0 || step_ == c_.steps) {
          verify_replicas();
          log_row(/*flush=*/!eval_now);
        }
        if (eval_now) evaluate();
        if (eval_now || (c_.checkpoint_every > 0 && step_ % c_.checkpoint_every == 0)) checkpoint();
        if (req_.stop_after > 0 && step_ >= req_.stop_after) stop_asked_ = true;
      }
      return finish();
    } catch (const IoError& e) {
      throw IoError(std::string(e.what()) + "; stopped at step " + std::to_string(step_) + ": " + on_disk());
    } catch (const dist::CommError& e) {
      throw dist::CommError(std::string(e.what()) + "; stopped at step " + std::to_string(step_) + ": " + on_disk());
    } catch (const std::bad_alloc& e) {
      const std::string what = dynamic_cast<const DeviceOutOfMemory*>(&e) ? std::string(" (") + e.what() + ")" : "";
      throw OutOfMemoryError("out of memory at step " + std::to_string(step_) + what + ": " + on_disk() +
                             "; expected a smaller batch or model (continue with --resume and a smaller "
                             "--train.batch_size, or --train.grad_accum)");
    }
  }

 private:
  // --- setup ------------------------------------------------------------------------

  bool writer() const { return rank_ == 0; }  // rank 0 alone writes the log and checkpoints

  // What must be the same on every rank, one "key=value" line each: every resolved option,
  // the flags, the data files' contents and the build.
  std::string identity() const {
    if (world_ == 1) return "";
    std::string id;
    for (auto& [k, v] : req_.options) id += "option --" + k + "=" + v + "\n";
    id += std::string("flag --resume=") + (req_.resume ? "yes" : "no") + "\n";
    id += std::string("flag --overwrite=") + (req_.overwrite ? "yes" : "no") + "\n";
    id += "flag --init-from=" + req_.init_from + "\n";
    for (const std::string& f : {c_.data_path, c_.val_path, req_.init_from})
      if (!f.empty()) id += "contents of " + f + "=" + dist::file_hash(f) + "\n";
    id += std::string("mtalab build=") + MTALAB_VERSION + " " + MTALAB_GIT_COMMIT + "\n";
    return id;
  }

  std::string checkpoint_identity() const {
    if (world_ == 1 || !req_.resume) return "";
    return "contents of " + files_.checkpoint + "=" + dist::file_hash(files_.checkpoint) + "\n";
  }

  // Every rank's identity against rank 0's, then every rank's error: the same InputError on
  // every rank (exit 2), before any file is written, when anything differs or failed.
  void agree(const std::string& error, const std::string& id, const char* what) {
    if (world_ == 1) return;
    const auto all = dist::allgather(id + '\0' + error, what);
    auto lines = [](const std::string& s) {
      std::map<std::string, std::string> m;
      size_t at = 0;
      while (at < s.size()) {
        const size_t nl = s.find('\n', at), eq = s.find('=', at);
        m[s.substr(at, eq - at)] = s.substr(eq + 1, nl - eq - 1);
        at = nl + 1;
      }
      return m;
    };
    auto split = [](const std::string& s) { return std::make_pair(s.substr(0, s.find('\0')), s.substr(s.find('\0') + 1)); };
    const auto ref = lines(split(all[0]).first);
    for (size_t r = 1; r < all.size(); ++r) {
      auto mine = lines(split(all[r]).first);
      for (auto& [k, v] : ref) mine.emplace(k, "(absent)");
      for (auto& [k, v] : mine) {
        const std::string v0 = ref.count(k) ? ref.at(k) : "(absent)";
        if (v0 != v)
          throw InputError("rank " + std::to_string(r) + " was started differently from rank 0: " + k + " is '" + v +
                           "' there and '" + v0 + "' on rank 0; expected every rank to run the same command on the "
                           "same files (nothing was written)");
      }
    }
    for (size_t r = 0; r < all.size(); ++r) {
      const std::string err = split(all[r]).second;
      if (!err.empty()) throw InputError("rank " + std::to_string(r) + ": " + err);
    }
  }

  // Every rank's parameters hash the same (they must: the same sum, the same optimizer);
  // checked at every logged step. A difference is a bug, reported as an internal error.
  void verify_replicas() {
    if (world_ == 1) return;
    uint64_t h = 1469598103934665603ull;
    for (auto& [n, p] : params_) {
      if (p.dtype() == DType::f64) {
        const auto v = p.to_vector<double>();
        h = dist::fnv1a(v.data(), v.size() * sizeof(double), h);
      } else {
        const auto v = p.to_vector<float>();
        h = dist::fnv1a(v.data(), v.size() * sizeof(float), h);
      }
    }
    const auto all = dist::allgather(std::to_string(h), "the parameter hashes");
    for (size_t r = 1; r < all.size(); ++r)
      if (all[r] != all[0])
        throw std::runtime_error("the parameters of rank " + std::to_string(r) + " differ from rank 0's after step " +
                                 std::to_string(step_) + " (hash " + all[r] + " vs " + all[0] + ")");
    ++replica_checks_;
  }

  // First, from the log alone: a changed model or data option is named before anything
  // else can fail on its consequences (a shape mismatch, a missing data file).
  void check_resumed_options() {
    std::error_code ec;
    if (!std::filesystem::exists(files_.log, ec))
      throw InputError("--resume: no run log at '" + files_.log + "' (expected the run.out of an earlier run)");
    changes_ = resumed_option_changes(read_logged_run(files_.log), req_.options, 0);
  }

  // Data, the memory check, model and optimizer: everything that can fail on bad input.
  void build() {
    if (c_.threads > 0) set_num_threads(c_.threads);
    data_ = make_train_data(c_);
    check_training_memory(c_);
    if (!req_.resume) check_variant_fits(c_.model);  // a resumed run is what it was started as
    model_ = std::make_unique<Transformer>(c_.model);  // initialised on the CPU: the same values on every device
    model_->to(c_.device);
    params_ = model_->named_parameters();
    opt_ = std::make_unique<Optimizer>(params_, c_.optimizer);
    for (auto& [n, p] : params_) {
      param_index_[p.impl_ptr().get()] = plist_.size();
      plist_.push_back(p);
    }
    summary_.metric_name = data_->metric_name();
    summary_.parameters = model_->num_parameters();
    summary_.target_steps = c_.steps;
  }

  // Collective: the NCCL communicator (GPU runs in a build with NCCL; on the device the CLI
  // chose for this rank: a plain "cuda" is the local rank's GPU) and the buckets of the
  // overlapped sum. With NCCL the gradients always go in buckets (one bucket, filled at the
  // end of backward, without --train.overlap_reduce).
  void setup_gradient_sum() {
    if (world_ == 1) return;
    nccl_ = dist::make_nccl_chain(!c_.device.is_cpu(), c_.model.dtype, c_.device.index);
    if (c_.zero == 1) owner_ = dist::shard_owners(plist_, world_);
    if (c_.overlap_reduce || nccl_ || !owner_.empty())
      buckets_ = dist::make_buckets(plist_, c_.overlap_reduce ? c_.bucket_mb * 1e6 : HUGE_VAL, owner_);
  }

  // --train.zero 1 with several ranks: after the whole state was loaded (on resume), each
  // rank keeps its shard's optimizer state (dist/zero_shard.h).
  void shard_optimizer() {
    if (owner_.empty()) return;
    std::vector<bool> mine;
    for (int o : owner_) mine.push_back(o == rank_);
    opt_->shard(mine);
  }

  // The whole optimizer state (gathered from the shards under ZeRO-1): collective then.
  NamedParams optimizer_state() const {
    return owner_.empty() ? opt_->state() : dist::gather_state(opt_->state(), params_);
  }

  // A signal before anything is written stops the run with nothing to clean up.
  void check_startup_stop(const char* phase) {
    if (const int sig = stop_signal())
      throw InterruptedError("stopped by signal " + std::to_string(sig) + " during startup (while " + phase +
                             "); nothing was written");
  }

  // Takes the directory's lock, then decides from what is there (nobody else can change it).
  // With several ranks only rank 0 takes the lock and decides; the others only read.
  void claim_directory() {
    if (writer()) {
      lock_ = RunLock::acquire(c_.out_dir, req_.resume ? "mtalab train --resume" : "mtalab train");
      remove_stale_temporaries(files_);
    }
    if (!req_.resume) {
      if (writer()) refuse_existing_run(files_, req_.overwrite);
      return;
    }
    std::error_code ec;
    if (!std::filesystem::exists(files_.log, ec))
      throw InputError("--resume: no run log at '" + files_.log + "' (expected the run.out of an earlier run)");
    logged_ = read_logged_run(files_.log);
    if (!std::filesystem::exists(files_.checkpoint, ec))
      throw InputError("--resume: no checkpoint at '" + files_.checkpoint +
                       "': the run stopped before its first checkpoint (nothing to resume; start it again with "
                       "--overwrite)");
  }

  // Every field of the checkpoint is checked against the run before any is used, and
  // before any file is touched.
  void restore_checkpoint() {
    changes_ = resumed_option_changes(*logged_, req_.options, 0);  // again, now that the directory is ours
    const CheckpointData ck = load_checkpoint(files_.checkpoint);
    check_identity(ck);
    const int64_t step = checked_step(ck);
    const PhiloxState rng = checked_rng(ck);
    const DType dtype = c_.model.dtype;
    check_tensors(ck.params, params_, files_.checkpoint, "parameter", &dtype);
    check_tensors(ck.optim, opt_->state(), files_.checkpoint, "optimizer state", &dtype);
    restore_data_position(ck);
    elapsed_before_ = checked_elapsed(ck);
    load_parameters(ck, params_, files_.checkpoint);
    NamedParams ostate;
    for (auto& [n, t] : ck.optim) ostate.emplace_back(n, from_ckpt(t, dtype));
    opt_->load_state(ostate, step);
    dropout_gen_.set_state(rng);
    step_ = saved_step_ = step;
    for (auto& ch : changes_) ch.step = step;
  }

  // The checkpoint is this run's (the log's run id) and of its variant.
  void check_identity(const CheckpointData& ck) const {
    auto string_of = [&](const char* k) { return ck.strings.count(k) ? ck.strings.at(k) : std::string(); };
    if (string_of("run_id") != logged_->run_id)
      throw InputError("checkpoint '" + files_.checkpoint + "' belongs to another run (run id '" + string_of("run_id") +
                       "') than its log '" + files_.log + "' ('" + logged_->run_id +
                       "'); expected the checkpoint this run wrote (were files copied in, or the run replaced?)");
    if (string_of("model.attention") != c_.model.attention)
      throw InputError("checkpoint '" + files_.checkpoint + "' is of attention variant '" +
                       string_of("model.attention") + "', the run's is '" + c_.model.attention + "'");
  }

  // The step to continue from: in range, agreeing with the optimizer's count, and one that
  // leaves something to do (a finished run is extended only by asking for more steps).
  int64_t checked_step(const CheckpointData& ck) const {
    const std::string& file = files_.checkpoint;
    constexpr int64_t kMax = std::numeric_limits<int64_t>::max();
    const int64_t step = state_int(ck, "step", file, 0, kMax);
    if (logged_->status == "finished" && c_.steps <= step)
      throw InputError("--resume: the run in '" + c_.out_dir + "' finished at step " + std::to_string(step) +
                       "; nothing to resume (expected --train.steps above " + std::to_string(step) +
                       " to train it further)");
    if (step > c_.steps)
      throw InputError("--resume: checkpoint '" + file + "' is at step " + std::to_string(step) +
                       ", past --train.steps " + std::to_string(c_.steps) + "; expected --train.steps of at least " +
                       std::to_string(step));
    const int64_t opt_steps = state_int(ck, "optimizer.steps", file, 0, kMax);
    if (opt_steps != step)
      throw InputError("checkpoint '" + file + "': state 'optimizer.steps' is " + std::to_string(opt_steps) +
                       " but 'step' is " + std::to_string(step) + "; expected them equal (a corrupt checkpoint)");
    return step;
  }

  // The dropout stream: this run's seed, at a counter that can have been reached.
  PhiloxState checked_rng(const CheckpointData& ck) const {
    const std::string& file = files_.checkpoint;
    constexpr int64_t kMin = std::numeric_limits<int64_t>::min(), kMax = std::numeric_limits<int64_t>::max();
    const int64_t seed = state_int(ck, "rng.seed", file, kMin, kMax);
    if ((uint64_t)seed != dropout_gen_.state().seed)
      throw InputError("checkpoint '" + file + "': state 'rng.seed' is " + std::to_string(seed) +
                       ", this run's dropout stream has seed " + std::to_string(dropout_gen_.state().seed));
    const int64_t counter = state_int(ck, "rng.counter", file, 0, kMax);
    return {(uint64_t)seed, (uint64_t)counter};
  }

  double checked_elapsed(const CheckpointData& ck) const {
    auto it = ck.reals.find("elapsed_s");
    if (it == ck.reals.end()) return 0;
    if (!std::isfinite(it->second) || it->second < 0)
      throw InputError("checkpoint '" + files_.checkpoint + "': state 'elapsed_s' is " + std::to_string(it->second) +
                       "; expected a finite number of seconds >= 0");
    return it->second;
  }

  // The training stream's position: every field present and >= 0, this run's data seed,
  // and a position the data can be at (the data's own set_state checks the range).
  void restore_data_position(const CheckpointData& ck) {
    const std::string& file = files_.checkpoint;
    std::map<std::string, int64_t> ds;
    for (auto& [k, fresh] : data_->state()) {
      ds[k] = state_int(ck, k, file, 0, std::numeric_limits<int64_t>::max());
      if (k == "data.seed" && ds[k] != fresh)
        throw InputError("checkpoint '" + file + "': state 'data.seed' is " + std::to_string(ds[k]) +
                         ", this run's data has seed " + std::to_string(fresh));
    }
    try {
      data_->set_state(ds);
    } catch (const InputError& e) {
      throw InputError("checkpoint '" + file + "': " + e.what());
    }
  }

  // A retrofit (the paper's §4.5): the parameters the checkpoint and this model share are
  // copied, this model's own (MTA's kernels, ...) keep their initialisation.
  void load_init_from() {
    CheckpointData ck = load_checkpoint(req_.init_from);
    init_report_ = load_shared_parameters(ck, params_, req_.init_from);
    const AttentionVariant& v = AttentionRegistry::get(c_.model.attention);
    if (v.differs_from_softmax_at_init) init_note_ = v.differs_from_softmax_at_init(c_.model.attention_options);
  }

  // What --init-from did, in the log (init_from.*) and on the console; then the evaluation at
  // step 0 that shows where the model starts (a retrofit that is softmax at its
  // initialisation starts at the checkpoint's own evaluation loss).
  void announce_init_from() {
    auto join = [](const std::vector<std::string>& v) {
      std::string r;
      for (auto& s : v) r += (r.empty() ? "" : ",") + s;
      return r;
    };
    log_->set_attr("init_from", req_.init_from);
    log_->set_attr("init_from.copied", join(init_report_.copied));
    log_->set_attr("init_from.kept_init", join(init_report_.kept));
    log_->set_attr("init_from.unused", join(init_report_.unused));
    log_->set_attr("init_from.not_softmax_at_init", init_note_);
    out_.line(fmt("init-from %s: copied %zu parameters, %zu keep their initialisation%s%s", req_.init_from.c_str(),
                  init_report_.copied.size(), init_report_.kept.size(), init_report_.kept.empty() ? "" : ": ",
                  join(init_report_.kept).c_str()));
    if (!init_report_.unused.empty())
      out_.line(fmt("init-from: %zu parameters of the checkpoint are not in this model: %s", init_report_.unused.size(),
                    join(init_report_.unused).c_str()));
    if (!init_note_.empty())
      out_.line("init-from: note: this model is not softmax attention at initialisation (" + init_note_ +
                "), so it does not start at the checkpoint's loss; see the step 0 evaluation");
    evaluate();
  }

  // A new log (replacing the old run whole on --overwrite) or the resumed one.
  void open_log() {
    if (req_.resume) {
      log_.emplace(RunLog::open_append(files_.log));
      log_->truncate_all_after(step_);  // rows the interrupted run logged after its checkpoint
      run_id_ = logged_->run_id;
      if (run_id_.empty()) {  // a log from before run identities: it gets one now
        run_id_ = new_run_id();
        log_->set_attr("run_id", run_id_);
      }
      for (const auto& ch : changes_) log_->record_option_change(ch);
      record_world();
      if (logged_->status == "finished") log_->clear_final();  // extended: no longer final
    } else {
      run_id_ = new_run_id();
      log_.emplace(RunLog::create(files_.log, req_.overwrite));
      write_provenance();
    }
    train_tab_ = &log_->table("train", {"step", "loss", "lr", "grad_norm", "tokens_per_s", "elapsed_s"});
    eval_tab_ = &log_->table("eval", {"step", "loss", data_->metric_name()});
    set_status("running", step_);
    log_->flush();
    flushed_step_ = step_;
    // --overwrite replaces the run as a whole: only now that the new log is on disk do the
    // old run's checkpoints go (before, a failure would have lost the old run for nothing).
    if (!req_.resume && req_.overwrite) remove_old_checkpoints(files_);
    const auto train_loss = log_->column("train", "loss");
    if (!train_loss.empty()) set_train_loss(train_loss.back());
    const auto eval_steps = log_->steps("eval");
    if (!eval_steps.empty())
      set_eval(eval_steps.back(), log_->column("eval", "loss").back(), log_->column("eval", data_->metric_name()).back());
  }

  void write_provenance() {
    for (auto& [k, v] : req_.options) log_->set_attr(k, v);
    log_->set_attr("run_id", run_id_);
    log_->set_attr("mtalab_version", MTALAB_VERSION);
    log_->set_attr("git_commit", MTALAB_GIT_COMMIT);
    log_->set_attr("start_time", now_iso());
    log_->set_attr("host", host_name());
    log_->set_attr("backend", c_.device.is_cpu() ? "cpu" : cuda_backend_kind());
    log_->set_attr("device", c_.device.str());
    log_->set_attr("device_name", c_.device.is_cpu() ? "cpu" : cuda_device_name(c_.device.index));
    log_->set_attr("threads", (int64_t)get_num_threads());
    log_->set_attr("seed", (int64_t)c_.seed);
    record_world();
    log_->set_attr("parameter_count", model_->num_parameters());
    log_->set_attr("metric", data_->metric_name());
  }

  // The ranks of this session (a resumed run records the latest; its global batch is the
  // same when grad_accum x ranks is).
  void record_world() {
    log_->set_attr("world_size", (int64_t)world_);
    log_->set_attr("launcher", dist::launcher());
    log_->set_attr("global_batch_size", c_.batch_size * c_.grad_accum * world_);
    log_->set_attr("gradient_sum", reduce_path());
    log_->set_attr("zero_stage", (int64_t)(owner_.empty() ? 0 : 1));
  }

  // How the gradients travel between ranks (the run log and the first line say it).
  std::string reduce_path() const {
    if (world_ == 1) return "none (one process)";
    std::string how = nccl_ ? "ordered chain over NCCL" : "ordered chain over MPI";
    if (!c_.device.is_cpu() && !nccl_) how += " (" + dist::nccl_status(true, c_.model.dtype) + ")";
    if (!owner_.empty()) how += ", each bucket's total to the rank owning its optimizer state (ZeRO-1)";
    if (buckets_.empty() || !c_.overlap_reduce) return how + ", one exchange after backward";
    return how + ", " + std::to_string(buckets_.size()) + " buckets of <= " + fmt("%g", c_.bucket_mb) +
           " MB overlapped with backward";
  }

  void announce() {
    std::string where = c_.device.is_cpu() ? std::to_string(get_num_threads()) + " threads"
                                           : c_.device.str() + " (" + cuda_device_name(c_.device.index) + ")";
    if (world_ > 1)
      where = std::to_string(world_) + " ranks x " + where + ", global batch " +
              std::to_string(c_.batch_size * c_.grad_accum * world_) + ", gradients: " + reduce_path();
    out_.line(fmt("training %s: %lld parameters, %s, %lld steps, %s -> %s", c_.model.attention.c_str(),
                  (long long)model_->num_parameters(), c_.task.c_str(), (long long)c_.steps, where.c_str(),
                  files_.log.c_str()));
    first_step_ = step_;
    session_start_ = window_start_ = Clock::now();
  }

  // --- the loop's steps -------------------------------------------------------------

  // With several ranks a signal counts once every rank knows of it (the step's exchange
  // carries it): all stop after the same step.
  bool stop_due() const { return stop_asked_ || (world_ > 1 ? agreed_stop_ != 0 : stop_signal() != 0); }
  int stopping_signal() const { return world_ > 1 ? agreed_stop_ : stop_signal(); }

  // One optimizer step over grad_accum micro-batches; a non-finite loss or gradient is a
  // divergence, reported before the step is applied.
  //
  // The global batch is G = grad_accum x ranks micro-batches in one fixed order; rank r
  // computes micro-batches r*grad_accum .. (r+1)*grad_accum-1 and draws (and skips) the
  // others, so every rank's data stream stays at the global position. Each micro-batch's
  // gradient is computed from zero and the G gradients are added in global order
  // (dist/ordered_sum.h), and each micro-batch's dropout stream starts at a counter fixed by
  // its global index: N ranks give the bits of one process with grad_accum N x grad_accum.
  void train_step() {
    fault::at("train_step");
    const auto t_step = Clock::now();
    const double lr = learning_rate(c_.schedule, step_);
    const int64_t global = c_.grad_accum * world_, first = c_.grad_accum * rank_;
    const PhiloxState rng = dropout_gen_.state();
    const std::vector<Tensor>& plist = plist_;
    dist::StepPart part;
    std::unique_ptr<dist::GradientBuckets> buckets;
    double step_tokens = 0;
    for (int64_t micro = 0; micro < global; ++micro) {
      const Batch host = data_->next(c_.batch_size);  // tasks make host batches
      window_tokens_ += (double)host.inputs.numel();
      step_tokens += (double)host.inputs.numel();
      if (micro < first || micro >= first + c_.grad_accum) continue;
      const Batch b = host.to(c_.device);
      dropout_gen_.set_state({rng.seed, rng.counter + ((uint64_t)micro << 32)});
      model_->zero_grad();
      Tensor loss = cross_entropy(model_->forward(b.inputs, dropout_gen_), b.targets, b.mask);
      if (global > 1) loss = div(loss, (double)global);
      if (!buckets_.empty() && micro == first + c_.grad_accum - 1) {
        // The last micro-batch: each bucket enters the chain once backward has finished it.
        if (nccl_)
          buckets = dist::nccl_bucketed_sum(*nccl_, plist, buckets_, part, step_ + 1);
        else
          buckets = std::make_unique<dist::BucketedSum>(plist, buckets_, part, step_ + 1, owner_);
        GradReadyHook hook([&](const TensorImpl* leaf) {
          const auto it = param_index_.find(leaf);
          if (it != param_index_.end()) buckets->ready(it->second);
        });
        loss.backward();
        part.losses.push_back(loss.item());
        continue;
      }
      loss.backward();
      part.losses.push_back(loss.item());
      std::vector<Tensor> g;
      for (const Tensor& p : plist) g.push_back(p.grad());
      if (rank_ == 0)
        dist::fold_into(part.fold, g);
      else
        part.stash.push_back(std::move(g));
    }
    dropout_gen_.set_state({rng.seed, rng.counter + ((uint64_t)global << 32)});
    part.stop = stop_signal();
    const auto t_reduce = Clock::now();
    std::vector<Tensor> bucketed;
    if (buckets) {
      bucketed = buckets->finish();
      buckets.reset();
      part.fold.clear();
      part.stash.clear();
    }
    // Without buckets, the gradients; with them, only the losses and the stop signal.
    dist::StepTotal total = dist::ordered_sum(std::move(part), buckets_.empty() ? plist : std::vector<Tensor>{}, step_ + 1);
    if (!buckets_.empty()) total.grads = std::move(bucketed);
    if (world_ > 1) reduce_s_ += seconds_since(t_reduce);
    agreed_stop_ = total.stop;
    for (size_t i = 0; i < plist.size(); ++i) plist_[i].set_grad(total.grads[i]);
    double loss_v = 0;
    for (double l : total.losses) loss_v += l;
    tokens_per_step_ = step_tokens;
    const double gnorm = owner_.empty() ? clip_grad_norm(params_, c_.grad_clip)
                                        : dist::clip_grad_norm_sharded(plist_, owner_, c_.grad_clip, step_ + 1);
    if (!std::isfinite(loss_v) || !std::isfinite(gnorm))
      diverge(step_ + 1, "training diverged at step " + std::to_string(step_ + 1) + ": loss " + std::to_string(loss_v) +
                  ", gradient norm " + std::to_string(gnorm) +
                  " (first parameter with a non-finite gradient: " + first_nonfinite_grad(params_) + ")",
              state_now());
    opt_->step(lr);
    if (!owner_.empty()) dist::gather_parameters(plist_, owner_, step_ + 1);
    ++step_;
    step_s_ += seconds_since(t_step);
    last_loss_ = loss_v;
    last_lr_ = lr;
    last_gnorm_ = gnorm;
  }

  void log_row(bool flush) {
    if (!writer()) {
      window_tokens_ = 0;
      window_start_ = Clock::now();
      return;
    }
    const double dt = seconds_since(window_start_);
    const double tps = dt > 0 ? window_tokens_ / dt : 0;
    const double elapsed = elapsed_before_ + seconds_since(start_);
    train_tab_->append_row({(double)step_, last_loss_, last_lr_, last_gnorm_, tps, elapsed});
    set_train_loss(last_loss_);
    if (flush) flush_interval_rows();
    const double per_step = seconds_since(session_start_) / (double)(step_ - first_step_);
    out_.line(fmt("step %lld/%lld | loss %.4f | lr %.2e | gnorm %.3f | %.0f tok/s | elapsed %s | eta %s",
                  (long long)step_, (long long)c_.steps, last_loss_, last_lr_, last_gnorm_, tps, hms(elapsed).c_str(),
                  hms(per_step * (double)(c_.steps - step_)).c_str()));
    window_tokens_ = 0;
    window_start_ = Clock::now();
  }

  void flush_log() {
    const auto t = Clock::now();
    log_->flush();
    last_flush_seconds_ = seconds_since(t);
    last_flush_end_ = Clock::now();
    flushed_step_ = step_;
  }

  // Each flush writes the whole log (run_log.h). So that this never dominates a long run
  // with a large log and a short log_every, once a write takes over 20 ms a row's flush
  // waits while the last write took more than 5% of the time since; evaluations,
  // checkpoints and stops always write.
  void flush_interval_rows() {
    const bool large = last_flush_seconds_ > 0.02;  // a log of some tens of MB; typical ones take well under
    if (!large || seconds_since(last_flush_end_) >= 20 * last_flush_seconds_) flush_log();
  }

  // Every rank evaluates (a rank other than 0 would only wait meanwhile); rank 0 logs.
  void evaluate() {
    model_->train(false);
    EvalResult r = data_->evaluate(*model_);
    model_->train(true);
    if (!writer()) {
      set_eval(step_, r.loss, r.metric);
      return;
    }
    eval_tab_->append_row({(double)step_, r.loss, r.metric});
    for (const EvalGrid& g : r.grids) log_grid(g);
    for (auto& name : model_->kernel_names())
      for (auto& [n, p] : params_)
        if (n == name) {
          if (p.dtype() == DType::f64)
            log_->snapshot("kernels", n, step_, p.shape(), p.to_vector<double>());
          else
            log_->snapshot("kernels", n, step_, p.shape(), p.to_vector<float>());
        }
    flush_log();
    set_eval(step_, r.loss, r.metric);
    out_.line(fmt("eval  step %lld | loss %.4f | %s %.4f", (long long)step_, r.loss, data_->metric_name().c_str(),
                  r.metric));
  }

  // /eval_grids/<name> [rows, cols] per evaluation, with its axes as <name>_<axis>.
  void log_grid(const EvalGrid& g) {
    log_->snapshot("eval_grids", g.name, step_, {(int64_t)g.rows.size(), (int64_t)g.cols.size()}, g.values);
    log_->write_array("/eval_grids/" + g.name + "_" + g.row_axis, {(int64_t)g.rows.size()}, g.rows);
    log_->write_array("/eval_grids/" + g.name + "_" + g.col_axis, {(int64_t)g.cols.size()}, g.cols);
  }

  // checkpoint.h5 of the current step, unless the weights are no longer finite: then the
  // run has diverged and the last good checkpoint stays.
  void checkpoint() {
    if (writer() && flushed_step_ != step_) flush_log();  // the log on disk is never behind the checkpoint
    CheckpointData ck = state_now();
    const std::string bad = first_nonfinite(ck.params);
    if (!bad.empty())
      diverge(step_, "training diverged at step " + std::to_string(step_) + ": the parameters became non-finite (first: " +
                  bad + ")",
              ck);
    if (writer()) {
      UninterruptibleWrite writing;  // a second SIGINT waits for a complete checkpoint
      save_checkpoint(files_.checkpoint, ck);
    }
    saved_step_ = step_;
  }

  CheckpointData state_now() const {
    CheckpointData ck;
    for (auto& [n, p] : params_) ck.params[n] = to_ckpt(p);
    for (auto& [n, t] : optimizer_state()) ck.optim[n] = to_ckpt(t);
    ck.ints["step"] = step_;
    ck.ints["optimizer.steps"] = opt_->steps();
    ck.ints["rng.seed"] = (int64_t)dropout_gen_.state().seed;
    ck.ints["rng.counter"] = (int64_t)dropout_gen_.state().counter;
    for (auto& [k, v] : data_->state()) ck.ints[k] = v;
    ck.strings["model.attention"] = c_.model.attention;
    ck.strings["run_id"] = run_id_;
    ck.reals["elapsed_s"] = elapsed_before_ + seconds_since(start_);
    store_options(ck, req_.options);
    return ck;
  }

  void set_status(const char* status, int64_t at) {
    log_->set_attr("status", status);
    log_->set_attr("status_step", at);
  }

  // Where the run's results stand on disk, for the message of an error that stops it.
  std::string on_disk() const {
    std::string s = "the log on disk holds every row up to step " + std::to_string(flushed_step_) + ", and ";
    s += saved_step_ >= 0 ? files_.checkpoint + " holds step " + std::to_string(saved_step_) +
                                " (fix the cause, then continue with --resume)"
                          : "no checkpoint was written yet";
    return s;
  }

  // The log records the divergence; the failing state goes to checkpoint_diverged.h5, never
  // over the last good checkpoint.
  [[noreturn]] void diverge(int64_t at, const std::string& what, CheckpointData state) {
    std::string msg = what;
    if (!writer()) throw DivergedError(msg + " (rank " + std::to_string(rank_) + "; rank 0 saved the log)");
    set_status("diverged", at);
    log_->set_attr("diverged_step", at);
    std::string good = saved_step_ >= 0
                           ? files_.checkpoint + " still holds step " + std::to_string(saved_step_) +
                                 ", the last good state (continue from it with --resume, e.g. with a lower --train.lr)"
                           : "no checkpoint was written before it diverged (nothing to resume)";
    try {
      log_->close();
      msg += "; the log is saved";
    } catch (const IoError& e) {
      msg += std::string("; the log could not be saved: ") + e.what();
    }
    state.ints["diverged_step"] = at;
    try {
      UninterruptibleWrite writing;
      save_checkpoint(files_.diverged, state);
      good += "; the state it diverged from is in " + files_.diverged;
    } catch (const IoError& e) {
      good += std::string("; the state it diverged from could not be saved: ") + e.what();
    }
    throw DivergedError(msg + "; " + good);
  }

  // Tokens per step and the peak memory, for `report` (the peak is the largest of every
  // session of the run: a resumed run keeps its earlier one).
  void record_resources() {
    if (auto old = log_->find_attr("tokens_per_step"); tokens_per_step_ == 0 && old && std::holds_alternative<double>(*old))
      tokens_per_step_ = std::get<double>(*old);  // resumed at the end: no step this session
    if (tokens_per_step_ > 0) log_->set_attr("tokens_per_step", tokens_per_step_);
    struct rusage ru {};
    getrusage(RUSAGE_SELF, &ru);
    double peak = (double)ru.ru_maxrss / 1024.0;
    if (auto old = log_->find_attr("peak_rss_mib"); old && std::holds_alternative<double>(*old))
      peak = std::max(peak, std::get<double>(*old));
    log_->set_attr("peak_rss_mib", peak);
    if (!c_.device.is_cpu()) {
      double dev = (double)memory_stats(c_.device.kind).peak_bytes / (1 << 20);
      if (auto old = log_->find_attr("peak_device_mib"); old && std::holds_alternative<double>(*old))
        dev = std::max(dev, std::get<double>(*old));
      log_->set_attr("peak_device_mib", dev);
    }
  }

  RunSummary stop_cleanly() {
    if (writer()) {
      record_resources();
      flush_log();
    }
    if (saved_step_ != step_) checkpoint();
    if (writer()) {
      set_status("interrupted", step_);
      log_->close();
    }
    summary_.interrupted = true;
    summary_.stop_signal = stopping_signal();
    if (summary_.stop_signal)
      out_.line(fmt("stopped by signal %d at step %lld; log and checkpoint saved (continue with --resume)",
                    summary_.stop_signal, (long long)step_));
    else
      out_.line(fmt("stopped as requested at step %lld; log and checkpoint saved (continue with --resume)",
                    (long long)step_));
    return summary();
  }

  // The last evaluation, the attention maps and /final: only for a run that did every step.
  RunSummary finish() {
    if (!summary_.evaluated || summary_.eval_step != step_) evaluate();  // resumed at the end, before its evaluation
    if (saved_step_ != step_) checkpoint();
    if (world_ > 1 && step_s_ > 0) {
      out_.line(fmt("ranks: %d, exchanging gradients took %.1f%% of the training steps' time (%.3f of %.3f s)", world_,
                    100.0 * reduce_s_ / step_s_, reduce_s_, step_s_));
      if (writer()) {
        log_->set_attr("dist_reduce_share", reduce_s_ / step_s_);
        log_->set_attr("dist_replica_checks", replica_checks_);  // this session's parameter-hash comparisons
      }
    }
    if (!writer()) return summary();
    write_attention_maps();
    const double wall = elapsed_before_ + seconds_since(start_);
    if (summary_.has_train_loss) log_->set_final("train_loss", summary_.train_loss);
    log_->set_final("eval_loss", summary_.eval_loss);
    log_->set_final(data_->metric_name(), summary_.eval_metric);
    log_->set_final("wall_s", wall);
    log_->set_final("steps", (double)step_);
    record_resources();
    if (tokens_per_step_ > 0) {
      log_->set_final("tokens_seen", tokens_per_step_ * (double)step_);
      if (wall > 0) log_->set_final("tokens_per_s", tokens_per_step_ * (double)step_ / wall);
    }
    set_status("finished", step_);
    log_->close();
    return summary();
  }

  // Attention maps of one fixed evaluation example, per layer [H, T, T].
  void write_attention_maps() {
    NoGradGuard ng;
    model_->train(false);
    for (int64_t l = 0; l < model_->n_layers(); ++l) model_->attention(l).record_maps = true;
    Generator unused(0);
    const Tensor example = data_->fixed_example().to(c_.device);
    model_->forward(example, unused);
    // The example's bytes, for token labels on plots of the maps.
    const Tensor bytes = to_dtype(example.to(kCPU), DType::f64);
    log_->write_array("/attention/tokens", {bytes.numel()}, bytes.to_vector<double>());
    for (int64_t l = 0; l < model_->n_layers(); ++l) {
      Tensor m = model_->attention(l).last_maps;
      model_->attention(l).record_maps = false;
      if (!m.defined()) continue;
      Shape s(m.shape().begin() + 1, m.shape().end());
      log_->write_array("/attention/layer_" + std::to_string(l), s, to_dtype(m, DType::f32).to_vector<float>());
    }
  }

  void set_train_loss(double loss) {
    summary_.train_loss = loss;
    summary_.has_train_loss = true;
  }

  void set_eval(int64_t at, double loss, double metric) {
    summary_.eval_step = at;
    summary_.eval_loss = loss;
    summary_.eval_metric = metric;
    summary_.evaluated = true;
  }

  RunSummary summary() {
    summary_.steps = step_;
    summary_.wall_s = elapsed_before_ + seconds_since(start_);
    summary_.checkpoint_step = saved_step_;
    summary_.first_eval_step = std::min(c_.steps, c_.eval_every);
    return summary_;
  }

  const RunRequest& req_;
  const TrainConfig& c_;
  InitFromReport init_report_;
  std::string init_note_;
  RunFiles files_;
  Console out_;
  const Clock::time_point start_ = Clock::now();
  double elapsed_before_ = 0;  // wall time of the sessions before a resume

  std::unique_ptr<TrainData> data_;
  std::unique_ptr<Transformer> model_;
  NamedParams params_;
  std::vector<Tensor> plist_;  // the parameters in order, and each one's index by its leaf
  std::unordered_map<const TensorImpl*, size_t> param_index_;
  std::vector<std::vector<size_t>> buckets_;  // several ranks, --train.overlap_reduce or NCCL: dist/bucketed_sum.h
  std::shared_ptr<dist::NcclChain> nccl_;     // GPU runs with several ranks in a build with NCCL
  std::vector<int> owner_;  // ZeRO-1: the rank owning each parameter's optimizer state (empty: off)
  std::unique_ptr<Optimizer> opt_;
  Generator dropout_gen_;
  const int rank_ = dist::rank(), world_ = dist::size();
  int agreed_stop_ = 0;      // the largest stop signal any rank had at the last exchange
  double reduce_s_ = 0;      // this session's time in ordered_sum (several ranks)
  double step_s_ = 0;        // this session's time in train_step
  int64_t replica_checks_ = 0;

  RunLock lock_;  // declared before log_: the log is closed before the lock is released
  std::optional<LoggedRun> logged_;  // --resume: the run as its log describes it
  std::vector<RunLog::OptionChange> changes_;
  std::string run_id_;
  std::optional<RunLog> log_;
  RunLog::Table* train_tab_ = nullptr;
  RunLog::Table* eval_tab_ = nullptr;

  int64_t step_ = 0, first_step_ = 0;
  int64_t saved_step_ = -1;   // the step checkpoint.h5 holds (-1: none yet)
  int64_t flushed_step_ = 0;  // the last step whose rows are on disk
  double tokens_per_step_ = 0;
  double window_tokens_ = 0, last_loss_ = 0, last_lr_ = 0, last_gnorm_ = 0;
  double last_flush_seconds_ = 0;
  Clock::time_point last_flush_end_ = Clock::now();
  Clock::time_point window_start_, session_start_;
  bool stop_asked_ = false;  // stop_after reached
  RunSummary summary_;
};

}  // namespace

std::string run_log_path(const std::string& out) { return RunFiles(out).log; }
std::string checkpoint_path(const std::string& out) { return RunFiles(out).checkpoint; }

RunSummary train(const RunRequest& req) { return Training(req).run(); }

std::string summary_line(const RunSummary& s) {
  std::string eval;
  if (s.evaluated)
    eval = fmt("eval loss %.4f, %s %.4f", s.eval_loss, s.metric_name.c_str(), s.eval_metric);
  else
    eval = fmt("no evaluation yet (the first is due at step %lld)", (long long)s.first_eval_step);
  const std::string train = s.has_train_loss ? fmt("train loss %.4f", s.train_loss) : std::string("no training loss logged yet");
  if (!s.interrupted)
    return fmt("done: %lld steps, %s, %s, %.1f s", (long long)s.steps, train.c_str(), eval.c_str(), s.wall_s);
  const std::string last_eval = s.evaluated ? fmt("last evaluation at step %lld: ", (long long)s.eval_step) : "";
  return fmt("stopped at step %lld of %lld (not finished): %s, %s%s, %.1f s; continue with --resume",
             (long long)s.steps, (long long)s.target_steps, train.c_str(), last_eval.c_str(), eval.c_str(), s.wall_s);
}

}  // namespace mtalab
