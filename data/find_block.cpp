#include "data/find_block.h"

#include <stdexcept>

#include "autograd/errors.h"
#include "data/rng.h"

namespace mtalab {

namespace {

int answer_len(const FindBlockConfig& c) {
  return c.answer == FindBlockAnswer::all ? c.block_len : 1;
}

// N distinct letters, uniformly: the first n steps of a Fisher–Yates shuffle of a–z.
std::string draw_letters(Rng& rng, const std::string& pool, int n) {
  std::string s = pool;
  for (size_t j = 0; j < (size_t)n; ++j) std::swap(s[j], s[j + rng.below(s.size() - j)]);
  return s.substr(0, (size_t)n);
}

bool holds_all(const std::string& block, const std::string& query) {
  for (char q : query)
    if (block.find(q) == std::string::npos) return false;
  return true;
}

}  // namespace

FindBlockAnswer parse_find_block_answer(const std::string& s) {
  if (s == "all") return FindBlockAnswer::all;
  if (s == "first") return FindBlockAnswer::first;
  if (s == "last") return FindBlockAnswer::last;
  throw InputError("find-block answer is '" + s + "'; expected all, first or last");
}

const char* to_string(FindBlockAnswer a) {
  switch (a) {
    case FindBlockAnswer::all: return "all";
    case FindBlockAnswer::first: return "first";
    case FindBlockAnswer::last: return "last";
  }
  return "?";
}

void validate(const FindBlockConfig& c) {
  if (c.block_len < 1 || c.block_len > 25)
    throw InputError("find-block block_len is " + std::to_string(c.block_len) +
                     "; expected 1..25 (a block of all 26 letters holds every query, so the "
                     "target could not be the only such block)");
  if (c.query_len < 1 || c.query_len > c.block_len)
    throw InputError("find-block query_len is " + std::to_string(c.query_len) +
                     "; expected 1..block_len = " + std::to_string(c.block_len));
  const int need = 2 * (c.block_len + 1) + c.query_len + answer_len(c);
  if (c.total_len < need)
    throw InputError("find-block total_len is " + std::to_string(c.total_len) +
                     "; need at least " + std::to_string(need) +
                     " for 2 blocks: 2*(block_len+1) + query_len + answer length " +
                     std::to_string(answer_len(c)) + " (answer " + to_string(c.answer) + ")");
  if (c.n_test < 0)
    throw InputError("find-block n_test is " + std::to_string(c.n_test) + "; expected >= 0");
}

FindBlockTask::FindBlockTask(const FindBlockConfig& cfg, uint64_t seed)
    : cfg_(cfg), seed_(seed), train_seed_(derive_seed(seed, 0)), test_seed_(derive_seed(seed, 1)) {
  validate(cfg_);
  const int a = answer_len(cfg_);
  const int room = cfg_.total_len - cfg_.query_len - a;
  n_blocks_ = room / (cfg_.block_len + 1);
  pad_ = room - n_blocks_ * (cfg_.block_len + 1);
  span_ = {cfg_.total_len - a, a};
}

std::string FindBlockTask::generate(uint64_t example_seed) const {
  static const std::string alphabet = "abcdefghijklmnopqrstuvwxyz";
  const int n = cfg_.block_len;
  Rng rng(example_seed);
  const std::string target = draw_letters(rng, alphabet, n);
  const std::string query = draw_letters(rng, target, cfg_.query_len);
  const int target_pos = (int)rng.below((uint64_t)n_blocks_);

  std::string text(pad_, kFindBlockPad);
  for (int k = 0; k < n_blocks_; ++k) {
    if (k > 0) text += '.';
    if (k == target_pos) {
      text += target;
      continue;
    }
    std::string block;
    do block = draw_letters(rng, alphabet, n);
    while (holds_all(block, query));  // at most 25/26 likely, so this ends quickly
    text += block;
  }
  text += '#';
  text += query;
  switch (cfg_.answer) {
    case FindBlockAnswer::all: text += target; break;
    case FindBlockAnswer::first: text += target.front(); break;
    case FindBlockAnswer::last: text += target.back(); break;
  }
  return text;
}

std::string FindBlockTask::train_example(uint64_t i) const {
  return generate(derive_seed(train_seed_, i));
}

std::string FindBlockTask::test_example(int64_t i) const {
  if (i < 0 || i >= cfg_.n_test)
    throw std::out_of_range("test example " + std::to_string(i) + " is outside [0, n_test = " +
                            std::to_string(cfg_.n_test) + ")");
  return generate(derive_seed(test_seed_, (uint64_t)i));
}

std::vector<std::string> FindBlockTask::test_set() const {
  std::vector<std::string> out;
  out.reserve((size_t)cfg_.n_test);
  for (int64_t i = 0; i < cfg_.n_test; ++i) out.push_back(test_example(i));
  return out;
}

FindBlockBatch FindBlockTask::next_train_batch(int64_t batch_size) {
  if (batch_size < 1)
    throw InputError("batch_size is " + std::to_string(batch_size) + "; expected at least 1");
  std::vector<std::string> ex;
  ex.reserve((size_t)batch_size);
  for (int64_t b = 0; b < batch_size; ++b) ex.push_back(train_example(next_++));
  return make_batch(ex);
}

FindBlockBatch FindBlockTask::make_batch(const std::vector<std::string>& examples) const {
  const int64_t T = seq_len();
  FindBlockBatch b;
  b.batch_size = (int64_t)examples.size();
  b.seq_len = T;
  b.inputs.resize((size_t)(b.batch_size * T));
  b.targets.resize(b.inputs.size());
  b.loss_mask.resize(b.inputs.size());
  for (int64_t r = 0; r < b.batch_size; ++r) {
    const std::string& e = examples[(size_t)r];
    if ((int64_t)e.size() != cfg_.total_len)
      throw std::invalid_argument("find-block example " + std::to_string(r) + " has " +
                                  std::to_string(e.size()) + " bytes; expected total_len " +
                                  std::to_string(cfg_.total_len));
    for (int64_t t = 0; t < T; ++t) {
      const size_t k = (size_t)(r * T + t);
      b.inputs[k] = (uint8_t)e[(size_t)t];
      b.targets[k] = (uint8_t)e[(size_t)t + 1];
      // target t is example byte t+1: an answer byte iff it lies in the answer span
      b.loss_mask[k] = (t + 1 >= span_.start && t + 1 < span_.start + span_.length) ? 1.f : 0.f;
    }
  }
  return b;
}

void FindBlockTask::set_state(const FindBlockState& s) {
  if (s.seed != seed_)
    throw InputError("find-block state was saved with seed " + std::to_string(s.seed) +
                     "; this task has seed " + std::to_string(seed_));
  next_ = s.next_example;
}

std::string FindBlockTask::answer(const std::string& example) const {
  if ((int)example.size() != cfg_.total_len)
    throw std::invalid_argument("find-block example has " + std::to_string(example.size()) +
                                " bytes; expected total_len " + std::to_string(cfg_.total_len));
  return example.substr((size_t)span_.start, (size_t)span_.length);
}

double FindBlockTask::error_rate(const std::vector<std::string>& examples,
                                 const std::vector<std::string>& decoded_answers) const {
  if (examples.size() != decoded_answers.size())
    throw std::invalid_argument("error_rate: " + std::to_string(examples.size()) +
                                " examples but " + std::to_string(decoded_answers.size()) +
                                " decoded answers");
  if (examples.empty()) return 0.0;
  size_t wrong = 0;
  for (size_t i = 0; i < examples.size(); ++i) wrong += decoded_answers[i] != answer(examples[i]);
  return (double)wrong / (double)examples.size();
}

}  // namespace mtalab
