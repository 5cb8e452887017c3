// `needle`: multi-needle retrieval in a haystack of real text (the MTA paper's §4.4,
// data/needle.h). Trained on examples of task.context bytes with the asked needle at a
// random depth; evaluated on a length × depth grid of held-out examples by exact match of
// the greedily decoded answer (incremental decoding). The grid's accuracy is logged at every
// evaluation as /eval_grids/needle_accuracy and drawn by `mtalab plot` as a heatmap; the
// run's metric is the error rate over the whole grid.
#include <algorithm>

#include "autograd/errors.h"
#include "autograd/ops.h"
#include "data/needle.h"
#include "experiments/tasks/train_data.h"

namespace mtalab {
namespace {

NeedleConfig needle_config(const OptionValues& v) {
  NeedleConfig c;
  c.needles = (int)v.get_int("task.needles");
  c.digits = (int)v.get_int("task.digits");
  c.ask_all = v.get_string("task.ask") == "all";
  c.context = (int)v.get_int("task.context");
  c.lengths = parse_int_list(v.get_string("task.lengths"), "task.lengths");
  c.depths = parse_depth_list(v.get_string("task.depths"), "task.depths");
  c.per_cell = v.get_int("task.per_cell");
  validate(c);
  return c;
}

NeedleTask make_task(const TrainConfig& c) {
  ByteCorpus corpus = task_corpus(c);
  return NeedleTask(needle_config(c.options), std::move(corpus.train), std::move(corpus.val), c.seed);
}

class NeedleData final : public TrainData {
 public:
  explicit NeedleData(const TrainConfig& c) : cfg_(c), task_(make_task(c)) {}

  Batch next(int64_t B) override {
    std::vector<NeedleExample> ex;
    for (int64_t i = 0; i < B; ++i) ex.push_back(task_.train_example(next_++));
    return to_batch(ex);
  }

  EvalResult evaluate(Transformer& model) override {
    NoGradGuard ng;
    Generator unused(0);
    const NeedleConfig& nc = task_.config();
    EvalGrid grid{"needle_accuracy", "length", "depth", {}, {}, {}};
    for (int L : nc.lengths) grid.rows.push_back(L);
    grid.cols = nc.depths;
    double loss_sum = 0, weight = 0, right_all = 0;
    for (size_t li = 0; li < nc.lengths.size(); ++li)
      for (size_t di = 0; di < nc.depths.size(); ++di) {
        int64_t right = 0;
        for (int64_t s = 0; s < nc.per_cell; s += cfg_.eval_batch_size) {
          std::vector<NeedleExample> ex;
          for (int64_t i = s; i < std::min(nc.per_cell, s + cfg_.eval_batch_size); ++i)
            ex.push_back(task_.test_example(li, di, i));
          const Batch b = to_batch(ex).to(model.device());
          loss_sum += cross_entropy(model.forward(b.inputs, unused), b.targets, b.mask).item() * (double)b.tokens;
          weight += (double)b.tokens;
          std::vector<std::string> prompts;
          for (auto& e : ex) prompts.push_back(e.text.substr(0, e.answer_start));
          const auto answers = greedy_answers(model, prompts, task_.answer_len());
          for (size_t i = 0; i < ex.size(); ++i) right += answers[i] == ex[i].text.substr(ex[i].answer_start);
        }
        grid.values.push_back((double)right / (double)nc.per_cell);
        right_all += (double)right;
      }
    EvalResult r;
    r.loss = weight > 0 ? loss_sum / weight : 0.0;
    r.metric = 1.0 - right_all / (double)(nc.per_cell * (int64_t)grid.values.size());
    r.grids.push_back(std::move(grid));
    return r;
  }

  std::string metric_name() const override { return "error_rate"; }
  Tensor fixed_example() const override {
    const NeedleConfig& nc = task_.config();
    return to_batch({task_.test_example(nc.lengths.size() - 1, nc.depths.size() / 2, 0)}).inputs;
  }
  std::map<std::string, int64_t> state() const override {
    return {{"data.seed", (int64_t)task_.seed()}, {"data.next_example", (int64_t)next_}};
  }
  void set_state(const std::map<std::string, int64_t>& s) override {
    if ((uint64_t)state_value(s, "data.seed") != task_.seed())
      throw InputError("checkpoint: the needle task's seed " + std::to_string(state_value(s, "data.seed")) +
                       " is not this run's " + std::to_string(task_.seed()));
    next_ = (uint64_t)state_value(s, "data.next_example");
  }

 private:
  Batch to_batch(const std::vector<NeedleExample>& ex) const { return answer_batch(ex, cfg_.model.dtype); }

  TrainConfig cfg_;
  NeedleTask task_;
  uint64_t next_ = 0;
};

}  // namespace

MTALAB_REGISTER_TASK(
    needle,
    {"needle", "multi-needle in a haystack of data.path (the paper's §4.4): recall the magic number of a name (error rate)",
     {OptionSpec::Int("task.needles", 2, "needle: needles per example (k)", 1, 16),
      OptionSpec::Int("task.digits", 4, "needle: digits of each magic number", 1, 9),
      OptionSpec::String("task.ask", "one", "needle: the question asks for one needle or all", {"one", "all"}),
      OptionSpec::Int("task.context", 256, "needle, babilong: bytes per training example (the model's context)", 16,
                      1 << 16),
      OptionSpec::String("task.lengths", "128,256", "needle: evaluation grid lengths in bytes (each <= task.context)"),
      OptionSpec::String("task.depths", "0,0.25,0.5,0.75,1", "needle: evaluation grid depths of the asked needle"),
      OptionSpec::Int("task.per_cell", 16, "needle, babilong: held-out examples per cell of the evaluation grid", 1,
                      1 << 20)},
     {"data.path", "data.val_path", "data.val_fraction"},
     [](const OptionValues& v) { return v.get_int("task.context") - 1; },
     [](const OptionValues& v) { needle_config(v); },
     [](const TrainConfig& c) { return std::make_unique<NeedleData>(c); }});

}  // namespace mtalab
