#include "experiments/commands/sweep_spec.h"

#include <cctype>
#include <cstdio>
#include <fstream>
#include <set>
#include <sstream>

#include "autograd/errors.h"

namespace mtalab {

namespace {

std::string trim(const std::string& s) {
  const auto b = s.find_first_not_of(" \t\r");
  if (b == std::string::npos) return "";
  const auto e = s.find_last_not_of(" \t\r");
  return s.substr(b, e - b + 1);
}

bool starts_with(const std::string& s, const std::string& p) { return s.compare(0, p.size(), p) == 0; }

int64_t parse_count(const std::string& v, const std::string& where) {
  size_t used = 0;
  long long n = -1;
  try {
    n = std::stoll(v, &used);
  } catch (const std::exception&) {
  }
  if (used != v.size() || n < 1 || n > 1000)
    throw InputError(where + ": seeds = '" + v + "'; expected a number of seeds in [1, 1000]");
  return n;
}

int64_t seed_value(const std::string& v) {
  size_t used = 0;
  long long n = -1;
  try {
    n = std::stoll(v, &used);
  } catch (const std::exception&) {
  }
  if (used != v.size() || n < 0) throw InputError("train.seed = '" + v + "'; expected a non-negative integer");
  return n;
}

// The seed axis: a count from `seeds = N` (base seed, base + 1, ...).
SweepAxis seed_axis(int64_t count, const std::map<std::string, std::string>& base) {
  int64_t first = 0;
  if (auto it = base.find("train.seed"); it != base.end()) first = seed_value(it->second);
  SweepAxis a{"train.seed", {}};
  for (int64_t i = 0; i < count; ++i) a.values.push_back(std::to_string(first + i));
  return a;
}

void add_axis(SweepSpec& spec, const std::string& option, const std::string& list, const std::string& where) {
  SweepAxis a{option, {}};
  try {
    a.values = split_sweep_values(list);
  } catch (const InputError& e) {
    throw InputError(where + ": " + e.what());
  }
  if (a.values.empty()) throw InputError(where + ": axis '" + option + "' has no values; expected v1, v2, ...");
  std::set<std::string> seen;
  for (const auto& v : a.values)
    if (!seen.insert(v).second) throw InputError(where + ": axis '" + option + "' lists '" + v + "' twice");
  for (auto& old : spec.axes)
    if (old.option == option) {
      old = a;
      return;
    }
  spec.axes.push_back(a);
}

// Moves the seed axis last: seeds vary fastest, so one configuration's seeds sit together.
void seeds_last(SweepSpec& spec) {
  for (size_t i = 0; i + 1 < spec.axes.size(); ++i)
    if (spec.axes[i].option == "train.seed") {
      SweepAxis s = spec.axes[i];
      spec.axes.erase(spec.axes.begin() + (long)i);
      spec.axes.push_back(s);
      return;
    }
}

// Directory-safe text: what a shell or a file browser shows without quoting.
std::string safe(const std::string& v) {
  std::string out;
  for (char c : v) out += (std::isalnum((unsigned char)c) || std::string("._+-:").find(c) != std::string::npos) ? c : '_';
  return out.empty() ? "_" : out;
}

// The short name of each varied option: its last component, unless two share it.
std::map<std::string, std::string> short_keys(const std::vector<std::string>& options) {
  std::map<std::string, int> count;
  auto last = [](const std::string& o) { return o.substr(o.rfind('.') + 1); };
  for (const auto& o : options) ++count[last(o)];
  std::map<std::string, std::string> out;
  for (const auto& o : options) out[o] = count[last(o)] > 1 ? o : last(o);
  return out;
}

// An attention variant's options apply to runs of that variant only: a softmax run of a
// grid over mta.cq is one run, not one per value.
void drop_other_variants(std::map<std::string, std::string>& options, const VariantScope& scope) {
  auto it = options.find("model.attention");
  const std::string chosen = it == options.end() ? scope.default_variant : it->second;
  for (auto o = options.begin(); o != options.end();) {
    const std::string head = o->first.substr(0, o->first.find('.'));
    if (scope.variants.count(head) && head != chosen)
      o = options.erase(o);
    else
      ++o;
  }
}

}  // namespace

void check_sweep_run_name(const std::string& name, const std::string& what) {
  auto refuse = [&](const std::string& why) {
    std::string shown;
    for (unsigned char c : name.substr(0, 60)) {
      char buf[8];
      std::snprintf(buf, sizeof buf, "\\x%02X", c);
      shown += (c < 0x20 || c == 0x7f) ? std::string(buf) : std::string(1, (char)c);
    }
    throw InputError(what + " '" + shown + (name.size() > 60 ? "...'" : "'") + " " + why +
                     "; expected a name that can be a directory of its own (letters, digits, ._+-:, at most " +
                     std::to_string(kMaxRunName) + " bytes)");
  };
  if (name.empty()) refuse("is empty");
  if (name == "." || name == "..") refuse("is a path of its own ('.' is the sweep directory, '..' its parent)");
  for (unsigned char c : name) {
    if (c == '/') refuse("holds a '/'");
    if (c < 0x20 || c == 0x7f) refuse("holds a control character");
  }
  // logs/<name>.log is the longest file name the sweep makes from it.
  if (name.size() > kMaxRunName)
    refuse("is " + std::to_string(name.size()) + " bytes, " + std::to_string(name.size() + 4) +
           " with the .log of its output file (NAME_MAX is 255)");
}

std::vector<std::string> split_sweep_values(const std::string& list) {
  std::vector<std::string> out;
  std::string cur;
  bool quoted = false, any = false;
  for (char c : list) {
    if (c == '"') {
      if (!quoted && (any || !trim(cur).empty()))
        throw InputError("a quote inside the value '" + trim(cur) + "' in '" + list +
                         "'; expected a value quoted as a whole: \"...\"");
      quoted = !quoted;
      any = true;
    } else if (c == ',' && !quoted) {
      out.push_back(any ? cur : trim(cur));
      cur.clear();
      any = false;
    } else if (!any || quoted) {
      cur += c;
    } else if (c != ' ' && c != '\t' && c != '\r') {
      throw InputError("text after the closing quote of \"" + cur + "\" in '" + list +
                       "'; expected a comma (or the text inside the quotes)");
    }
  }
  if (quoted) throw InputError("unbalanced quote in '" + list + "'");
  const std::string last = any ? cur : trim(cur);
  if (!last.empty() || !out.empty()) out.push_back(last);
  for (const auto& v : out)
    if (v.empty()) throw InputError("empty value in '" + list + "'");
  return out;
}

SweepSpec parse_sweep_spec(const std::string& text, const std::string& file) {
  SweepSpec spec;
  spec.file = file;
  std::istringstream in(text.compare(0, 3, "\xEF\xBB\xBF") == 0 ? text.substr(3) : text);
  std::string section;
  bool saw_sweep = false;
  int64_t seeds = 0;
  std::set<std::string> configs;
  int n = 0;
  for (std::string raw; std::getline(in, raw);) {
    ++n;
    const std::string where = (file.empty() ? std::string("sweep") : file) + ":" + std::to_string(n);
    const std::string line = trim(raw);
    if (line.empty() || line[0] == '#' || line[0] == ';') continue;
    if (line.front() == '[') {
      if (line.back() != ']') throw InputError(where + ": '" + line + "'; expected a section header [name]");
      section = trim(line.substr(1, line.size() - 2));
      if (section == "sweep") saw_sweep = true;
      if (starts_with(section, "configuration ")) {
        const std::string name = trim(section.substr(14));
        if (name.empty() || safe(name) != name)
          throw InputError(where + ": configuration name '" + name + "'; expected letters, digits and ._+-:");
        try {
          check_sweep_run_name(name, "configuration name");
        } catch (const InputError& e) {
          throw InputError(where + ": " + e.what());
        }
        if (!configs.insert(name).second) throw InputError(where + ": configuration '" + name + "' is defined twice");
        spec.configurations.push_back({name, {}});
      }
      continue;
    }
    const auto eq = line.find('=');
    if (eq == std::string::npos || section.empty())
      throw InputError(where + ": '" + line + "'; expected key = value under a [section]");
    const std::string key = trim(line.substr(0, eq)), value = trim(line.substr(eq + 1));
    if (key.empty()) throw InputError(where + ": '" + line + "' has no key");
    if (section == "sweep" || starts_with(section, "configuration ")) {
      if (key != "out" && key != "seeds") spec.where.emplace(key, where);
    } else if (section != "slurm") {
      spec.where.emplace(section + "." + key, where);
    }
    if (section == "sweep") {
      if (key == "out") {
        if (value.empty()) throw InputError(where + ": out is empty; expected the sweep's directory");
        if (!spec.out.empty()) throw InputError(where + ": out is set twice; expected one sweep directory");
        spec.out = value;
      } else if (key == "seeds") {
        if (seeds > 0) throw InputError(where + ": seeds is set twice; expected one number of seeds");
        seeds = parse_count(value, where);
      } else {
        if (key.find('.') == std::string::npos)
          throw InputError(where + ": sweep axis '" + key + "'; expected a full option name such as model.attention");
        for (const auto& a : spec.axes)
          if (a.option == key) throw InputError(where + ": sweep axis '" + key + "' is given twice");
        add_axis(spec, key, value, where);
      }
    } else if (section == "slurm") {
      if (!spec.slurm.emplace(key, value).second) throw InputError(where + ": slurm." + key + " is set twice");
    } else if (starts_with(section, "configuration ")) {
      if (key.find('.') == std::string::npos)
        throw InputError(where + ": '" + key + "'; expected a full option name such as mta.kq_post");
      if (!spec.configurations.back().options.emplace(key, value).second)
        throw InputError(where + ": '" + key + "' is set twice in this configuration");
    } else {
      if (!spec.base.emplace(section + "." + key, value).second)
        throw InputError(where + ": '" + section + "." + key + "' is set twice");
    }
  }
  if (!saw_sweep) throw InputError((file.empty() ? "sweep" : file) + ": no [sweep] section; expected one with out = DIR and the axes");
  if (seeds > 0) {
    for (const auto& a : spec.axes)
      if (a.option == "train.seed") throw InputError(file + ": both seeds and a train.seed axis; expected one of them");
    spec.axes.push_back(seed_axis(seeds, spec.base));
  }
  seeds_last(spec);
  return spec;
}

SweepSpec read_sweep_spec(const std::string& path) {
  std::ifstream f(path, std::ios::binary);
  if (!f) throw InputError("sweep file '" + path + "' cannot be opened (expected a readable INI file)");
  std::stringstream ss;
  ss << f.rdbuf();
  return parse_sweep_spec(ss.str(), path);
}

void set_sweep_axis(SweepSpec& spec, const std::string& assignment) {
  const auto eq = assignment.find('=');
  const std::string key = eq == std::string::npos ? "" : trim(assignment.substr(0, eq));
  if (key.empty() || (key != "seeds" && key.find('.') == std::string::npos))
    throw InputError("--grid '" + assignment + "'; expected option=v1,v2,... (e.g. mta.ck=5,9,13) or seeds=N");
  const std::string value = trim(assignment.substr(eq + 1));
  if (key == "seeds") {
    const SweepAxis a = seed_axis(parse_count(value, "--grid"), spec.base);
    std::string list;
    for (const auto& v : a.values) list += (list.empty() ? "" : ",") + v;
    add_axis(spec, a.option, list, "--grid");
  } else {
    add_axis(spec, key, value, "--grid");
  }
  seeds_last(spec);
}

std::vector<SweepRun> expand_sweep(const SweepSpec& spec, const VariantScope& scope) {
  std::vector<std::string> varied;
  for (const auto& a : spec.axes)
    if (a.values.size() > 1 || a.option == "train.seed") varied.push_back(a.option);
  const auto keys = short_keys(varied);
  std::vector<SweepConfiguration> configs = spec.configurations;
  if (configs.empty()) configs.push_back({"", {}});
  for (const auto& c : configs)
    for (const auto& a : spec.axes)
      if (c.options.count(a.option))
        throw InputError("configuration '" + c.name + "' sets " + a.option + ", which is also a sweep axis; expected one or the other");
  std::vector<SweepRun> runs;
  std::map<std::string, std::map<std::string, std::string>> names;
  for (const auto& c : configs) {
    std::vector<size_t> at(spec.axes.size(), 0);
    for (bool more = true; more;) {
      SweepRun r;
      r.options = spec.base;
      for (auto& [k, v] : c.options) r.options[k] = v;
      for (size_t i = 0; i < spec.axes.size(); ++i) r.options[spec.axes[i].option] = spec.axes[i].values[at[i]];
      drop_other_variants(r.options, scope);
      std::string config = c.name, seed_part;
      for (size_t i = 0; i < spec.axes.size(); ++i) {
        const auto& a = spec.axes[i];
        if (!keys.count(a.option) || !r.options.count(a.option)) continue;
        const std::string part = keys.at(a.option) + "=" + safe(a.values[at[i]]);
        if (a.option == "train.seed")
          seed_part = part;
        else
          config += (config.empty() ? "" : ",") + part;
      }
      r.seed = r.options.count("train.seed") ? seed_value(r.options.at("train.seed")) : 0;
      r.configuration = config.empty() ? "base" : config;
      r.name = config.empty() ? (seed_part.empty() ? "base" : seed_part)
                              : (seed_part.empty() ? config : config + "," + seed_part);
      check_sweep_run_name(r.name, "run name");
      if (auto it = names.find(r.name); it != names.end()) {
        // The same run twice: an axis of another variant (softmax x mta.cq) collapses.
        if (it->second != r.options) throw InputError("two different runs of the sweep are both named '" + r.name + "'");
      } else {
        names.emplace(r.name, r.options);
        runs.push_back(r);
      }
      more = false;
      for (size_t i = spec.axes.size(); i-- > 0;) {  // the last axis varies fastest
        if (++at[i] < spec.axes[i].values.size()) {
          more = true;
          break;
        }
        at[i] = 0;
      }
    }
  }
  return runs;
}

std::string sweep_spec_text(const SweepSpec& spec) {
  std::ostringstream o;
  o << "# the sweep as run" << (spec.file.empty() ? "" : " (from " + spec.file + ")") << "\n";
  std::string section;
  for (const auto& [k, v] : spec.base) {
    const auto dot = k.find('.');
    const std::string s = k.substr(0, dot);
    if (s != section) o << "\n[" << (section = s) << "]\n";
    o << k.substr(dot + 1) << " = " << v << "\n";
  }
  o << "\n[sweep]\nout = " << spec.out << "\n";
  for (const auto& a : spec.axes) {
    o << a.option << " =";
    for (size_t i = 0; i < a.values.size(); ++i)
      o << (i ? ", " : " ") << (a.values[i].find(',') != std::string::npos ? "\"" + a.values[i] + "\"" : a.values[i]);
    o << "\n";
  }
  if (!spec.slurm.empty()) o << "\n[slurm]\n";
  for (const auto& [k, v] : spec.slurm) o << k << " = " << v << "\n";
  for (const auto& c : spec.configurations) {
    o << "\n[configuration " << c.name << "]\n";
    for (const auto& [k, v] : c.options) o << k << " = " << v << "\n";
  }
  return o.str();
}

}  // namespace mtalab
