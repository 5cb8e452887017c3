// BabiLong at CPU scale (Kuratov et al. 2024; the MTA paper's §4.4, Fig. 5/7): bAbI questions
// (Weston et al. 2015) whose supporting facts are scattered through long distracting text.
//
// The bAbI world is simulated from scratch: actors move between rooms, pick up, drop and
// hand objects; a story is the sequence of those events as sentences, in the surface forms
// of the released data (went/journeyed/travelled/moved to, went back to; got/took/picked
// up/grabbed ... there; dropped/discarded/put down/left; gave/handed/passed ... to), and a
// question about the final state whose answer is one word:
//   QA1 single supporting fact    "Where is Mary?"                      bathroom
//   QA2 two supporting facts      "Where is the football?"              garden
//   QA3 three supporting facts    "Where was the apple before the office?"  kitchen
//   QA4 two-argument relations    "What is north of the hallway?"       office
//   QA5 three-argument relations  "Who did Jeff give the milk to?"      Bill
// The facts keep their order and are inserted at random sentence boundaries of a window of
// real text (the haystack, data.path; or at its end), the question on a new line after them:
//   <haystack with " <fact>" inserted>\n<question> <answer>.
// The answer is the word and its full stop (the stop shows that the word ended), scored by
// exact match. Training examples are exactly `context` bytes (the haystack fills what the
// story leaves) from the haystack's training split; test examples have exactly `distraction`
// bytes of haystack from the held-out split (their total length varies with the story).
#pragma once
#include <cstdint>
#include <string>
#include <vector>

namespace mtalab {

struct BabilongConfig {
  std::vector<int> tasks{1, 2, 3, 4, 5};  // QA tasks trained and evaluated (1..5)
  int facts = 4;                           // sentences of a story (QA4: always 2), 4..32
  int context = 256;                       // bytes of a training example
  std::vector<int> distractions{0, 32};    // evaluation grid: haystack bytes of a test example
  int64_t per_cell = 16;                   // held-out examples per (task, distraction) cell
};

// The most bytes a story of `facts` sentences, its question and its answer can take (every
// test example is this plus its distraction).
int babilong_story_bound(int facts);

// InputError naming the option and what was expected.
void validate(const BabilongConfig& c);

struct BabilongExample {
  int qa = 0;
  std::vector<std::string> facts;   // the story's sentences, in order ("Mary went to the office.")
  std::vector<int> support;         // indices into facts: the supporting facts of the answer
  std::string question, answer;     // "Where is Mary?", "office"
  std::string text;                 // the whole example: prompt then answer and "."
  int answer_start = 0;             // text[answer_start, end) is answer + "."
  std::vector<size_t> fact_at;      // byte offset of each fact in text
  int haystack_bytes = 0;           // bytes of distracting text
};

// The story and question of one QA task, from the example's own seed (no haystack).
BabilongExample babi_story(int qa, int facts, uint64_t seed);

class BabilongTask {
 public:
  // haystack_train / haystack_test: the two splits of the text; each must hold more than
  // `context` bytes (InputError otherwise).
  BabilongTask(const BabilongConfig& c, std::vector<uint8_t> haystack_train, std::vector<uint8_t> haystack_test,
               uint64_t seed);
  const BabilongConfig& config() const { return cfg_; }
  uint64_t seed() const { return seed_; }
  int max_answer_bytes() const;  // the longest answer with its "." (bytes greedy decoding needs)

  BabilongExample train_example(uint64_t i) const;  // a random task of cfg.tasks, `context` bytes
  // Held-out example i of grid cell (task index ti into cfg.tasks, distraction index di).
  BabilongExample test_example(size_t ti, size_t di, int64_t i) const;

 private:
  BabilongExample place(BabilongExample story, int haystack, const std::vector<uint8_t>& src, uint64_t seed) const;
  BabilongConfig cfg_;
  std::vector<uint8_t> train_, test_;
  uint64_t seed_, train_seed_, test_seed_;
};

}  // namespace mtalab
