#include "layers/options.h"

#include <algorithm>
#include <cmath>
#include <sstream>

#include "autograd/errors.h"

namespace mtalab {

namespace {
std::string fmt(double v) {
  std::ostringstream os;
  os << v;
  return os.str();
}
bool parse_int(const std::string& s, int64_t* out) {
  if (s.empty()) return false;
  size_t pos = 0;
  try {
    long long v = std::stoll(s, &pos);
    if (pos != s.size()) return false;
    *out = v;
    return true;
  } catch (...) {
    return false;
  }
}
bool parse_double(const std::string& s, double* out) {
  if (s.empty()) return false;
  size_t pos = 0;
  try {
    double v = std::stod(s, &pos);
    if (pos != s.size() || !std::isfinite(v)) return false;
    *out = v;
    return true;
  } catch (...) {
    return false;
  }
}
}  // namespace

bool parse_bool(const std::string& v, bool* out) {
  if (v == "true" || v == "1" || v == "on" || v == "yes") return *out = true, true;
  if (v == "false" || v == "0" || v == "off" || v == "no") return *out = false, true;
  return false;
}

OptionSpec OptionSpec::Int(std::string name, int64_t def, std::string help, int64_t lo, int64_t hi) {
  OptionSpec s;
  s.name = std::move(name);
  s.type = OptionType::Int;
  s.default_value = std::to_string(def);
  s.help = std::move(help);
  s.min = (double)lo;
  s.max = (double)hi;
  return s;
}
OptionSpec OptionSpec::Float(std::string name, double def, std::string help, double lo, double hi) {
  OptionSpec s;
  s.name = std::move(name);
  s.type = OptionType::Float;
  s.default_value = fmt(def);
  s.help = std::move(help);
  s.min = lo;
  s.max = hi;
  return s;
}
OptionSpec OptionSpec::Bool(std::string name, bool def, std::string help) {
  OptionSpec s;
  s.name = std::move(name);
  s.type = OptionType::Bool;
  s.default_value = def ? "true" : "false";
  s.help = std::move(help);
  return s;
}
OptionSpec OptionSpec::String(std::string name, std::string def, std::string help, std::vector<std::string> choices) {
  OptionSpec s;
  s.name = std::move(name);
  s.type = OptionType::String;
  s.default_value = std::move(def);
  s.help = std::move(help);
  s.choices = std::move(choices);
  return s;
}

std::string OptionSpec::type_name() const {
  switch (type) {
    case OptionType::Int: return "int";
    case OptionType::Float: return "float";
    case OptionType::Bool: return "bool";
    case OptionType::String: break;
  }
  if (choices.empty()) return "string";
  std::string r;
  for (auto& c : choices) r += (r.empty() ? "" : "|") + c;
  return r;
}

void OptionSpec::validate(const std::string& v, const std::string& q) const {
  // Integer options print their range as integers: [1, 1099511627776], not 1.09951e+12.
  auto range = [&] {
    if (type == OptionType::Int)
      return "[" + std::to_string((long long)min) + ", " + std::to_string((long long)max) + "]";
    return "[" + fmt(min) + ", " + fmt(max) + "]";
  };
  switch (type) {
    case OptionType::Int: {
      int64_t x;
      if (!parse_int(v, &x)) throw InputError("option --" + q + ": '" + v + "' is not an integer");
      if (x < min || x > max)
        throw InputError("option --" + q + ": " + v + " is out of range, expected an integer in " + range());
      return;
    }
    case OptionType::Float: {
      double x;
      if (!parse_double(v, &x)) throw InputError("option --" + q + ": '" + v + "' is not a number");
      if (x < min || x > max) throw InputError("option --" + q + ": " + v + " is out of range, expected " + range());
      return;
    }
    case OptionType::Bool: {
      bool b;
      if (!parse_bool(v, &b)) throw InputError("option --" + q + ": '" + v + "' is not a boolean (true/false)");
      return;
    }
    case OptionType::String:
      if (!choices.empty() && std::find(choices.begin(), choices.end(), v) == choices.end())
        throw InputError("option --" + q + ": '" + v + "' is not one of " + type_name());
      return;
  }
}

OptionValues::OptionValues(std::vector<OptionSpec> specs, std::string prefix)
    : specs_(std::move(specs)), prefix_(std::move(prefix)) {}

const OptionSpec& OptionValues::spec(const std::string& name) const {
  for (auto& s : specs_)
    if (s.name == name) return s;
  std::string known;
  for (auto& s : specs_) known += (known.empty() ? "" : ", ") + s.name;
  throw InputError("unknown option '" + (prefix_.empty() ? "" : prefix_ + ".") + name + "'" +
                   (known.empty() ? "" : " (known: " + known + ")"));
}

void OptionValues::set(const std::string& name, const std::string& value) {
  spec(name).validate(value, prefix_.empty() ? name : prefix_ + "." + name);
  values_[name] = value;
}

static const std::string& value_of(const std::map<std::string, std::string>& v, const OptionSpec& s) {
  auto it = v.find(s.name);
  return it == v.end() ? s.default_value : it->second;
}

int64_t OptionValues::get_int(const std::string& name) const {
  int64_t x = 0;
  parse_int(value_of(values_, spec(name)), &x);
  return x;
}
double OptionValues::get_float(const std::string& name) const {
  double x = 0;
  parse_double(value_of(values_, spec(name)), &x);
  return x;
}
bool OptionValues::get_bool(const std::string& name) const {
  bool b = false;
  parse_bool(value_of(values_, spec(name)), &b);
  return b;
}
const std::string& OptionValues::get_string(const std::string& name) const { return value_of(values_, spec(name)); }
bool OptionValues::is_default(const std::string& name) const {
  spec(name);
  return values_.find(name) == values_.end();
}
std::map<std::string, std::string> OptionValues::resolved() const {
  std::map<std::string, std::string> r;
  for (auto& s : specs_) r[s.name] = value_of(values_, s);
  return r;
}

}  // namespace mtalab
