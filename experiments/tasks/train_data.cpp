#include "experiments/tasks/train_data.h"

#include <algorithm>

#include "autograd/errors.h"
#include "autograd/ops.h"

namespace mtalab {

Tensor token_tensor(const std::vector<int32_t>& v, int64_t B, int64_t T) {
  return from_vector<int32_t>(v, {B, T}, {DType::i32, kCPU});
}

Batch Batch::to(Device d) const {
  Batch b = *this;
  b.inputs = inputs.to(d);
  b.targets = targets.to(d);
  if (mask.defined()) b.mask = mask.to(d);
  return b;
}

int64_t state_value(const std::map<std::string, int64_t>& s, const std::string& k) {
  auto it = s.find(k);
  if (it == s.end()) throw InputError("checkpoint: data state has no '" + k + "' (was it saved for another task?)");
  return it->second;
}

ByteCorpus task_corpus(const TrainConfig& c) {
  ByteCorpusConfig bc;
  bc.path = c.data_path;
  bc.val_path = c.val_path;
  bc.val_fraction = c.val_fraction;
  bc.seq_len = c.options.get_int("task.context");
  return load_byte_corpus(bc);
}

Batch answer_batch(const std::vector<const std::string*>& texts, const std::vector<int64_t>& answer_starts, DType dtype) {
  const int64_t B = (int64_t)texts.size(), T = (int64_t)texts[0]->size() - 1;
  std::vector<int32_t> in, tg;
  std::vector<float> mask;
  int64_t counted = 0;
  for (size_t i = 0; i < texts.size(); ++i) {
    const std::string& text = *texts[i];
    if ((int64_t)text.size() != T + 1) throw std::invalid_argument("answer_batch: examples of different lengths");
    for (int64_t t = 0; t < T; ++t) {
      in.push_back((unsigned char)text[t]);
      tg.push_back((unsigned char)text[t + 1]);
      const bool answer = t + 1 >= answer_starts[i];
      mask.push_back(answer ? 1.f : 0.f);
      counted += answer;
    }
  }
  Batch b;
  b.inputs = token_tensor(in, B, T);
  b.targets = token_tensor(tg, B, T);
  b.mask = from_vector<float>(mask, {B, T}, {dtype, kCPU});
  b.tokens = counted;
  return b;
}

std::vector<std::string> greedy_answers(Transformer& model, const std::vector<std::string>& prompts, int answer_len) {
  const Device device = model.device();
  const int64_t B = (int64_t)prompts.size(), P = B ? (int64_t)prompts[0].size() : 0;
  std::vector<std::string> out(B, std::string(answer_len, '\0'));
  if (B == 0 || answer_len == 0) return out;
  std::vector<int32_t> in;
  for (auto& p : prompts) {
    if ((int64_t)p.size() != P) throw std::invalid_argument("greedy_answers: prompts of different lengths");
    for (unsigned char ch : p) in.push_back(ch);
  }
  DecodeCache cache;
  Tensor logits = model.decode(token_tensor(in, B, P).to(device), cache);
  for (int a = 0; a < answer_len; ++a) {
    const int64_t T = logits.size(1), V = logits.size(2);
    const std::vector<float> lv = to_dtype(slice(logits, 1, T - 1, T), DType::f32).to(kCPU).contiguous().to_vector<float>();
    std::vector<int32_t> next(B);
    for (int64_t i = 0; i < B; ++i) {  // ties go to the smallest byte, as argmax does
      const float* row = lv.data() + i * V;
      next[i] = (int32_t)(std::max_element(row, row + V) - row);
      out[i][a] = (char)next[i];
    }
    if (a + 1 < answer_len) logits = model.decode(token_tensor(next, B, 1).to(device), cache);
  }
  return out;
}

// ---- registry -------------------------------------------------------------------
static std::map<std::string, TaskSpec>& registry() {
  static std::map<std::string, TaskSpec> r;
  return r;
}

bool TaskRegistry::add(TaskSpec t) {
  for (auto& o : t.options)
    if (o.name.rfind("task.", 0) != 0)
      throw std::logic_error("task '" + t.name + "': option '" + o.name + "' must be named task.<option>");
  if (!registry().emplace(t.name, t).second) throw std::logic_error("task '" + t.name + "' registered twice");
  return true;
}

const TaskSpec& TaskRegistry::get(const std::string& name) {
  auto it = registry().find(name);
  if (it == registry().end()) {
    std::string known;
    for (auto& [n, t] : registry()) known += (known.empty() ? "" : ", ") + n;
    throw InputError("unknown data.task '" + name + "' (expected one of: " + known + ")");
  }
  return it->second;
}

std::vector<const TaskSpec*> TaskRegistry::list() {
  std::vector<const TaskSpec*> out;
  for (auto& [n, t] : registry()) out.push_back(&t);
  return out;
}

std::unique_ptr<TrainData> make_train_data(const TrainConfig& cfg) { return TaskRegistry::get(cfg.task).make(cfg); }

}  // namespace mtalab
