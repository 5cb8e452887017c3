// What a training run learns from — a task — behind one interface the trainer uses for
// batches, evaluation and resumable state, and the registry of tasks.
//
// A task is one file under experiments/tasks/ (<name>.cpp) holding a TrainData and one
// registration line:
//
//   MTALAB_REGISTER_TASK(my_task, {"my_task", "one-line help",
//       {OptionSpec::Int("task.width", 8, "my_task: ...", 1, 64)},   // its task.* options
//       {"data.path"},                                                // other options it reads
//       [](const OptionValues& v) { return v.get_int("task.width") * 2; },  // longest sequence
//       nullptr,                                                      // cross-option checks
//       [](const TrainConfig& c) { return std::make_unique<MyTaskData>(c); }});
//
// `--data.task my_task`, its options on the command line, in config files, in sweeps and in
// `mtalab train --help` follow with no edit anywhere else; an option of another task, or a
// data.* option it does not read, is refused as having no effect.
#pragma once
#include <functional>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "autograd/tensor.h"
#include "data/byte_corpus.h"
#include "experiments/train/config.h"
#include "layers/transformer.h"

namespace mtalab {

// A task's batches live on the host: the trainer moves them to the model's device (and a
// task's evaluation to its model's), so no task is told where the model runs.
struct Batch {
  Tensor inputs, targets;  // int32 [B, T]
  Tensor mask;             // float [B, T] (loss on answer tokens only) or undefined
  int64_t tokens = 0;      // tokens that count towards the loss
  Batch to(Device d) const;
};

// A metric over a grid of conditions (e.g. needle accuracy by length × depth), logged at
// every evaluation as the snapshot /eval_grids/<name> [rows, cols] with its axes beside it.
struct EvalGrid {
  std::string name, row_axis, col_axis;
  std::vector<double> rows, cols;
  std::vector<double> values;  // rows × cols, row-major
};

struct EvalResult {
  double loss = 0;    // mean nats per counted token
  double metric = 0;  // bits per byte (text) or error rate (the answer tasks)
  std::vector<EvalGrid> grids;
};

class TrainData {
 public:
  virtual ~TrainData() = default;
  virtual Batch next(int64_t batch_size) = 0;
  virtual EvalResult evaluate(Transformer& model) = 0;
  virtual std::string metric_name() const = 0;  // "bpb" or "error_rate"
  // One fixed evaluation sequence [1, T] on the host, for attention maps.
  virtual Tensor fixed_example() const = 0;
  // Position in the training stream, for checkpoints.
  virtual std::map<std::string, int64_t> state() const = 0;
  virtual void set_state(const std::map<std::string, int64_t>& s) = 0;
};

// Loads what `cfg` names; InputError for missing, empty or too-short data.
std::unique_ptr<TrainData> make_train_data(const TrainConfig& cfg);

struct TaskSpec {
  std::string name, help;
  std::vector<OptionSpec> options;  // its options, named task.<option>
  std::vector<std::string> uses;    // the other non-model options it reads (data.path, ...)
  std::function<int64_t(const OptionValues&)> seq_len;  // the longest sequence the model sees
  std::function<void(const OptionValues&)> check;       // cross-option checks (InputError), or null
  std::function<std::unique_ptr<TrainData>(const TrainConfig&)> make;
};

class TaskRegistry {
 public:
  static bool add(TaskSpec t);
  static const TaskSpec& get(const std::string& name);  // InputError listing the known tasks
  static std::vector<const TaskSpec*> list();           // sorted by name
};

// Helpers the tasks share.
Tensor token_tensor(const std::vector<int32_t>& v, int64_t B, int64_t T);  // int32 [B, T] on the host
int64_t state_value(const std::map<std::string, int64_t>& s, const std::string& key);  // InputError if absent
// Question-answer examples of one length as a host batch: inputs text[0, L−1), targets
// text[1, L), the loss on the answer bytes only (positions from answer_start on).
Batch answer_batch(const std::vector<const std::string*>& texts, const std::vector<int64_t>& answer_starts, DType dtype);
template <class Example>  // anything with .text and .answer_start (needle, babilong)
Batch answer_batch(const std::vector<Example>& ex, DType dtype) {
  std::vector<const std::string*> texts;
  std::vector<int64_t> starts;
  for (const Example& e : ex) {
    texts.push_back(&e.text);
    starts.push_back((int64_t)e.answer_start);
  }
  return answer_batch(texts, starts, dtype);
}
// data.path split into training and held-out text for a task whose examples are
// task.context bytes (needle, babilong: the haystack).
ByteCorpus task_corpus(const TrainConfig& c);
// Greedy answers of answer_len bytes to prompts of one length, decoded incrementally
// (Transformer::decode: the prompt fills the cache, then one token at a time), on the
// model's device.
std::vector<std::string> greedy_answers(Transformer& model, const std::vector<std::string>& prompts, int answer_len);

}  // namespace mtalab

#define MTALAB_REGISTER_TASK(NAME, ...) \
  static const bool mtalab_task_registered_##NAME = ::mtalab::TaskRegistry::add(::mtalab::TaskSpec __VA_ARGS__)
