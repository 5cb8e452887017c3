// The "find the block" synthetic task of Multi-Token Attention (arXiv 2504.00927): the model
// must locate the one block that holds all the query letters, which needs several query
// letters matched at once — the case single-token attention finds hard.
//
// Layout of one example, exactly total_len bytes with the answer:
//   [pad][block_1 . block_2 . ... . block_K][#][query][answer]
//   block   N = block_len distinct random letters a–z
//   query   L = query_len distinct letters of the target block, in random order
//   answer  the whole target block (all, A = N bytes), its first or its last letter (A = 1)
// Blocks and separators take K*(N+1) bytes (K-1 dots plus '#'), so
//   K = floor((total_len - L - A) / (N+1)),  pad P = (total_len - L - A) - K*(N+1)
// filler bytes '_' at the start, which keeps the query and answer at fixed positions.
// Example: total_len 64, N 5, L 2, all: K = 9 blocks, P = 3 ("___" + 53 + "#" + 2 + 5).
// The target is uniformly one of the K blocks; a non-target block that happens to hold all
// query letters is redrawn, so exactly one block (the target) holds them.
#pragma once
#include <cstdint>
#include <string>
#include <vector>

namespace mtalab {

enum class FindBlockAnswer { all, first, last };
// "all", "first" or "last"; anything else throws InputError naming the value.
FindBlockAnswer parse_find_block_answer(const std::string& s);
const char* to_string(FindBlockAnswer a);

constexpr char kFindBlockPad = '_';

struct FindBlockConfig {
  int block_len = 5;    // N, in 1..25 (26 letters would put every query in every block)
  int query_len = 2;    // L, in 1..N
  int total_len = 64;   // bytes per example, answer included; room for at least 2 blocks
  FindBlockAnswer answer = FindBlockAnswer::all;
  int64_t n_test = 1000;  // size of the fixed held-out test set
};

// Throws InputError naming the first bad option and the range it must lie in.
void validate(const FindBlockConfig& cfg);

// Where the answer lies within an example: text[start, start+length). The prompt for greedy
// decoding is text[0, start).
struct AnswerSpan {
  int start = 0;
  int length = 0;
};

// inputs/targets int32 [batch_size * seq_len] row-major with seq_len = total_len - 1
// (targets are the example shifted by one); loss_mask is 1 exactly where the target is an
// answer byte, 0 elsewhere.
struct FindBlockBatch {
  int64_t batch_size = 0;
  int64_t seq_len = 0;
  std::vector<int32_t> inputs;
  std::vector<int32_t> targets;
  std::vector<float> loss_mask;
};

// The training stream's position, for checkpoints.
struct FindBlockState {
  uint64_t seed = 0;          // the task seed, checked on resume
  uint64_t next_example = 0;  // index of the next training example
};

// Example i of the training set is a pure function of (train_seed, i), and test example i of
// (test_seed, i); both seeds derive from the task seed, so they differ and the test set is
// the same fixed n_test examples for every run with that seed.
class FindBlockTask {
 public:
  FindBlockTask(const FindBlockConfig& cfg, uint64_t seed);  // validates cfg

  const FindBlockConfig& config() const { return cfg_; }
  int num_blocks() const { return n_blocks_; }
  int pad_len() const { return pad_; }
  int seq_len() const { return cfg_.total_len - 1; }
  AnswerSpan answer_span() const { return span_; }
  uint64_t train_seed() const { return train_seed_; }
  uint64_t test_seed() const { return test_seed_; }

  std::string train_example(uint64_t i) const;
  std::string test_example(int64_t i) const;  // i in [0, n_test), else std::out_of_range
  std::vector<std::string> test_set() const;  // all n_test test examples, in order

  // The next batch_size training examples (batch_size >= 1, else InputError).
  FindBlockBatch next_train_batch(int64_t batch_size);
  // Any examples of this task's layout as a batch (std::invalid_argument on a wrong length).
  FindBlockBatch make_batch(const std::vector<std::string>& examples) const;

  FindBlockState state() const { return {seed_, next_}; }
  // Throws InputError if the state was saved by a task with another seed.
  void set_state(const FindBlockState& s);

  std::string answer(const std::string& example) const;
  // Share of examples whose decoded answer differs from their answer (exact match).
  double error_rate(const std::vector<std::string>& examples,
                    const std::vector<std::string>& decoded_answers) const;

 private:
  std::string generate(uint64_t example_seed) const;

  FindBlockConfig cfg_;
  uint64_t seed_, train_seed_, test_seed_;
  int n_blocks_ = 0, pad_ = 0;
  AnswerSpan span_;
  uint64_t next_ = 0;
};

}  // namespace mtalab
