// `text`: byte-level language modelling of a text file (the KJV Bible by default), scored
// in bits per byte on its held-out split.
#include <cmath>

#include "autograd/ops.h"
#include "data/batcher.h"
#include "data/byte_corpus.h"
#include "experiments/tasks/train_data.h"

namespace mtalab {
namespace {

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
    return {token_tensor(b.inputs, B, cfg_.seq_len), token_tensor(b.targets, B, cfg_.seq_len), Tensor(), B * cfg_.seq_len};
  }
  EvalResult evaluate(Transformer& model) override {
    NoGradGuard ng;
    Generator unused(0);
    EvalBatches ev(val_, cfg_.seq_len, cfg_.eval_batch_size);
    double total = 0;
    int64_t count = 0, batches = 0;
    TokenBatch b;
    while (ev.next(b) && (cfg_.eval_max_batches == 0 || batches < cfg_.eval_max_batches)) {
      const Device d = model.device();
      Tensor logits = model.forward(token_tensor(b.inputs, b.batch_size, b.seq_len).to(d), unused);
      const int64_t n = b.batch_size * b.seq_len;
      total += cross_entropy(logits, token_tensor(b.targets, b.batch_size, b.seq_len).to(d)).item() * (double)n;
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
    return token_tensor(v, 1, cfg_.seq_len);
  }
  std::map<std::string, int64_t> state() const override {
    auto s = batcher_->state();
    return {{"data.seed", (int64_t)s.seed}, {"data.epoch", s.epoch}, {"data.index", s.index}};
  }
  void set_state(const std::map<std::string, int64_t>& s) override {
    BatcherState b;
    b.seed = (uint64_t)state_value(s, "data.seed");
    b.epoch = state_value(s, "data.epoch");
    b.index = state_value(s, "data.index");
    batcher_->set_state(b);
  }

 private:
  TrainConfig cfg_;
  std::vector<uint8_t> val_;
  std::unique_ptr<WindowBatcher> batcher_;
};

}  // namespace

MTALAB_REGISTER_TASK(text, {"text", "byte-level language modelling of data.path (bits per byte on its held-out split)",
                            {},
                            {"data.path", "data.val_path", "data.val_fraction", "data.seq_len", "data.shuffle",
                             "train.eval_max_batches"},
                            [](const OptionValues& v) { return v.get_int("data.seq_len"); },
                            nullptr,
                            [](const TrainConfig& c) { return std::make_unique<TextData>(c); }});

}  // namespace mtalab
