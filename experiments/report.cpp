#include "experiments/report.h"

#include <cmath>
#include <cstdio>
#include <filesystem>

#include "experiments/run_log.h"

namespace mtalab {

std::string format_report(const std::vector<std::string>& paths) {
  std::string out;
  char line[512];
  std::snprintf(line, sizeof line, "%-24s %-14s %10s %7s %10s %10s %-11s %8s %9s\n", "run", "attention", "params",
                "steps", "train_loss", "eval_loss", "metric", "value", "wall_s");
  out += line;
  for (const auto& p : paths) {
    RunLog log = RunLog::open_read(p);
    const auto fin = log.finals();
    auto get = [&](const std::string& k) {
      auto it = fin.find(k);
      return it == fin.end() ? std::nan("") : it->second;
    };
    const std::string metric = log.attr_string("metric");
    std::string name = std::filesystem::path(p).parent_path().filename().string();
    if (name.empty()) name = p;
    std::snprintf(line, sizeof line, "%-24s %-14s %10lld %7.0f %10.4f %10.4f %-11s %8.4f %9.1f\n", name.c_str(),
                  log.attr_string("model.attention").c_str(), (long long)log.attr_int("parameter_count"), get("steps"),
                  get("train_loss"), get("eval_loss"), metric.c_str(), get(metric), get("wall_s"));
    out += line;
  }
  return out;
}

}  // namespace mtalab
