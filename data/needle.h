// Multi-needle in a haystack (the MTA paper's §4.4): k needles "The magic number of <name>
// is <number>." are inserted into a window of real text (the haystack: KJV by default), and
// a question asks for one of them (or all of them); the model must answer with the number.
// Retrieving it means matching several tokens at once (the name), which MTA is built for.
//
// One example, exactly `length` bytes with the answer:
//   <haystack with the k needles inserted>\n<question> <answer>
//   ask = one:  "What is the magic number of Abel?"   answer "4821"
//   ask = all:  "What are the magic numbers of Abel, Sarah?" answer "4821 0317" (the
//               numbers in the order the question names them)
// The needles' names (distinct), numbers, positions and the haystack window are drawn per
// example, from the example's own seed. The needle a question names first is placed at
// the requested depth (0: the haystack's start, 1: its end) or at a random one; the others
// at random depths. Training examples come from the haystack's training split, test
// examples from its held-out split.
#pragma once
#include <cstdint>
#include <string>
#include <vector>

namespace mtalab {

struct NeedleConfig {
  int needles = 2;             // k, 1..16
  int digits = 4;              // digits of each magic number, 1..9
  bool ask_all = false;        // the question names every needle (else one)
  int context = 256;           // bytes of a training example (the longest grid length)
  std::vector<int> lengths{128, 256};           // evaluation grid: example lengths (<= context)
  std::vector<double> depths{0, 0.25, 0.5, 0.75, 1};  // evaluation grid: depths of the asked needle
  int64_t per_cell = 16;       // held-out examples per (length, depth) cell
};

// Throws InputError naming the option and the range expected (a length too short for k
// needles, a question and an answer names the bytes it needs).
void validate(const NeedleConfig& c);

// "128,256" → {128, 256}; "0,0.5,1" → {0, 0.5, 1}. InputError naming `option` otherwise.
std::vector<int> parse_int_list(const std::string& s, const std::string& option, int min = 1);
std::vector<double> parse_depth_list(const std::string& s, const std::string& option);

struct NeedleExample {
  std::string text;   // exactly `length` bytes: prompt then answer
  int answer_start = 0;  // the answer is text[answer_start, text.size())
};

class NeedleTask {
 public:
  // haystack_train / haystack_test: the two splits of the text; each must be longer than
  // the longest haystack an example needs (InputError otherwise).
  NeedleTask(const NeedleConfig& c, std::vector<uint8_t> haystack_train, std::vector<uint8_t> haystack_test,
             uint64_t seed);
  const NeedleConfig& config() const { return cfg_; }
  int answer_len() const;  // bytes of every answer

  // depth < 0: random. From the training split when !test.
  NeedleExample example(uint64_t example_seed, int length, double depth, bool test) const;
  NeedleExample train_example(uint64_t i) const;  // length context, random depth
  // Held-out example i of grid cell (length index li, depth index di).
  NeedleExample test_example(size_t li, size_t di, int64_t i) const;

  uint64_t seed() const { return seed_; }

 private:
  NeedleConfig cfg_;
  std::vector<uint8_t> train_, test_;
  uint64_t seed_, train_seed_, test_seed_;
};

}  // namespace mtalab
