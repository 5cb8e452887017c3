// Declared options: a name, a type, a default, a help line and a valid range. Attention
// variants declare theirs; the command line and config files pick them up from here,
// so a new option needs no edit anywhere else.
#pragma once
#include <map>
#include <string>
#include <vector>

namespace mtalab {

enum class OptionType { Int, Float, Bool, String };

struct OptionSpec {
  std::string name;
  OptionType type = OptionType::String;
  std::string default_value;
  std::string help;
  double min = -1e300, max = 1e300;  // for Int and Float
  std::vector<std::string> choices;   // for String; empty = free text

  static OptionSpec Int(std::string name, int64_t def, std::string help, int64_t lo, int64_t hi);
  static OptionSpec Float(std::string name, double def, std::string help, double lo, double hi);
  static OptionSpec Bool(std::string name, bool def, std::string help);
  static OptionSpec String(std::string name, std::string def, std::string help,
                           std::vector<std::string> choices = {});
  std::string type_name() const;
  // Parses and range-checks `value`; throws InputError naming `qualified` (e.g. "mta.cq").
  void validate(const std::string& value, const std::string& qualified) const;
};

// Resolved values for one set of specs; missing entries take their defaults.
class OptionValues {
 public:
  OptionValues() = default;
  OptionValues(std::vector<OptionSpec> specs, std::string prefix);
  // Sets a value after validating it against its spec; unknown names throw InputError.
  void set(const std::string& name, const std::string& value);
  int64_t get_int(const std::string& name) const;
  double get_float(const std::string& name) const;
  bool get_bool(const std::string& name) const;
  const std::string& get_string(const std::string& name) const;
  bool is_default(const std::string& name) const;
  const std::vector<OptionSpec>& specs() const { return specs_; }
  const std::string& prefix() const { return prefix_; }
  // name → value for every spec, defaults included (for run logs).
  std::map<std::string, std::string> resolved() const;

 private:
  const OptionSpec& spec(const std::string& name) const;
  std::vector<OptionSpec> specs_;
  std::string prefix_;
  std::map<std::string, std::string> values_;
};

bool parse_bool(const std::string& v, bool* out);

}  // namespace mtalab
