#include "experiments/report.h"

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <optional>

#include "experiments/run_lock.h"
#include "experiments/run_log.h"

namespace mtalab {

namespace {

namespace fs = std::filesystem;

std::optional<double> last_of(const std::vector<double>& v) {
  if (v.empty()) return std::nullopt;
  return v.back();
}

std::string num(std::optional<double> v, const char* f) {
  if (!v || !std::isfinite(*v)) return "-";
  char buf[64];
  std::snprintf(buf, sizeof buf, f, *v);
  return buf;
}

struct Row {
  std::string name, attention = "-", params = "-", steps = "-", train = "-", eval = "-", metric = "-", value = "-",
                    wall = "-", status;
};

std::string str_attr(const RunLog& log, const std::string& name) {
  auto v = log.find_attr(name);
  return v && std::holds_alternative<std::string>(*v) ? std::get<std::string>(*v) : "";
}

std::optional<int64_t> int_attr(const RunLog& log, const std::string& name) {
  auto v = log.find_attr(name);
  if (v && std::holds_alternative<int64_t>(*v)) return std::get<int64_t>(*v);
  return std::nullopt;
}

// What happened to the run: the log's status, and for one that says it is running, whether
// a live process still holds its directory (one killed by SIGKILL does not).
std::string status_of(const RunLog& log, const std::string& dir, int64_t last_step, bool has_final) {
  const std::string s = str_attr(log, "status");
  const int64_t at = int_attr(log, "status_step").value_or(last_step);
  if (s == "finished" || (s.empty() && has_final)) return "finished";
  if (s == "diverged") return "diverged at " + std::to_string(int_attr(log, "diverged_step").value_or(at));
  if (s == "interrupted") return "interrupted at " + std::to_string(at);
  if (run_lock_holder(dir)) return "running";
  return "interrupted at " + std::to_string(last_step);  // killed: the rows end there
}

Row read_row(const std::string& log_path, const std::string& name) {
  Row r;
  r.name = name;
  RunLog log = RunLog::open_read(log_path);
  r.attention = str_attr(log, "model.attention");
  if (auto p = int_attr(log, "parameter_count")) r.params = std::to_string(*p);
  const std::string metric = str_attr(log, "metric");
  r.metric = metric.empty() ? "-" : metric;
  const auto tables = log.table_names();
  auto has = [&](const char* t) { return std::find(tables.begin(), tables.end(), t) != tables.end(); };
  std::optional<double> steps, train, eval, value, wall;
  if (has("train")) {
    steps = last_of(log.column("train", "step"));
    train = last_of(log.column("train", "loss"));
    wall = last_of(log.column("train", "elapsed_s"));
  }
  if (has("eval")) {
    eval = last_of(log.column("eval", "loss"));
    if (!metric.empty()) value = last_of(log.column("eval", metric));
  }
  const auto fin = log.finals();
  r.status = status_of(log, fs::path(log_path).parent_path().string(), (int64_t)steps.value_or(0), !fin.empty());
  if (r.status == "finished") {  // the run's own summary
    auto get = [&](const std::string& k) -> std::optional<double> {
      auto it = fin.find(k);
      if (it == fin.end()) return std::nullopt;
      return it->second;
    };
    steps = get("steps");
    train = get("train_loss");
    eval = get("eval_loss");
    value = get(metric);
    wall = get("wall_s");
  }
  r.steps = num(steps, "%.0f");
  r.train = num(train, "%.4f");
  r.eval = num(eval, "%.4f");
  r.value = num(value, "%.4f");
  r.wall = num(wall, "%.1f");
  return r;
}

std::string line(const Row& r) {
  char buf[1024];
  std::snprintf(buf, sizeof buf, "%-24s %-14s %10s %7s %10s %10s %-11s %8s %9s  %s\n", r.name.c_str(),
                r.attention.c_str(), r.params.c_str(), r.steps.c_str(), r.train.c_str(), r.eval.c_str(),
                r.metric.c_str(), r.value.c_str(), r.wall.c_str(), r.status.c_str());
  return buf;
}

}  // namespace

Report format_report(const std::vector<std::string>& inputs) {
  Report out;
  Row header{"run", "attention", "params", "steps", "train_loss", "eval_loss", "metric", "value", "wall_s", "status"};
  out.table = line(header);
  for (const auto& input : inputs) {
    std::error_code ec;
    const std::string path = fs::is_directory(input, ec) ? (fs::path(input) / "run.h5").string() : input;
    std::string name = fs::path(path).parent_path().filename().string();
    if (name.empty()) name = path;
    Row r;
    try {
      r = read_row(path, name);
    } catch (const std::exception& e) {
      r = Row{};
      r.name = name;
      r.status = std::string("unreadable: ") + e.what();
      ++out.unreadable;
    }
    out.table += line(r);
  }
  return out;
}

}  // namespace mtalab
