// `find_block`: the MTA paper's toy task (§4.1, data/find_block.h), scored by the error
// rate of greedily decoded answers on a fixed held-out set.
#include "autograd/errors.h"
#include "autograd/ops.h"
#include "data/find_block.h"
#include "experiments/tasks/train_data.h"

namespace mtalab {
namespace {

FindBlockConfig find_block_config(const OptionValues& v) {
  FindBlockConfig f;
  f.block_len = (int)v.get_int("task.block_len");
  f.query_len = (int)v.get_int("task.query_len");
  f.total_len = (int)v.get_int("task.total_len");
  f.answer = parse_find_block_answer(v.get_string("task.answer"));
  f.n_test = v.get_int("task.n_test");
  return f;
}

class FindBlockData final : public TrainData {
 public:
  explicit FindBlockData(const TrainConfig& c) : cfg_(c), task_(find_block_config(c.options), c.seed), test_(task_.test_set()) {}
  Batch next(int64_t B) override { return to_batch(task_.next_train_batch(B)); }

  // Loss: teacher-forced cross-entropy on answer tokens. Error rate: greedy decoding of
  // the whole answer from the prompt (incremental, from a key/value cache), exact match
  // (the paper's §4.1 metric).
  EvalResult evaluate(Transformer& model) override {
    NoGradGuard ng;
    Generator unused(0);
    const AnswerSpan span = task_.answer_span();
    const int64_t n = (int64_t)test_.size();
    double loss_sum = 0, weight = 0;
    std::vector<std::string> decoded;
    for (int64_t s = 0; s < n; s += cfg_.eval_batch_size) {
      std::vector<std::string> ex(test_.begin() + s, test_.begin() + std::min(n, s + cfg_.eval_batch_size));
      const Batch b = to_batch(task_.make_batch(ex)).to(model.device());
      loss_sum += cross_entropy(model.forward(b.inputs, unused), b.targets, b.mask).item() * (double)b.tokens;
      weight += (double)b.tokens;
      std::vector<std::string> prompts;
      for (auto& e : ex) prompts.push_back(e.substr(0, span.start));
      for (auto& a : greedy_answers(model, prompts, span.length)) decoded.push_back(a);
    }
    EvalResult r;
    r.loss = weight > 0 ? loss_sum / weight : 0.0;
    r.metric = task_.error_rate(test_, decoded);
    return r;
  }
  std::string metric_name() const override { return "error_rate"; }
  Tensor fixed_example() const override { return to_batch(task_.make_batch({test_[0]})).inputs; }
  std::map<std::string, int64_t> state() const override {
    auto s = task_.state();
    return {{"data.seed", (int64_t)s.seed}, {"data.next_example", (int64_t)s.next_example}};
  }
  void set_state(const std::map<std::string, int64_t>& s) override {
    FindBlockState f;
    f.seed = (uint64_t)state_value(s, "data.seed");
    f.next_example = (uint64_t)state_value(s, "data.next_example");
    task_.set_state(f);
  }

 private:
  Batch to_batch(const FindBlockBatch& b) const {
    Batch r;
    r.inputs = token_tensor(b.inputs, b.batch_size, b.seq_len);
    r.targets = token_tensor(b.targets, b.batch_size, b.seq_len);
    r.mask = from_vector<float>(b.loss_mask, {b.batch_size, b.seq_len}, {cfg_.model.dtype, kCPU});
    double n = 0;
    for (float m : b.loss_mask) n += m;
    r.tokens = (int64_t)n;
    return r;
  }
  TrainConfig cfg_;
  FindBlockTask task_;
  std::vector<std::string> test_;
};

}  // namespace

MTALAB_REGISTER_TASK(
    find_block,
    {"find_block", "the paper's find-the-block toy task: which block holds all the query letters (error rate)",
     {OptionSpec::Int("task.block_len", 5, "find_block: letters per block (N)", 1, 25),
      OptionSpec::Int("task.query_len", 2, "find_block: query letters (L)", 1, 25),
      OptionSpec::Int("task.total_len", 64, "find_block: bytes per example, answer included", 4, 1 << 16),
      OptionSpec::String("task.answer", "all", "find_block: answer the whole target block, its first or last letter",
                         {"all", "first", "last"}),
      OptionSpec::Int("task.n_test", 512, "find_block: held-out test examples", 1, 1 << 24)},
     {},
     [](const OptionValues& v) { return v.get_int("task.total_len") - 1; },
     [](const OptionValues& v) {
       if (v.get_int("task.query_len") > v.get_int("task.block_len"))
         throw InputError("option --task.query_len=" + std::to_string(v.get_int("task.query_len")) +
                          " exceeds --task.block_len=" + std::to_string(v.get_int("task.block_len")));
     },
     [](const TrainConfig& c) { return std::make_unique<FindBlockData>(c); }});

}  // namespace mtalab
