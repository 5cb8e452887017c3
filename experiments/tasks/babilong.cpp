// `babilong`: bAbI QA1-QA5 with the facts scattered through distracting text (BabiLong; the
// MTA paper's §4.4, data/babilong.h). Trained on examples of task.context bytes mixing the
// tasks; evaluated on a task × distraction grid of held-out examples by exact match of the
// greedily decoded answer word (incremental decoding). The grid's accuracy is logged at every
// evaluation as /eval_grids/babilong_accuracy and drawn by `mtalab plot` as a heatmap; the
// run's metric is the error rate over the whole grid.
#include <algorithm>
#include <map>

#include "autograd/errors.h"
#include "autograd/ops.h"
#include "data/babilong.h"
#include "data/needle.h"
#include "experiments/tasks/train_data.h"

namespace mtalab {
namespace {

BabilongConfig babilong_config(const OptionValues& v) {
  BabilongConfig c;
  c.tasks = parse_int_list(v.get_string("task.qa"), "task.qa");
  c.facts = (int)v.get_int("task.facts");
  c.context = (int)v.get_int("task.context");
  c.distractions = parse_int_list(v.get_string("task.distractions"), "task.distractions", 0);
  c.per_cell = v.get_int("task.per_cell");
  validate(c);
  return c;
}

BabilongTask make_task(const TrainConfig& c) {
  ByteCorpus corpus = task_corpus(c);
  return BabilongTask(babilong_config(c.options), std::move(corpus.train), std::move(corpus.val), c.seed);
}

class BabilongData final : public TrainData {
 public:
  explicit BabilongData(const TrainConfig& c) : cfg_(c), task_(make_task(c)) {}

  Batch next(int64_t B) override {
    std::vector<BabilongExample> ex;
    for (int64_t i = 0; i < B; ++i) ex.push_back(task_.train_example(next_++));
    return to_batch(ex);
  }

  EvalResult evaluate(Transformer& model) override {
    NoGradGuard ng;
    Generator unused(0);
    const BabilongConfig& bc = task_.config();
    EvalGrid grid{"babilong_accuracy", "qa", "distraction", {}, {}, {}};
    for (int t : bc.tasks) grid.rows.push_back(t);
    for (int d : bc.distractions) grid.cols.push_back(d);
    double loss_sum = 0, weight = 0, right_all = 0;
    const int answer_bytes = task_.max_answer_bytes();
    for (size_t ti = 0; ti < bc.tasks.size(); ++ti)
      for (size_t di = 0; di < bc.distractions.size(); ++di) {
        // A cell's examples differ in length (the story's, the answer's): batched by equal
        // lengths of example and prompt.
        std::map<std::pair<size_t, int>, std::vector<BabilongExample>> by_len;
        for (int64_t i = 0; i < bc.per_cell; ++i) {
          BabilongExample e = task_.test_example(ti, di, i);
          by_len[{e.text.size(), e.answer_start}].push_back(std::move(e));
        }
        int64_t right = 0;
        for (auto& [len, all] : by_len)
          for (size_t s = 0; s < all.size(); s += (size_t)cfg_.eval_batch_size) {
            const std::vector<BabilongExample> ex(all.begin() + (std::ptrdiff_t)s,
                                                  all.begin() + (std::ptrdiff_t)std::min(all.size(), s + (size_t)cfg_.eval_batch_size));
            const Batch b = to_batch(ex).to(model.device());
            loss_sum += cross_entropy(model.forward(b.inputs, unused), b.targets, b.mask).item() * (double)b.tokens;
            weight += (double)b.tokens;
            std::vector<std::string> prompts;
            for (auto& e : ex) prompts.push_back(e.text.substr(0, e.answer_start));
            const auto answers = greedy_answers(model, prompts, answer_bytes);
            for (size_t i = 0; i < ex.size(); ++i) {
              const std::string want = ex[i].text.substr(ex[i].answer_start);  // the word and "."
              right += answers[i].compare(0, want.size(), want) == 0;
            }
          }
        grid.values.push_back((double)right / (double)bc.per_cell);
        right_all += (double)right;
      }
    EvalResult r;
    r.loss = weight > 0 ? loss_sum / weight : 0.0;
    r.metric = 1.0 - right_all / (double)(bc.per_cell * (int64_t)grid.values.size());
    r.grids.push_back(std::move(grid));
    return r;
  }

  std::string metric_name() const override { return "error_rate"; }
  Tensor fixed_example() const override {
    const BabilongConfig& bc = task_.config();
    return to_batch({task_.test_example(0, bc.distractions.size() - 1, 0)}).inputs;
  }
  std::map<std::string, int64_t> state() const override {
    return {{"data.seed", (int64_t)task_.seed()}, {"data.next_example", (int64_t)next_}};
  }
  void set_state(const std::map<std::string, int64_t>& s) override {
    if ((uint64_t)state_value(s, "data.seed") != task_.seed())
      throw InputError("checkpoint: the babilong task's seed " + std::to_string(state_value(s, "data.seed")) +
                       " is not this run's " + std::to_string(task_.seed()));
    next_ = (uint64_t)state_value(s, "data.next_example");
  }

 private:
  Batch to_batch(const std::vector<BabilongExample>& ex) const { return answer_batch(ex, cfg_.model.dtype); }

  TrainConfig cfg_;
  BabilongTask task_;
  uint64_t next_ = 0;
};

}  // namespace

MTALAB_REGISTER_TASK(
    babilong,
    {"babilong",
     "bAbI QA1-QA5 with the facts scattered through data.path (BabiLong, the paper's §4.4): answer one word (error rate)",
     {OptionSpec::String("task.qa", "1,2,3,4,5", "babilong: bAbI tasks to train and evaluate (1..5)"),
      OptionSpec::Int("task.facts", 4, "babilong: sentences of each story (QA4: 2)", 4, 32),
      OptionSpec::Int("task.context", 256, "needle, babilong: bytes per training example (the model's context)", 16,
                      1 << 16),
      OptionSpec::String("task.distractions", "0,32",
                         "babilong: evaluation grid, bytes of distracting text per example (each + the story <= task.context)"),
      OptionSpec::Int("task.per_cell", 16, "needle, babilong: held-out examples per cell of the evaluation grid", 1,
                      1 << 20)},
     {"data.path", "data.val_path", "data.val_fraction"},
     [](const OptionValues& v) { return v.get_int("task.context") - 1; },
     [](const OptionValues& v) { babilong_config(v); },
     [](const TrainConfig& c) { return std::make_unique<BabilongData>(c); }});

}  // namespace mtalab
