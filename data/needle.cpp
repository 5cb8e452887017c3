#include "data/needle.h"

#include <algorithm>
#include <cmath>
#include <sstream>

#include "autograd/errors.h"
#include "data/rng.h"

namespace mtalab {
namespace {

// Names of people in the KJV haystack would be ambiguous; these are not in it.
const char* const kNames[] = {"Alder", "Brisk", "Corwin", "Dalia", "Elvar", "Fenna", "Garrow", "Hollis",
                              "Ivor", "Jessa", "Kestrel", "Linnea", "Morrow", "Nadim", "Orla", "Pelle",
                              "Quill", "Rhosyn", "Sable", "Tamsin", "Ulric", "Vesna", "Wren", "Xavi",
                              "Yara", "Zephyr", "Anouk", "Bexley", "Calder", "Dovrin", "Esme", "Faro"};
constexpr int kNumNames = sizeof(kNames) / sizeof(kNames[0]);

std::string needle_text(const std::string& name, const std::string& number) {
  return " The magic number of " + name + " is " + number + ". ";
}

std::string question(const std::vector<std::string>& names, bool all) {
  if (!all) return "\nWhat is the magic number of " + names[0] + "? ";
  std::string q = "\nWhat are the magic numbers of ";
  for (size_t i = 0; i < names.size(); ++i) q += (i ? ", " : "") + names[i];
  return q + "? ";
}

// Bytes of an example other than the haystack, at the longest names (the bound a length
// must leave room for).
int fixed_bytes(const NeedleConfig& c) {
  size_t longest = 0;
  for (auto* n : kNames) longest = std::max(longest, std::string(n).size());
  const std::string name(longest, 'x'), number(c.digits, '0');
  std::vector<std::string> names(c.ask_all ? c.needles : 1, name);
  const int answer = c.ask_all ? c.needles * (c.digits + 1) - 1 : c.digits;
  return c.needles * (int)needle_text(name, number).size() + (int)question(names, c.ask_all).size() + answer;
}

}  // namespace

void validate(const NeedleConfig& c) {
  auto bad = [](const std::string& what) { throw InputError(what); };
  if (c.needles < 1 || c.needles > 16) bad("option --task.needles=" + std::to_string(c.needles) + " (expected 1..16)");
  if (c.digits < 1 || c.digits > 9) bad("option --task.digits=" + std::to_string(c.digits) + " (expected 1..9)");
  if (c.lengths.empty()) bad("option --task.lengths is empty (expected lengths like 128,256)");
  if (c.depths.empty()) bad("option --task.depths is empty (expected depths in [0, 1] like 0,0.5,1)");
  const int need = fixed_bytes(c) + 8;
  for (int L : c.lengths) {
    if (L > c.context)
      bad("option --task.lengths: " + std::to_string(L) + " exceeds --task.context=" + std::to_string(c.context) +
          " (the model's context; expected every length <= it)");
    if (L < need)
      bad("option --task.lengths: " + std::to_string(L) + " bytes cannot hold " + std::to_string(c.needles) +
          " needles, the question and the answer (expected at least " + std::to_string(need) + ")");
  }
  if (c.context < need)
    bad("option --task.context=" + std::to_string(c.context) + " cannot hold " + std::to_string(c.needles) +
        " needles, the question and the answer (expected at least " + std::to_string(need) + ")");
  for (double d : c.depths)
    if (!(d >= 0 && d <= 1)) bad("option --task.depths: " + std::to_string(d) + " is not in [0, 1]");
}

namespace {

// "a,b,c" split at every comma: an empty item (a trailing or doubled comma) is kept so that
// it is refused, not dropped.
std::vector<std::string> list_items(const std::string& s) {
  std::vector<std::string> out;
  size_t b = 0;
  for (size_t e; (e = s.find(',', b)) != std::string::npos; b = e + 1) out.push_back(s.substr(b, e - b));
  out.push_back(s.substr(b));
  return out;
}

template <class T>
void refuse_duplicate(const std::vector<T>& seen, T v, const std::string& item, const std::string& option) {
  if (std::find(seen.begin(), seen.end(), v) != seen.end())
    throw InputError("option --" + option + ": '" + item + "' is listed twice (expected each value once)");
}

}  // namespace

std::vector<int> parse_int_list(const std::string& s, const std::string& option, int min) {
  const std::string what = min == 1 ? "a positive integer" : "an integer >= " + std::to_string(min);
  std::vector<int> out;
  for (const std::string& item : list_items(s)) {
    size_t used = 0;
    int v = 0;
    try {
      v = std::stoi(item, &used);
    } catch (...) {
      used = 0;
    }
    if (used == 0 || used != item.size() || v < min)
      throw InputError("option --" + option + ": '" + item + "' is not " + what + " (expected a list like 128,256)");
    refuse_duplicate(out, v, item, option);
    out.push_back(v);
  }
  return out;
}

std::vector<double> parse_depth_list(const std::string& s, const std::string& option) {
  std::vector<double> out;
  for (const std::string& item : list_items(s)) {
    size_t used = 0;
    double v = -1;
    try {
      v = std::stod(item, &used);
    } catch (...) {
      used = 0;
    }
    if (used == 0 || used != item.size() || !(v >= 0 && v <= 1))
      throw InputError("option --" + option + ": '" + item + "' is not a depth in [0, 1] (expected a list like 0,0.5,1)");
    refuse_duplicate(out, v, item, option);
    out.push_back(v);
  }
  return out;
}

NeedleTask::NeedleTask(const NeedleConfig& c, std::vector<uint8_t> train, std::vector<uint8_t> test, uint64_t seed)
    : cfg_(c), train_(std::move(train)), test_(std::move(test)), seed_(seed),
      train_seed_(derive_seed(seed, 0x6e65656431ull)), test_seed_(derive_seed(seed, 0x6e65656432ull)) {
  validate(c);
  const size_t need = (size_t)c.context + 1;
  if (train_.size() < need || test_.size() < need)
    throw InputError("needle: the haystack text's splits hold " + std::to_string(train_.size()) + " and " +
                     std::to_string(test_.size()) + " bytes; expected more than --task.context=" +
                     std::to_string(c.context) + " in each");
}

int NeedleTask::answer_len() const { return cfg_.ask_all ? cfg_.needles * (cfg_.digits + 1) - 1 : cfg_.digits; }

NeedleExample NeedleTask::example(uint64_t example_seed, int length, double depth, bool test) const {
  Rng rng(example_seed);
  std::vector<int> ids(kNumNames);
  for (int i = 0; i < kNumNames; ++i) ids[i] = i;
  shuffle(ids, rng);
  std::vector<std::string> names, numbers;
  for (int n = 0; n < cfg_.needles; ++n) {
    names.push_back(kNames[ids[n]]);
    std::string num(cfg_.digits, '0');
    for (auto& ch : num) ch = (char)('0' + rng.below(10));
    numbers.push_back(num);
  }
  // The question names needle 0 first; ask=all names them all in a shuffled order.
  std::vector<int> asked{0};
  if (cfg_.ask_all) {
    asked.resize(cfg_.needles);
    for (int n = 0; n < cfg_.needles; ++n) asked[n] = n;
    shuffle(asked, rng);
    std::swap(*std::find(asked.begin(), asked.end(), 0), asked[0]);
  }
  std::vector<std::string> asked_names;
  std::string answer;
  for (size_t i = 0; i < asked.size(); ++i) {
    asked_names.push_back(names[asked[i]]);
    answer += (i ? " " : "") + numbers[asked[i]];
  }
  const std::string q = question(asked_names, cfg_.ask_all);
  size_t needle_bytes = 0;
  for (int n = 0; n < cfg_.needles; ++n) needle_bytes += needle_text(names[n], numbers[n]).size();
  const int64_t hay = (int64_t)length - (int64_t)(needle_bytes + q.size() + answer.size());
  if (hay < 0) throw InputError("needle: length " + std::to_string(length) + " is too short for this example");
  const std::vector<uint8_t>& src = test ? test_ : train_;
  const size_t start = rng.below(src.size() - (size_t)hay);
  const std::string haystack(src.begin() + (std::ptrdiff_t)start, src.begin() + (std::ptrdiff_t)(start + hay));
  // Insertion points in the haystack: needle 0 at the depth asked for, the others random.
  std::vector<std::pair<int64_t, int>> at;
  for (int n = 0; n < cfg_.needles; ++n) {
    const double d = n == 0 && depth >= 0 ? depth : (double)rng.below(1u << 20) / (double)(1u << 20);
    at.push_back({(int64_t)std::llround(d * (double)hay), n});
  }
  std::stable_sort(at.begin(), at.end());
  NeedleExample ex;
  int64_t from = 0;
  for (auto& [pos, n] : at) {
    ex.text += haystack.substr(from, pos - from) + needle_text(names[n], numbers[n]);
    from = pos;
  }
  ex.text += haystack.substr(from) + q;
  ex.answer_start = (int)ex.text.size();
  ex.text += answer;
  return ex;
}

NeedleExample NeedleTask::train_example(uint64_t i) const {
  return example(derive_seed(train_seed_, i), cfg_.context, -1, false);
}

NeedleExample NeedleTask::test_example(size_t li, size_t di, int64_t i) const {
  const uint64_t cell = (uint64_t)(li * 1000 + di);
  return example(derive_seed(derive_seed(test_seed_, cell), (uint64_t)i), cfg_.lengths.at(li), cfg_.depths.at(di), true);
}

}  // namespace mtalab
