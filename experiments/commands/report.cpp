#include "experiments/commands/report.h"

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <functional>
#include <map>
#include <optional>
#include <regex>

#include "autograd/errors.h"
#include "experiments/run/run_lock.h"
#include "experiments/run/run_log.h"
#include "experiments/commands/sweep.h"

namespace mtalab {

namespace {

namespace fs = std::filesystem;
using Opt = std::optional<double>;

// What one run's log says.
struct RunRecord {
  std::string name, attention = "-", metric, status, group;  // group: set for a sweep's runs
  std::string log;                                           // its run.h5
  bool finished = false, readable = true;
  int64_t seed = 0;
  Opt params, steps, tokens, train, eval, value, tps, wall, peak;
  std::string config_key;  // the options that define the configuration (all but seed and run.*)
};

Opt last_of(const std::vector<double>& v) { return v.empty() ? Opt{} : Opt{v.back()}; }

std::string str_attr(const RunLog& log, const std::string& name) {
  auto v = log.find_attr(name);
  return v && std::holds_alternative<std::string>(*v) ? std::get<std::string>(*v) : "";
}

Opt num_attr(const RunLog& log, const std::string& name) {
  auto v = log.find_attr(name);
  if (v && std::holds_alternative<int64_t>(*v)) return (double)std::get<int64_t>(*v);
  if (v && std::holds_alternative<double>(*v)) return std::get<double>(*v);
  return std::nullopt;
}

// What happened to the run: the log's status, and for one that says it is running, whether
// a live process still holds its directory (one killed by SIGKILL does not).
std::string status_of(const RunLog& log, const std::string& dir, int64_t last_step, bool has_final) {
  const std::string s = str_attr(log, "status");
  const int64_t at = (int64_t)num_attr(log, "status_step").value_or((double)last_step);
  if (s == "finished" || (s.empty() && has_final)) return "finished";
  if (s == "diverged") return "diverged at " + std::to_string((int64_t)num_attr(log, "diverged_step").value_or(at));
  if (s == "interrupted") return "interrupted at " + std::to_string(at);
  if (run_lock_holder(dir)) return "running";
  return "interrupted at " + std::to_string(last_step);  // killed: the rows end there
}

// The options that make runs one configuration: everything but the seed, where the run
// was written and how many threads it used.
std::string config_key(const RunLog& log) {
  std::string key;
  for (const auto& [k, v] : log.attrs()) {
    if (!std::holds_alternative<std::string>(v)) continue;
    const bool option = k.find('.') != std::string::npos;
    if (!option || k == "train.seed" || k == "train.threads" || k.rfind("run.", 0) == 0) continue;
    key += k + "=" + std::get<std::string>(v) + "\n";
  }
  return key;
}

RunRecord read_record(const std::string& log_path, const std::string& name) {
  RunRecord r;
  r.name = name;
  r.log = log_path;
  RunLog log = RunLog::open_read(log_path);
  r.attention = str_attr(log, "model.attention");
  r.params = num_attr(log, "parameter_count");
  r.seed = (int64_t)num_attr(log, "seed").value_or(0);
  r.metric = str_attr(log, "metric");
  r.config_key = config_key(log);
  const auto tables = log.table_names();
  auto has = [&](const char* t) { return std::find(tables.begin(), tables.end(), t) != tables.end(); };
  if (has("train")) {
    r.steps = last_of(log.column("train", "step"));
    r.train = last_of(log.column("train", "loss"));
    r.wall = last_of(log.column("train", "elapsed_s"));
  }
  if (has("eval")) {
    r.eval = last_of(log.column("eval", "loss"));
    if (!r.metric.empty()) r.value = last_of(log.column("eval", r.metric));
  }
  const auto fin = log.finals();
  r.status = status_of(log, fs::path(log_path).parent_path().string(), (int64_t)r.steps.value_or(0), !fin.empty());
  r.finished = r.status == "finished";
  if (r.finished) {  // the run's own summary
    auto get = [&](const std::string& k) { return fin.count(k) ? Opt{fin.at(k)} : Opt{}; };
    r.steps = get("steps");
    r.train = get("train_loss");
    r.eval = get("eval_loss");
    r.value = get(r.metric);
    r.wall = get("wall_s");
    r.tps = get("tokens_per_s");
    r.tokens = get("tokens_seen");
  }
  if (auto per = num_attr(log, "tokens_per_step"); per && r.steps && !r.tokens) r.tokens = *per * *r.steps;
  if (r.tokens && r.wall && *r.wall > 0 && !r.tps) r.tps = *r.tokens / *r.wall;
  r.peak = num_attr(log, "peak_rss_mib");
  return r;
}

RunRecord unreadable(const std::string& name, const std::string& why) {
  RunRecord r;
  r.name = name;
  r.status = "unreadable: " + why;
  r.readable = false;
  return r;
}

std::string name_of(const std::string& path) {
  std::string name = fs::path(path).parent_path().filename().string();
  return name.empty() ? path : name;
}

// The records of one input: a run log, a run directory, or a sweep directory's runs.
std::vector<RunRecord> read_input(const std::string& input) {
  std::error_code ec;
  if (fs::is_directory(input, ec) && fs::exists(sweep_manifest_path(input), ec)) {
    std::vector<RunRecord> out;
    for (const auto& m : read_sweep_manifest(input)) {
      const std::string log = (fs::path(input) / m.name / "run.h5").string();
      RunRecord r;
      if (fs::exists(log, ec)) {
        try {
          r = read_record(log, m.name);
        } catch (const std::exception& e) {
          r = unreadable(m.name, e.what());
        }
      } else {
        r.name = m.name;
        r.seed = m.seed;
        r.status = m.status == "failed" ? "failed (exit " + std::to_string(m.exit_code) + ", see " + m.log + ")"
                                        : "not started";
      }
      r.group = "sweep " + input + "\n" + m.configuration;
      out.push_back(r);
    }
    return out;
  }
  const std::string path = fs::is_directory(input, ec) ? (fs::path(input) / "run.h5").string() : input;
  try {
    return {read_record(path, name_of(path))};
  } catch (const std::exception& e) {
    return {unreadable(name_of(path), e.what())};
  }
}

struct Group {
  std::string name;
  std::vector<RunRecord> runs;
};

std::map<std::string, std::string> key_map(const std::string& key) {
  std::map<std::string, std::string> m;
  size_t b = 0;
  while (b < key.size()) {
    const size_t e = key.find('\n', b), eq = key.find('=', b);
    m[key.substr(b, eq - b)] = key.substr(eq + 1, e - eq - 1);
    b = e + 1;
  }
  return m;
}

// The options of `key` that differ from `base`, as "name=value, ...".
std::string differences(const std::string& key, const std::string& base) {
  const auto k = key_map(key), b = key_map(base);
  std::string out;
  for (const auto& [name, value] : k)
    if (!b.count(name) || b.at(name) != value) out += (out.empty() ? "" : ", ") + name + "=" + value;
  for (const auto& [name, value] : b)
    if (!k.count(name)) out += (out.empty() ? "" : ", ") + name + " unset";
  return out;
}

// Where a group's runs live, to tell apart groups that share a name.
std::string where(const Group& g) {
  const RunRecord& r = g.runs.front();
  if (!r.group.empty()) return r.group.substr(0, r.group.find('\n')).substr(6);  // "sweep <dir>"
  return r.log.empty() ? r.name : fs::path(r.log).parent_path().string();
}

// What a figure's file name keeps of a configuration's name (scripts/plot.py's safe_name).
std::string file_stem(const std::string& name) {
  static const std::regex unsafe("[^A-Za-z0-9._+=-]");
  return std::regex_replace(name, unsafe, "_");
}

// Every configuration a name of its own, also as a figure's file name: groups that share
// one (two run directories called x, two sweeps with lr=1e-3) get where they live
// appended, and a count if that is not enough.
void name_uniquely(std::vector<Group>& groups) {
  auto clashes = [&](size_t i) {
    for (size_t j = 0; j < groups.size(); ++j)
      if (j != i && file_stem(groups[j].name) == file_stem(groups[i].name)) return true;
    return false;
  };
  std::vector<bool> clash(groups.size());
  for (size_t i = 0; i < groups.size(); ++i) clash[i] = clashes(i);
  for (size_t i = 0; i < groups.size(); ++i)
    if (clash[i]) groups[i].name += " [" + where(groups[i]) + "]";
  for (size_t i = 0; i < groups.size(); ++i)
    for (int k = 2; clashes(i); ++k) groups[i].name += " #" + std::to_string(k);
}

// Runs with the same defining options but the seed form one configuration, in the order
// first met; a second run with a seed already in the group is a repetition, not a seed:
// its own row. A sweep's configuration whose logged runs were trained with different
// options (the sweep file changed under them) is split, each part named by what differs;
// its runs without a log stay with the first part.
std::vector<Group> group_runs(const std::vector<RunRecord>& records) {
  std::vector<Group> groups;
  std::vector<std::string> keys;
  std::map<std::string, std::string> first_key;  // sweep configuration -> its first logged options
  for (const auto& r : records) {
    const bool logged = r.readable && !r.config_key.empty();
    std::string key = logged ? r.config_key : "";
    if (!r.group.empty()) {
      if (logged && !first_key.count(r.group)) first_key[r.group] = r.config_key;
      key = r.group + "\n" + (logged ? r.config_key : first_key.count(r.group) ? first_key[r.group] : "");
    }
    size_t g = groups.size();
    if (!key.empty())
      for (size_t i = 0; i < groups.size(); ++i)
        if (keys[i] == key && std::none_of(groups[i].runs.begin(), groups[i].runs.end(),
                                           [&](const RunRecord& o) { return o.seed == r.seed; }))
          g = i;
    if (g == groups.size()) {
      groups.push_back({});
      keys.push_back(key);
    }
    groups[g].runs.push_back(r);
  }
  static const std::regex seed_suffix("[,_-]?seed[=_-]?[0-9]+$");
  for (size_t i = 0; i < groups.size(); ++i) {
    Group& g = groups[i];
    const RunRecord& r = g.runs.front();
    if (!r.group.empty()) {
      g.name = r.group.substr(r.group.find('\n') + 1);
      const auto first = first_key.find(r.group);
      const auto logged = std::find_if(g.runs.begin(), g.runs.end(), [](const RunRecord& x) { return !x.config_key.empty(); });
      if (first != first_key.end() && logged != g.runs.end() && logged->config_key != first->second)
        g.name += " (" + differences(logged->config_key, first->second) + ")";
    } else {
      g.name = r.name;
      const std::string stripped = std::regex_replace(g.name, seed_suffix, "");
      if (g.runs.size() > 1 && !stripped.empty()) g.name = stripped;
    }
  }
  name_uniquely(groups);
  return groups;
}

struct Stat {
  Opt mean, std;
  std::vector<double> values;
};

// Over every run that has the value, NaN included: a seed whose value is NaN makes the mean
// nan (shown as such), so `n` always counts the runs averaged — never a mean of the others
// presented as the configuration's.
Stat stat(const std::vector<const RunRecord*>& runs, Opt RunRecord::*field) {
  Stat s;
  for (const auto* r : runs)
    if (r->*field) s.values.push_back(*(r->*field));
  if (s.values.empty()) return s;
  double sum = 0;
  for (double v : s.values) sum += v;
  s.mean = sum / (double)s.values.size();
  if (s.values.size() > 1) {
    double ss = 0;
    for (double v : s.values) ss += (v - *s.mean) * (v - *s.mean);
    s.std = std::sqrt(ss / (double)(s.values.size() - 1));
  }
  return s;
}

std::string fmt(Opt v, const char* f) {
  if (!v) return "-";
  if (std::isnan(*v)) return "nan";
  if (std::isinf(*v)) return *v > 0 ? "inf" : "-inf";
  char buf[64];
  std::snprintf(buf, sizeof buf, f, *v);
  return buf;
}

// One configuration's summary over the runs its values come from.
struct Summary {
  std::string name, attention = "-", n, metric = "-", status;
  Stat params, steps, tokens, train, eval, value, tps, wall, peak;
  Opt d_value, d_eval;
};

std::string status_counts(const std::vector<RunRecord>& runs) {
  std::map<std::string, int> count;
  std::vector<std::string> order;
  for (const auto& r : runs) {
    const std::string& s = r.status;
    if (count[s]++ == 0) order.push_back(s);
  }
  if (order.size() == 1) return order.front();  // all alike: "finished", not "3 finished"
  std::string out;
  for (const auto& s : order) out += (out.empty() ? "" : ", ") + std::to_string(count[s]) + " " + s;
  return out;
}

Summary summarize(const std::string& name, const std::vector<RunRecord>& runs) {
  Summary s;
  s.name = name;
  std::vector<const RunRecord*> use;
  for (const auto& r : runs)
    if (r.finished) use.push_back(&r);
  const size_t finished = use.size();
  if (use.empty() && runs.size() == 1) use.push_back(&runs.front());  // a lone unfinished run: its last values
  for (const auto& r : runs)
    if (r.readable && !r.attention.empty() && r.attention != "-") s.attention = r.attention;
  for (const auto& r : runs)
    if (!r.metric.empty()) s.metric = r.metric;
  s.n = finished == runs.size() ? std::to_string(runs.size()) : std::to_string(finished) + "/" + std::to_string(runs.size());
  s.params = stat(use, &RunRecord::params);
  s.steps = stat(use, &RunRecord::steps);
  s.tokens = stat(use, &RunRecord::tokens);
  s.train = stat(use, &RunRecord::train);
  s.eval = stat(use, &RunRecord::eval);
  s.value = stat(use, &RunRecord::value);
  s.tps = stat(use, &RunRecord::tps);
  s.wall = stat(use, &RunRecord::wall);
  s.peak = stat(use, &RunRecord::peak);
  s.status = status_counts(runs);
  return s;
}

Summary of_run(const RunRecord& r) {
  Summary s = summarize(r.name, {r});
  s.n = "seed=" + std::to_string(r.seed);
  return s;
}

// "0.2812±0.0120" (one run: "0.2812"): no blank inside, so the table splits on blanks.
std::string pm(const Stat& s, const char* f, const char* sep = "±") {
  std::string out = fmt(s.mean, f);
  if (s.std) out += sep + fmt(s.std, f);
  return out;
}

std::string signed_fmt(Opt v) {
  if (!v) return "-";
  if (!std::isfinite(*v)) return fmt(v, "%f");
  char buf[32];
  std::snprintf(buf, sizeof buf, "%+.4f", *v);
  return buf;
}

std::string join_values(const std::vector<double>& v) {
  std::string out;
  for (double x : v) out += (out.empty() ? "" : ";") + fmt(x, "%.6g");
  return out;
}

// The report's columns, once: each with its header, alignment, text cell and CSV fields
// (a text cell "mean±std" is two or three CSV columns). header(), cells() and csv_table()
// all read this list, so a column is added, moved or renamed in one place.
struct Column {
  const char* header;
  bool left;   // names: aligned left (numbers right)
  bool delta;  // only with --baseline
  std::function<std::string(const Summary&, const char* sep)> cell;
  std::vector<std::pair<const char*, std::function<std::string(const Summary&)>>> csv;
};

const std::vector<Column>& columns() {
  using S = const Summary&;
  static const std::vector<Column> list = {
      {"run", true, false, [](S s, const char*) { return s.name; }, {{"run", [](S s) { return s.name; }}}},
      {"attention", true, false, [](S s, const char*) { return s.attention; },
       {{"attention", [](S s) { return s.attention; }}}},
      {"n", false, false, [](S s, const char*) { return s.n; }, {{"n", [](S s) { return s.n; }}}},
      {"params", false, false, [](S s, const char*) { return fmt(s.params.mean, "%.0f"); },
       {{"params", [](S s) { return fmt(s.params.mean, "%.0f"); }}}},
      {"steps", false, false, [](S s, const char*) { return fmt(s.steps.mean, "%.0f"); },
       {{"steps", [](S s) { return fmt(s.steps.mean, "%.0f"); }}}},
      {"tokens", false, false, [](S s, const char*) { return fmt(s.tokens.mean, "%.3g"); },
       {{"tokens", [](S s) { return fmt(s.tokens.mean, "%.0f"); }}}},
      {"train_loss", false, false, [](S s, const char* sep) { return pm(s.train, "%.4f", sep); },
       {{"train_loss", [](S s) { return fmt(s.train.mean, "%.6g"); }},
        {"train_loss_std", [](S s) { return fmt(s.train.std, "%.6g"); }}}},
      {"eval_loss", false, false, [](S s, const char* sep) { return pm(s.eval, "%.4f", sep); },
       {{"eval_loss", [](S s) { return fmt(s.eval.mean, "%.6g"); }},
        {"eval_loss_std", [](S s) { return fmt(s.eval.std, "%.6g"); }}}},
      {"metric", true, false, [](S s, const char*) { return s.metric; }, {{"metric", [](S s) { return s.metric; }}}},
      {"value", false, false, [](S s, const char* sep) { return pm(s.value, "%.4f", sep); },
       {{"value", [](S s) { return fmt(s.value.mean, "%.6g"); }},
        {"value_std", [](S s) { return fmt(s.value.std, "%.6g"); }},
        {"value_per_seed", [](S s) { return join_values(s.value.values); }}}},
      {"tok/s", false, false, [](S s, const char*) { return fmt(s.tps.mean, "%.0f"); },
       {{"tokens_per_s", [](S s) { return fmt(s.tps.mean, "%.1f"); }}}},
      {"wall_s", false, false, [](S s, const char* sep) { return pm(s.wall, "%.1f", sep); },
       {{"wall_s", [](S s) { return fmt(s.wall.mean, "%.2f"); }},
        {"wall_s_std", [](S s) { return fmt(s.wall.std, "%.2f"); }}}},
      {"peak_MiB", false, false, [](S s, const char*) { return fmt(s.peak.mean, "%.0f"); },
       {{"peak_rss_mib", [](S s) { return fmt(s.peak.mean, "%.1f"); }}}},
      {"Δvalue", false, true, [](S s, const char*) { return signed_fmt(s.d_value); },
       {{"delta_value", [](S s) { return fmt(s.d_value, "%.6g"); }}}},
      {"Δeval", false, true, [](S s, const char*) { return signed_fmt(s.d_eval); },
       {{"delta_eval_loss", [](S s) { return fmt(s.d_eval, "%.6g"); }}}},
      {"status", true, false, [](S s, const char*) { return s.status; }, {{"status", [](S s) { return s.status; }}}},
  };
  return list;
}

std::vector<const Column*> shown_columns(bool deltas) {
  std::vector<const Column*> out;
  for (const auto& c : columns())
    if (deltas || !c.delta) out.push_back(&c);
  return out;
}

struct Cells {
  std::vector<std::string> c;
};

Cells cells(const Summary& s, bool deltas, const char* sep) {
  Cells out;
  for (const Column* c : shown_columns(deltas)) out.c.push_back(c->cell(s, sep));
  return out;
}

std::vector<std::string> header(bool deltas) {
  std::vector<std::string> h;
  for (const Column* c : shown_columns(deltas)) h.push_back(c->header);
  return h;
}

size_t display_width(const std::string& s) {
  size_t n = 0;
  for (unsigned char c : s) n += (c & 0xC0) != 0x80;
  return n;
}

std::string text_table(const std::vector<Cells>& rows, bool deltas) {
  const auto cols = shown_columns(deltas);
  std::vector<size_t> w(rows.front().c.size(), 0);
  for (const auto& r : rows)
    for (size_t i = 0; i + 1 < r.c.size(); ++i) w[i] = std::max(w[i], display_width(r.c[i]));
  std::string out;
  for (const auto& r : rows) {
    for (size_t i = 0; i < r.c.size(); ++i) {
      const std::string pad(i + 1 < r.c.size() ? w[i] - display_width(r.c[i]) : 0, ' ');
      out += cols[i]->left ? r.c[i] + pad : pad + r.c[i];
      if (i + 1 < r.c.size()) out += "  ";
    }
    out += "\n";
  }
  return out;
}

std::string markdown_table(const std::vector<Cells>& rows, bool deltas) {
  const auto cols = shown_columns(deltas);
  std::string out;
  for (size_t k = 0; k < rows.size(); ++k) {
    out += "|";
    for (const auto& c : rows[k].c) out += " " + c + " |";
    out += "\n";
    if (k == 0) {
      out += "|";
      for (const Column* c : cols) out += c->left ? "---|" : "---:|";
      out += "\n";
    }
  }
  return out;
}

std::string csv_field(const std::string& s) {
  if (s.find_first_of(",\"\n") == std::string::npos) return s;
  std::string q = "\"";
  for (char c : s) q += c == '"' ? std::string("\"\"") : std::string(1, c);
  return q + "\"";
}

// CSV keeps every number apart: means, standard deviations and the per-seed values.
std::string csv_table(const std::vector<std::pair<std::string, Summary>>& rows, bool deltas) {
  const auto cols = shown_columns(deltas);
  std::string out = "level";
  for (const Column* c : cols)
    for (const auto& [name, field] : c->csv) out += std::string(",") + name;
  out += "\n";
  for (const auto& [level, s] : rows) {
    out += csv_field(level);
    for (const Column* c : cols)
      for (const auto& [name, field] : c->csv) out += "," + csv_field(field(s));
    out += "\n";
  }
  return out;
}

std::vector<RunRecord> read_inputs(const std::vector<std::string>& inputs, int* unreadable) {
  std::vector<RunRecord> records;
  for (const auto& input : inputs)
    for (auto& r : read_input(input)) {
      *unreadable += r.readable ? 0 : 1;
      records.push_back(std::move(r));
    }
  return records;
}

}  // namespace

std::vector<ReportRun> report_runs(const std::vector<std::string>& inputs) {
  int unreadable = 0;
  std::vector<ReportRun> out;
  for (const auto& g : group_runs(read_inputs(inputs, &unreadable)))
    for (const auto& r : g.runs)
      if (r.readable && !r.log.empty()) out.push_back({g.name, r.name, r.log, r.status});
  return out;
}

Report format_report(const std::vector<std::string>& inputs, const ReportOptions& options) {
  Report out;
  const auto groups = group_runs(read_inputs(inputs, &out.unreadable));
  std::vector<Summary> summaries;
  for (const auto& g : groups) summaries.push_back(summarize(g.name, g.runs));
  const bool deltas = !options.baseline.empty();
  if (deltas) {
    std::string names, matches;
    const Summary* base = nullptr;
    int found = 0;
    for (const auto& s : summaries) {
      names += (names.empty() ? "" : ", ") + s.name;
      // The name as shown, or before a clash made it longer ("x" of "x [runs/a]").
      if (s.name == options.baseline || s.name.rfind(options.baseline + " [", 0) == 0) {
        matches += (matches.empty() ? "" : ", ") + s.name;
        if (found++ == 0) base = &s;
      }
    }
    if (!found)
      throw InputError("--baseline '" + options.baseline + "' is none of the configurations (" + names + ")");
    if (found > 1)
      throw InputError("--baseline '" + options.baseline + "' matches several configurations (" + matches +
                       "); expected one of those names in full");
    const Summary b = *base;
    for (const auto& s : summaries)
      if (s.value.mean && b.value.mean && s.metric != b.metric)
        throw InputError("--baseline '" + b.name + "' reports " + b.metric + " but '" + s.name + "' reports " + s.metric +
                         "; a difference needs the same metric (expected a report of one task, or no --baseline)");
    for (auto& s : summaries) {
      if (s.value.mean && b.value.mean) s.d_value = *s.value.mean - *b.value.mean;
      if (s.eval.mean && b.eval.mean) s.d_eval = *s.eval.mean - *b.eval.mean;
    }
  }
  std::vector<std::pair<std::string, Summary>> rows;  // (level, summary)
  for (size_t i = 0; i < groups.size(); ++i) {
    rows.emplace_back("configuration", summaries[i]);
    if (options.per_seed && groups[i].runs.size() > 1)
      for (const auto& r : groups[i].runs) {
        Summary s = of_run(r);
        s.name = "  " + s.name;
        rows.emplace_back("run", s);
      }
  }
  using F = ReportOptions::Format;
  if (options.format == F::csv) {
    for (auto& [level, s] : rows)
      if (level == "run") s.name = s.name.substr(2);
    out.table = csv_table(rows, deltas);
    return out;
  }
  std::vector<Cells> cs;
  cs.push_back({header(deltas)});
  for (const auto& [level, s] : rows) cs.push_back(cells(s, deltas, options.format == F::markdown ? " ± " : "±"));
  out.table = options.format == F::markdown ? markdown_table(cs, deltas) : text_table(cs, deltas);
  return out;
}

}  // namespace mtalab
