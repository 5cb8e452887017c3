// Generation: greedy decoding picks each step's most likely token of the model's own
// logits, sampling is reproducible by seed and respects top-k, and `mtalab generate`
// continues a prompt from a checkpoint.
#include <doctest/doctest.h>

#include <sys/stat.h>
#include <sys/wait.h>

#include <cmath>
#include <cstdlib>
#include <fstream>
#include <set>

#include "autograd/errors.h"
#include "autograd/ops.h"
#include "experiments/commands/generate.h"
#include "experiments/run/checkpoint_file.h"
#include "layers/attention.h"
#include "process_util.h"

using namespace mtalab;
using namespace mtalab::testing;

namespace {

ModelConfig tiny(const std::string& attention) {
  ModelConfig mc;
  mc.d_model = 32;
  mc.n_layers = 2;
  mc.n_heads = 2;
  mc.max_seq_len = 12;
  mc.dtype = DType::f64;
  mc.attention = attention;
  mc.attention_options = AttentionRegistry::options_for(attention);
  if (attention == "mta") {
    mc.attention_options.set("kq_layers", "all");
    mc.attention_options.set("init", "uniform");  // not the identity: the convolutions matter
  }
  return mc;
}

// The model's most likely next token after `tokens` (its last max_seq_len), computed here.
int64_t argmax_next(Transformer& m, const std::vector<int64_t>& tokens) {
  NoGradGuard ng;
  Generator unused(0);
  const size_t start = tokens.size() > 12 ? tokens.size() - 12 : 0;
  std::vector<int32_t> w(tokens.begin() + (long)start, tokens.end());
  const std::vector<double> l =
      m.forward(from_vector<int32_t>(w, {1, (int64_t)w.size()}, {DType::i32, kCPU}), unused).to_vector<double>();
  const size_t V = 256, off = (w.size() - 1) * V;
  return (int64_t)(std::max_element(l.begin() + (long)off, l.begin() + (long)(off + V)) - (l.begin() + (long)off));
}

}  // namespace

TEST_CASE("generate: greedy takes the most likely token at every step, past the context length too") {
  for (const std::string att : {"softmax", "mta"}) {
    CAPTURE(att);
    Transformer m(tiny(att));
    const std::vector<int64_t> prompt{72, 101, 108};
    GenerateOptions o;
    o.new_tokens = 15;  // 3 + 15 tokens: beyond max_seq_len 12, the window slides
    const auto out = generate(m, prompt, o);
    REQUIRE(out.size() == 15);
    std::vector<int64_t> seq = prompt;
    for (int64_t t : out) {
      CHECK(t == argmax_next(m, seq));
      seq.push_back(t);
    }
  }
}

TEST_CASE("generate: incremental decoding chooses what full recomputation chooses, every variant") {
  for (const std::string att : {"softmax", "temperature", "diff", "talking_heads", "mta"}) {
    CAPTURE(att);
    Transformer m(tiny(att));
    GenerateOptions o;
    o.new_tokens = 16;  // past max_seq_len 12: the cache is refilled from the sliding window
    o.temperature = 1.3;
    o.seed = 4;
    GenerateOptions full = o;
    full.cache = false;
    CHECK(generate(m, {80, 81, 82, 83}, o) == generate(m, {80, 81, 82, 83}, full));
  }
}

TEST_CASE("generate: sampling is reproducible by seed, top-k 1 is greedy, top-k limits the choices") {
  Transformer m(tiny("softmax"));
  GenerateOptions o;
  o.new_tokens = 20;
  o.temperature = 1.5;
  o.seed = 7;
  const auto a = generate(m, {65}, o), b = generate(m, {65}, o);
  CHECK(a == b);
  o.seed = 8;
  CHECK(generate(m, {65}, o) != a);
  o.top_k = 1;
  GenerateOptions greedy;
  greedy.new_tokens = 20;
  CHECK(generate(m, {65}, o) == generate(m, {65}, greedy));

  const std::vector<double> logits{0.0, 5.0, 4.5, -1.0, 4.9};
  GenerateOptions k2;
  k2.temperature = 1.0;
  k2.top_k = 2;
  Generator g(3);
  std::set<int64_t> seen;
  for (int i = 0; i < 300; ++i) seen.insert(choose_token(logits, k2, g));
  CHECK(seen == std::set<int64_t>{1, 4});
  GenerateOptions bad;
  bad.temperature = -1;
  CHECK_THROWS_AS(choose_token(logits, bad, g), InputError);
}

TEST_CASE("generate: the command continues a prompt from a checkpoint, bad requests exit 2") {
  TempDir d("generate");
  std::ofstream(d.path / "text.txt") << std::string(300, 'a') + "in the beginning god created the heaven and the earth\n";
  const std::string train =
      "train --run.out r --quiet --data.task text --data.path text.txt --data.seq_len 16 --model.d_model 16 "
      "--model.n_layers 1 --model.n_heads 2 --train.steps 3 --train.batch_size 2 --train.eval_batch_size 2";
  REQUIRE(run_mtalab(d.path, train).code == 0);
  const ProcResult g = run_mtalab(d.path, std::vector<std::string>{"generate", "--checkpoint", "r/checkpoint.h5",
                                                                   "--prompt", "in the", "--tokens", "10"});
  CAPTURE(g.err);
  CHECK(g.code == 0);
  CHECK(g.out.rfind("in the", 0) == 0);
  CHECK(g.out.size() == 6 + 10 + 1);
  const ProcResult again = run_mtalab(d.path, std::vector<std::string>{"generate", "--checkpoint", "r/checkpoint.h5",
                                                                       "--prompt", "in the", "--tokens", "10"});
  CHECK(again.out == g.out);  // greedy: the same text
  CHECK(run_mtalab(d.path, "generate --checkpoint r/checkpoint.h5 --prompt x --temperature -1").code == 2);
  CHECK(run_mtalab(d.path, "generate --checkpoint missing.h5 --prompt x").code == 2);
  CHECK(run_mtalab(d.path, "generate --checkpoint r/checkpoint.h5").err.find("--prompt") != std::string::npos);
}

