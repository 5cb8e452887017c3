#include "experiments/trainer.h"

#include <unistd.h>

#include <atomic>
#include <chrono>
#include <cmath>
#include <csignal>
#include <cstdio>
#include <ctime>
#include <filesystem>

#include "autograd/errors.h"
#include "autograd/kernels.h"
#include "autograd/ops.h"
#include "experiments/checkpoint_file.h"
#include "experiments/run_log.h"
#include "experiments/train_data.h"

#ifndef MTALAB_VERSION
#define MTALAB_VERSION "0.0.0"
#endif
#ifndef MTALAB_GIT_COMMIT
#define MTALAB_GIT_COMMIT "unknown"
#endif

namespace mtalab {

namespace {
std::atomic<int> g_stop_signal{0};
void on_stop(int sig) { g_stop_signal = sig; }

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

}  // namespace

std::string run_log_path(const std::string& out) { return (std::filesystem::path(out) / "run.h5").string(); }
std::string checkpoint_path(const std::string& out) { return (std::filesystem::path(out) / "checkpoint.h5").string(); }

void load_parameters(const CheckpointData& ck, const NamedParams& params, const std::string& file) {
  NoGradGuard ng;
  for (auto& [name, t] : params) {
    auto it = ck.params.find(name);
    if (it == ck.params.end())
      throw InputError("checkpoint '" + file + "': parameter '" + name + "' is missing (expected shape " +
                       shape_str(t.shape()) + ")");
    if (it->second.shape != t.shape())
      throw InputError("checkpoint '" + file + "': parameter '" + name + "' has shape " + shape_str(it->second.shape) +
                       ", the model expects " + shape_str(t.shape()));
    copy_(t, from_ckpt(it->second, t.dtype()).to(t.device()));
  }
}

void install_stop_handlers() {
  std::signal(SIGINT, on_stop);
  std::signal(SIGTERM, on_stop);
}

RunSummary train(const RunRequest& req) {
  const TrainConfig& c = req.config;
  const auto start = Clock::now();
  if (c.threads > 0) set_num_threads(c.threads);

  // Everything that can fail on bad input happens before any file is written.
  auto data = make_train_data(c);
  Transformer model(c.model);  // initialised on the CPU: the same values for every device
  model.to(c.device);
  NamedParams params = model.named_parameters();
  Optimizer opt(params, c.optimizer);
  Generator dropout_gen(c.seed * 7919ull + 17);
  int64_t step = 0;
  double elapsed_before = 0;  // wall time of the sessions before a resume
  const std::string log_path = run_log_path(c.out_dir), ckpt_path = checkpoint_path(c.out_dir);

  if (req.resume) {
    CheckpointData ck = load_checkpoint(ckpt_path);
    load_parameters(ck, params, ckpt_path);
    NamedParams ostate;
    for (auto& [n, t] : ck.optim) ostate.emplace_back(n, from_ckpt(t, c.model.dtype));
    auto need = [&](const std::string& k) {
      auto it = ck.ints.find(k);
      if (it == ck.ints.end()) throw InputError("checkpoint '" + ckpt_path + "': state has no '" + k + "'");
      return it->second;
    };
    opt.load_state(ostate, need("optimizer.steps"));
    step = need("step");
    dropout_gen.set_state({(uint64_t)need("rng.seed"), (uint64_t)need("rng.counter")});
    if (ck.reals.count("elapsed_s")) elapsed_before = ck.reals["elapsed_s"];
    std::map<std::string, int64_t> ds;
    for (auto& [k, v] : ck.ints)
      if (k.rfind("data.", 0) == 0) ds[k] = v;
    data->set_state(ds);
  } else if (!req.init_from.empty()) {
    CheckpointData ck = load_checkpoint(req.init_from);
    load_parameters(ck, params, req.init_from);
  }

  RunLog log = req.resume ? RunLog::open_append(log_path) : RunLog::create(log_path, req.overwrite);
  if (req.resume) {
    log.truncate_all_after(step);  // rows the interrupted run logged after its checkpoint
  } else {
    for (auto& [k, v] : req.options) log.set_attr(k, v);
    log.set_attr("mtalab_version", MTALAB_VERSION);
    log.set_attr("git_commit", MTALAB_GIT_COMMIT);
    log.set_attr("start_time", now_iso());
    log.set_attr("host", host_name());
    log.set_attr("backend", c.device.is_cpu() ? "cpu" : cuda_backend_kind());
    log.set_attr("device", c.device.str());
    log.set_attr("device_name", c.device.is_cpu() ? "cpu" : cuda_device_name(c.device.index));
    log.set_attr("threads", (int64_t)get_num_threads());
    log.set_attr("seed", (int64_t)c.seed);
    log.set_attr("parameter_count", model.num_parameters());
    log.set_attr("metric", data->metric_name());
  }
  auto& train_tab = log.table("train", {"step", "loss", "lr", "grad_norm", "tokens_per_s", "elapsed_s"});
  auto& eval_tab = log.table("eval", {"step", "loss", data->metric_name()});
  log.flush();

  auto save = [&](int64_t at_step) {
    CheckpointData ck;
    for (auto& [n, p] : params) ck.params[n] = to_ckpt(p);
    for (auto& [n, t] : opt.state()) ck.optim[n] = to_ckpt(t);
    ck.ints["step"] = at_step;
    ck.ints["optimizer.steps"] = opt.steps();
    ck.ints["rng.seed"] = (int64_t)dropout_gen.state().seed;
    ck.ints["rng.counter"] = (int64_t)dropout_gen.state().counter;
    for (auto& [k, v] : data->state()) ck.ints[k] = v;
    ck.strings["model.attention"] = c.model.attention;
    ck.reals["elapsed_s"] = elapsed_before + seconds_since(start);
    save_checkpoint(ckpt_path, ck);
  };

  RunSummary sum_out;
  sum_out.metric_name = data->metric_name();
  sum_out.parameters = model.num_parameters();
  auto evaluate = [&](int64_t at_step) {
    model.train(false);
    EvalResult r = data->evaluate(model);
    model.train(true);
    eval_tab.append_row({(double)at_step, r.loss, r.metric});
    for (auto& name : model.kernel_names())
      for (auto& [n, p] : params)
        if (n == name) {
          if (p.dtype() == DType::f64)
            log.snapshot("kernels", n, at_step, p.shape(), p.to_vector<double>());
          else
            log.snapshot("kernels", n, at_step, p.shape(), p.to_vector<float>());
        }
    log.flush();
    sum_out.eval_loss = r.loss;
    sum_out.eval_metric = r.metric;
    if (!req.quiet)
      std::printf("eval  step %lld | loss %.4f | %s %.4f\n", (long long)at_step, r.loss, data->metric_name().c_str(),
                  r.metric);
    std::fflush(stdout);
  };

  const int64_t first = step;
  double window_tokens = 0, last_loss = 0;
  auto window_start = Clock::now();
  const auto session_start = Clock::now();
  g_stop_signal = 0;
  if (!req.quiet) {
    const std::string where = c.device.is_cpu() ? std::to_string(get_num_threads()) + " threads"
                                                : c.device.str() + " (" + cuda_device_name(c.device.index) + ")";
    std::printf("training %s: %lld parameters, %s, %lld steps, %s -> %s\n", c.model.attention.c_str(),
                (long long)model.num_parameters(), c.task.c_str(), (long long)c.steps, where.c_str(), log_path.c_str());
  }

  while (step < c.steps) {
    const double lr = learning_rate(c.schedule, step);
    model.zero_grad();
    double loss_v = 0;
    for (int64_t micro = 0; micro < c.grad_accum; ++micro) {
      Batch b = data->next(c.batch_size);
      Tensor loss = cross_entropy(model.forward(b.inputs, dropout_gen), b.targets, b.mask);
      if (c.grad_accum > 1) loss = div(loss, (double)c.grad_accum);
      loss.backward();
      loss_v += loss.item();
      window_tokens += (double)b.inputs.numel();
    }
    const double gnorm = clip_grad_norm(params, c.grad_clip);
    if (!std::isfinite(loss_v) || !std::isfinite(gnorm)) {
      // Keep what is good: the log so far and the parameters before this step.
      log.flush();
      save(step);
      throw DivergedError("training diverged at step " + std::to_string(step + 1) + ": loss " +
                          std::to_string(loss_v) + ", gradient norm " + std::to_string(gnorm) +
                          " (first parameter with a non-finite gradient: " + first_nonfinite_grad(params) +
                          "); the log and a checkpoint of step " + std::to_string(step) + " were written");
    }
    opt.step(lr);
    ++step;
    last_loss = loss_v;
    const bool eval_now = step % c.eval_every == 0 || step == c.steps;
    if (step % c.log_every == 0 || step == c.steps) {
      const double dt = seconds_since(window_start);
      const double tps = dt > 0 ? window_tokens / dt : 0;
      const double elapsed = elapsed_before + seconds_since(start);
      train_tab.append_row({(double)step, loss_v, lr, gnorm, tps, elapsed});
      if (!eval_now) log.flush();
      if (!req.quiet) {
        const double per_step = seconds_since(session_start) / (double)(step - first);
        std::printf("step %lld/%lld | loss %.4f | lr %.2e | gnorm %.3f | %.0f tok/s | elapsed %s | eta %s\n",
                    (long long)step, (long long)c.steps, loss_v, lr, gnorm, tps, hms(elapsed).c_str(),
                    hms(per_step * (double)(c.steps - step)).c_str());
        std::fflush(stdout);
      }
      window_tokens = 0;
      window_start = Clock::now();
    }
    if (eval_now) evaluate(step);
    if (eval_now || (c.checkpoint_every > 0 && step % c.checkpoint_every == 0)) save(step);
    if (req.stop_after > 0 && step >= req.stop_after && step < c.steps) g_stop_signal = SIGINT;
    if (g_stop_signal) {
      log.flush();
      save(step);
      sum_out.interrupted = true;
      if (!req.quiet)
        std::printf("stopped by signal %d at step %lld; log and checkpoint saved (continue with --resume)\n",
                    (int)g_stop_signal, (long long)step);
      break;
    }
  }

  if (!sum_out.interrupted) {
    // Attention maps of one fixed evaluation example, per layer [H, T, T].
    NoGradGuard ng;
    model.train(false);
    for (int64_t l = 0; l < model.n_layers(); ++l) model.attention(l).record_maps = true;
    Generator unused(0);
    model.forward(data->fixed_example(), unused);
    for (int64_t l = 0; l < model.n_layers(); ++l) {
      Tensor m = model.attention(l).last_maps;
      if (!m.defined()) continue;
      Shape s(m.shape().begin() + 1, m.shape().end());
      log.write_array("/attention/layer_" + std::to_string(l), s, to_dtype(m, DType::f32).to_vector<float>());
      model.attention(l).record_maps = false;
    }
    sum_out.wall_s = elapsed_before + seconds_since(start);
    log.set_final("train_loss", last_loss);
    log.set_final("eval_loss", sum_out.eval_loss);
    log.set_final(data->metric_name(), sum_out.eval_metric);
    log.set_final("wall_s", sum_out.wall_s);
    log.set_final("steps", (double)step);
  }
  log.close();
  sum_out.steps = step;
  sum_out.train_loss = last_loss;
  sum_out.wall_s = elapsed_before + seconds_since(start);
  return sum_out;
}

}  // namespace mtalab
