#include "experiments/run/resume.h"

#include <cmath>
#include <set>

#include "autograd/errors.h"
#include "autograd/ops.h"
#include "experiments/train/config.h"
#include "layers/attention.h"

namespace mtalab {

namespace {

constexpr const char* kOptionPrefix = "option.";

// Every option name with its default, the variants' included.
const std::map<std::string, std::string>& option_defaults() {
  static const std::map<std::string, std::string> d = [] {
    std::map<std::string, std::string> m;
    for (const auto& s : train_option_specs()) m[s.name] = s.default_value;
    for (const auto* v : AttentionRegistry::list())
      for (const auto& s : v->options) m[v->name + "." + s.name] = s.default_value;
    return m;
  }();
  return d;
}

// A logged value, or the option's default for logs written before the option existed.
std::string logged_value(const std::map<std::string, std::string>& logged, const std::string& name) {
  auto it = logged.find(name);
  if (it != logged.end()) return it->second;
  auto d = option_defaults().find(name);
  return d == option_defaults().end() ? "" : d->second;
}

template <class T>
bool all_finite(const std::vector<T>& v, size_t* first_bad) {
  for (size_t i = 0; i < v.size(); ++i)
    if (!std::isfinite(v[i])) {
      *first_bad = i;
      return false;
    }
  return true;
}

}  // namespace

std::map<std::string, std::string> logged_options(const RunLog& log) {
  std::map<std::string, std::string> out;
  for (auto& [k, v] : log.attrs())
    if (option_defaults().count(k) && std::holds_alternative<std::string>(v)) out[k] = std::get<std::string>(v);
  return out;
}

LoggedRun read_logged_run(const std::string& log_path) {
  RunLog log = RunLog::open_read(log_path);
  LoggedRun r;
  r.path = log_path;
  auto str = [&](const char* name) {
    auto v = log.find_attr(name);
    return v && std::holds_alternative<std::string>(*v) ? std::get<std::string>(*v) : std::string();
  };
  r.run_id = str("run_id");
  r.status = str("status");
  if (r.status.empty() && !log.finals().empty()) r.status = "finished";  // a log from before statuses
  r.options = logged_options(log);
  return r;
}

std::map<std::string, std::string> checkpoint_options(const CheckpointData& ck) {
  std::map<std::string, std::string> out;
  const std::string prefix = kOptionPrefix;
  for (auto& [k, v] : ck.strings)
    if (k.rfind(prefix, 0) == 0) out[k.substr(prefix.size())] = v;
  return out;
}

void store_options(CheckpointData& ck, const std::map<std::string, std::string>& options) {
  for (auto& [k, v] : options) ck.strings[kOptionPrefix + k] = v;
}

std::vector<OptionDifference> defining_differences(const std::map<std::string, std::string>& was,
                                                   const std::map<std::string, std::string>& now) {
  std::set<std::string> names;
  for (auto& [k, v] : was) names.insert(k);
  for (auto& [k, v] : now) names.insert(k);
  std::vector<OptionDifference> out;
  for (const auto& name : names) {
    const OptionRole role = option_role(name);
    if (role == OptionRole::tunable) continue;
    const std::string a = logged_value(was, name), b = logged_value(now, name);
    if (a != b) out.push_back({name, a, b, role == OptionRole::model ? "model" : "data"});
  }
  return out;
}

std::vector<RunLog::OptionChange> resumed_option_changes(const LoggedRun& run,
                                                         const std::map<std::string, std::string>& now,
                                                         int64_t step) {
  std::vector<RunLog::OptionChange> changes;
  for (auto& [name, value] : now) {
    const std::string was = logged_value(run.options, name);
    if (was == value) continue;
    const OptionRole role = option_role(name);
    if (role != OptionRole::tunable)
      throw InputError("--resume: option --" + name + " is " + (value.empty() ? "''" : value) +
                       ", but the run in " + run.path + " was started with " + (was.empty() ? "''" : was) +
                       "; it defines the " + (role == OptionRole::model ? "model" : "data") +
                       ", so a resumed run must keep it (expected it left out; for another " +
                       (role == OptionRole::model ? "model" : "setup") + ", start a new run, e.g. with --init-from)");
    changes.push_back({step, name, was, value});
  }
  return changes;
}

void check_model_options(const std::map<std::string, std::string>& run,
                         const std::map<std::string, std::string>& now, const std::string& source) {
  for (auto& [name, value] : now) {
    if (option_role(name) != OptionRole::model) continue;
    const std::string was = logged_value(run, name);
    if (was != value)
      throw InputError("option --" + name + " is " + (value.empty() ? "''" : value) + ", but the checkpoint's model has " +
                       (was.empty() ? "''" : was) + " (from " + source +
                       "); expected the options the checkpoint was trained with (leave it out)");
  }
}

void check_tensors(const std::map<std::string, CheckpointTensor>& tensors, const NamedParams& expected,
                   const std::string& file, const std::string& what, const DType* dtype) {
  std::set<std::string> names;
  for (auto& [name, t] : expected) {
    names.insert(name);
    auto it = tensors.find(name);
    if (it == tensors.end())
      throw InputError("checkpoint '" + file + "': " + what + " '" + name + "' is missing (expected shape " +
                       shape_str(t.shape()) + ")");
    const CheckpointTensor& c = it->second;
    if (c.shape != t.shape())
      throw InputError("checkpoint '" + file + "': " + what + " '" + name + "' has shape " + shape_str(c.shape) +
                       ", the model expects " + shape_str(t.shape()));
    if (dtype && c.is_f32() != (*dtype == DType::f32))
      throw InputError("checkpoint '" + file + "': " + what + " '" + name + "' is stored as " +
                       (c.is_f32() ? "float32" : "float64") + ", the run's model.dtype is " + dtype_name(*dtype));
    size_t bad = 0;
    const bool finite = std::visit([&](const auto& v) { return all_finite(v, &bad); }, c.values);
    if (!finite)
      throw InputError("checkpoint '" + file + "': " + what + " '" + name + "' holds a non-finite value (at index " +
                       std::to_string(bad) + "); expected finite weights (a state saved at a divergence?)");
  }
  for (auto& [name, t] : tensors)
    if (!names.count(name))
      throw InputError("checkpoint '" + file + "': holds " + what + " '" + name + "' " + shape_str(t.shape) +
                       ", which this model does not have; expected a checkpoint of the same variant and options");
}

void load_parameters(const CheckpointData& ck, const NamedParams& params, const std::string& file) {
  check_tensors(ck.params, params, file, "parameter");
  NoGradGuard ng;
  for (auto& [name, t] : params) {
    const CheckpointTensor& c = ck.params.at(name);
    Tensor host = std::visit([&](const auto& v) { return from_vector(v, c.shape, {t.dtype()}); }, c.values);
    copy_(t, host.to(t.device()));
  }
}

InitFromReport load_shared_parameters(const CheckpointData& ck, const NamedParams& params, const std::string& file) {
  InitFromReport r;
  NamedParams shared;
  std::set<std::string> names;
  for (auto& [name, t] : params) {
    names.insert(name);
    auto it = ck.params.find(name);
    if (it == ck.params.end()) {
      r.kept.push_back(name);
      continue;
    }
    if (it->second.shape != t.shape())
      throw InputError("checkpoint '" + file + "': parameter '" + name + "' has shape " + shape_str(it->second.shape) +
                       ", the model expects " + shape_str(t.shape()) +
                       " (--init-from copies the parameters both have; one of the same name must have the same shape)");
    shared.emplace_back(name, t);
    r.copied.push_back(name);
  }
  for (auto& [name, t] : ck.params)
    if (!names.count(name)) r.unused.push_back(name);
  if (shared.empty())
    throw InputError("checkpoint '" + file + "': none of its " + std::to_string(ck.params.size()) +
                     " parameters is one of this model's; expected a checkpoint of a model with the same layers");
  std::map<std::string, CheckpointTensor> subset;
  for (auto& [name, t] : shared) subset[name] = ck.params.at(name);
  CheckpointData part;
  part.params = std::move(subset);
  load_parameters(part, shared, file);  // the finiteness checks, then the copies
  return r;
}

int64_t state_int(const CheckpointData& ck, const std::string& name, const std::string& file, int64_t lo,
                  int64_t hi) {
  auto it = ck.ints.find(name);
  if (it == ck.ints.end())
    throw InputError("checkpoint '" + file + "': state has no integer '" + name +
                     "'; expected a checkpoint written by mtalab train");
  if (it->second < lo || it->second > hi)
    throw InputError("checkpoint '" + file + "': state '" + name + "' is " + std::to_string(it->second) +
                     "; expected an integer in [" + std::to_string(lo) + ", " + std::to_string(hi) + "]");
  return it->second;
}

}  // namespace mtalab