TEST_CASE("generate and eval: refuse a diverged checkpoint naming the tensor, a subnormal temperature, a FIFO, a missing device") {
  TempDir d("generate_refusals");
  std::ofstream(d.path / "text.txt") << std::string(300, 'a') + "in the beginning god created the heaven and the earth\n";
  const std::string train =
      "train --quiet --data.task text --data.path text.txt --data.seq_len 16 --model.d_model 16 "
      "--model.n_layers 1 --model.n_heads 2 --train.steps 3 --train.batch_size 2 --train.eval_batch_size 2";
  REQUIRE(run_mtalab(d.path, train + " --run.out r").code == 0);
  CheckpointData ck = load_checkpoint((d.path / "r/checkpoint.h5").string());
  std::get<std::vector<float>>(ck.params.at("layers.0.attention.wk.weight").values)[5] = NAN;
  save_checkpoint((d.path / "r/nan.h5").string(), ck);
  for (const std::string cmd : {"generate --checkpoint r/nan.h5 --prompt x", "eval --checkpoint r/nan.h5"}) {
    CAPTURE(cmd);
    const ProcResult p = run_mtalab(d.path, cmd);
    CHECK(p.code == 2);
    CHECK(p.out.empty());  // no NUL bytes decoded, no "loss -nan"
    CHECK(p.err.find("parameter 'layers.0.attention.wk.weight' holds a non-finite value (at index 5)") != std::string::npos);
  }
  const ProcResult sub = run_mtalab(d.path, "generate --checkpoint r/checkpoint.h5 --prompt x --temperature 1e-310");
  CHECK(sub.code == 2);
  CHECK(sub.err.find("--temperature 1e-310; expected 0 (greedy) or at least 0.001") != std::string::npos);
  REQUIRE(::mkfifo((d.path / "fifo.h5").c_str(), 0600) == 0);
  for (const std::string cmd : {"generate --checkpoint fifo.h5 --prompt x", "report fifo.h5"}) {
    CAPTURE(cmd);
    const ProcResult p = run_mtalab(d.path, cmd);  // returns: HDF5 never opens the FIFO
    CHECK(p.code == 2);
    CHECK((p.err + p.out).find("fifo.h5: is not a regular file") != std::string::npos);
  }
  const ProcResult dev = run_mtalab(d.path, "generate --checkpoint r/checkpoint.h5 --prompt x --device cuda:99");
  CHECK(dev.code == 2);
  CHECK(dev.err.find("option --device=cuda:99: ") != std::string::npos);
  const ProcResult tr = run_mtalab(d.path, train + " --run.out r2 --train.device cuda:99");
  CHECK(tr.code == 2);
  CHECK(tr.err.find("option --train.device=cuda:99: ") != std::string::npos);
  CHECK_FALSE(std::filesystem::exists(d.path / "r2"));
  if (cuda_backend_available()) {  // a GPU-trained run's checkpoint decodes on the CPU
    REQUIRE(run_mtalab(d.path, train + " --run.out g --train.device cuda").code == 0);
    const ProcResult cpu = run_mtalab(d.path, "generate --checkpoint g/checkpoint.h5 --prompt in --tokens 5 --device cpu");
    CHECK(cpu.code == 0);
    CHECK(cpu.out.size() == 2 + 5 + 1);
  }
}

TEST_CASE("generate: a closed pipe ends it (mtalab generate ... | head)") {
  TempDir d("generate_pipe");
  std::ofstream(d.path / "text.txt") << std::string(300, 'a') + "in the beginning god created the heaven and the earth\n";
  REQUIRE(run_mtalab(d.path,
                     "train --run.out r --quiet --data.task text --data.path text.txt --data.seq_len 16 --model.d_model 16 "
                     "--model.n_layers 1 --model.n_heads 2 --train.steps 2 --train.batch_size 2 --train.eval_batch_size 2")
              .code == 0);
  // A million bytes would take minutes; head takes 20 and leaves. `timeout` is the backstop
  // (its 124 would show in PIPESTATUS), not a timing.
  std::ofstream(d.path / "pipe.sh") << "cd '" << d.path.string() << "' && timeout 120 '" << MTALAB_BINARY_DIR
                                    << "/mtalab' generate --checkpoint r/checkpoint.h5 --prompt in --tokens 1000000 | "
                                       "head -c 20 >/dev/null; exit ${PIPESTATUS[0]}\n";
  const int status = std::system(("bash '" + (d.path / "pipe.sh").string() + "'").c_str());
  CHECK(WIFEXITED(status));
  CHECK(WEXITSTATUS(status) == 0);
}
