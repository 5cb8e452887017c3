#include "experiments/train_data.h"

#include <cmath>

#include "autograd/errors.h"
#include "autograd/ops.h"
#include "data/batcher.h"
#include "data/byte_corpus.h"
#include "data/find_block.h"

namespace mtalab {
namespace {

Tensor tokens(const std::vector<int32_t>& v, int64_t B, int64_t T, Device d) {
  return from_vector<int32_t>(v, {B, T}, {DType::i32, d});
}

int64_t get(const std::map<std::string, int64_t>& s, const std::string& k) {
  auto it = s.find(k);
  if (it == s.end()) throw InputError("checkpoint: data state has no '" + k + "' (was it saved for another task?)");
  return it->second;
}

class TextData final : public TrainData {
 public:
  explicit TextData(const TrainConfig& c) : cfg_(c) {
    ByteCorpusConfig bc;
    bc.path = c.data_path;
    bc.val_path = c.val_path;
    bc.val_fraction = c.val_fraction;
    bc.seq_len = c.seq_len;
    ByteCorpus corpus = load_byte_corpus(bc);
    val_ = std::move(corpus.val);
    batcher_ = std::make_unique<WindowBatcher>(std::move(corpus.train), c.seq_len, c.seed, c.shuffle);
  }
  Batch next(int64_t B) override {
    TokenBatch b = batcher_->next_batch(B);
    return {tokens(b.inputs, B, cfg_.seq_len, cfg_.device), tokens(b.targets, B, cfg_.seq_len, cfg_.device), Tensor(),
            B * cfg_.seq_len};
  }
  EvalResult evaluate(Transformer& model) override {
    NoGradGuard ng;
    Generator unused(0);
    EvalBatches ev(val_, cfg_.seq_len, cfg_.eval_batch_size);
    double total = 0;
    int64_t count = 0, batches = 0;
    TokenBatch b;
    while (ev.next(b) && (cfg_.eval_max_batches == 0 || batches < cfg_.eval_max_batches)) {
      Tensor logits = model.forward(tokens(b.inputs, b.batch_size, b.seq_len, cfg_.device), unused);
      const int64_t n = b.batch_size * b.seq_len;
      total += cross_entropy(logits, tokens(b.targets, b.batch_size, b.seq_len, cfg_.device)).item() * (double)n;
      count += n;
      ++batches;
    }
    EvalResult r;
    r.loss = count ? total / (double)count : 0.0;
    r.metric = bits_per_byte(r.loss);
    return r;
  }
  std::string metric_name() const override { return "bpb"; }
  Tensor fixed_example() const override {
    std::vector<int32_t> v(val_.begin(), val_.begin() + cfg_.seq_len);
    return tokens(v, 1, cfg_.seq_len, cfg_.device);
  }
  std::map<std::string, int64_t> state() const override {
    auto s = batcher_->state();
    return {{"data.seed", (int64_t)s.seed}, {"data.epoch", s.epoch}, {"data.index", s.index}};
  }
  void set_state(const std::map<std::string, int64_t>& s) override {
    BatcherState b;
    b.seed = (uint64_t)get(s, "data.seed");
    b.epoch = get(s, "data.epoch");
    b.index = get(s, "data.index");
    batcher_->set_state(b);
  }

 private:
  TrainConfig cfg_;
  std::vector<uint8_t> val_;
  std::unique_ptr<WindowBatcher> batcher_;
};

class FindBlockData final : public TrainData {
 public:
  explicit FindBlockData(const TrainConfig& c) : cfg_(c), task_(c.find_block, c.seed), test_(task_.test_set()) {}
  Batch next(int64_t B) override { return to_batch(task_.next_train_batch(B)); }

  // Loss: teacher-forced cross-entropy on answer tokens. Error rate: greedy decoding of
  // the whole answer from the prompt, exact match (the paper's §4.1 metric).
  EvalResult evaluate(Transformer& model) override {
    NoGradGuard ng;
    Generator unused(0);
    const AnswerSpan span = task_.answer_span();
    const int64_t T = task_.seq_len(), n = (int64_t)test_.size();
    double loss_sum = 0, weight = 0;
    std::vector<std::string> decoded;
    for (int64_t s = 0; s < n; s += cfg_.eval_batch_size) {
      std::vector<std::string> ex(test_.begin() + s, test_.begin() + std::min(n, s + cfg_.eval_batch_size));
      const int64_t B = (int64_t)ex.size();
      Batch b = to_batch(task_.make_batch(ex));
      loss_sum += cross_entropy(model.forward(b.inputs, unused), b.targets, b.mask).item() * (double)b.tokens;
      weight += (double)b.tokens;
      // Greedy: position p predicts byte p+1; answer bytes are fed back one at a time.
      std::vector<int32_t> in = b.inputs.to_vector<int32_t>();
      std::vector<std::string> out(B, std::string(span.length, '\0'));
      for (int a = 0; a < span.length; ++a) {
        const int64_t pos = span.start - 1 + a;  // predicts example byte span.start + a
        Tensor logits = model.forward(tokens(in, B, T, cfg_.device), unused);
        Tensor last = slice(logits, 1, pos, pos + 1);  // [B, 1, V]
        std::vector<float> lv = to_dtype(last, DType::f32).to_vector<float>();
        const int64_t V = logits.size(-1);
        for (int64_t i = 0; i < B; ++i) {
          int best = 0;
          for (int64_t t = 1; t < V; ++t)
            if (lv[i * V + t] > lv[i * V + best]) best = (int)t;
          out[i][a] = (char)best;
          if (pos + 1 < T) in[i * T + pos + 1] = best;
        }
      }
      decoded.insert(decoded.end(), out.begin(), out.end());
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
    f.seed = (uint64_t)get(s, "data.seed");
    f.next_example = (uint64_t)get(s, "data.next_example");
    task_.set_state(f);
  }

 private:
  Batch to_batch(const FindBlockBatch& b) const {
    Batch r;
    r.inputs = tokens(b.inputs, b.batch_size, b.seq_len, cfg_.device);
    r.targets = tokens(b.targets, b.batch_size, b.seq_len, cfg_.device);
    r.mask = from_vector<float>(b.loss_mask, {b.batch_size, b.seq_len}, {cfg_.model.dtype, cfg_.device});
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

std::unique_ptr<TrainData> make_train_data(const TrainConfig& cfg) {
  if (cfg.task == "text") return std::make_unique<TextData>(cfg);
  if (cfg.task == "find_block") return std::make_unique<FindBlockData>(cfg);
  throw InputError("unknown data.task '" + cfg.task + "' (expected find_block or text)");
}

}  // namespace mtalab
