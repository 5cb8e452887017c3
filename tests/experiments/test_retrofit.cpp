// A retrofit (the paper's §4.5): `--init-from` a trained softmax checkpoint into an MTA model.
// Every parameter both have is copied, MTA's own start at their initialisation; with its
// kernels at identity and neither group norm nor gate, MTA is softmax attention, so the new
// run's step-0 evaluation is the softmax run's last one, to float precision.
#include <doctest/doctest.h>

#include <cfloat>
#include <cmath>
#include <string>
#include <variant>

#include "experiments/run/run_log.h"
#include "process_util.h"

using namespace mtalab;
using namespace mtalab::testing;

namespace {

// find_block, 2 layers, 2 heads: a run of a few steps takes well under a second.
const std::string kModel =
    " --model.n_layers 2 --model.n_heads 2 --model.d_model 16 --task.total_len 24 --task.block_len 3"
    " --task.query_len 2 --task.n_test 16 --train.batch_size 4 --train.eval_batch_size 8 --quiet";

std::string attr(const RunLog& log, const std::string& name) {
  auto a = log.find_attr(name);
  REQUIRE(a.has_value());
  REQUIRE(std::holds_alternative<std::string>(*a));
  return std::get<std::string>(*a);
}

struct Trained {
  TempDir dir{"retrofit"};
  double eval_loss = 0;  // the softmax run's last evaluation, on the held-out set
  Trained() {
    const ProcResult r = run_mtalab(dir.path, "train --run.out soft --train.steps 6 --train.eval_every 6" + kModel);
    CAPTURE(r.err);
    REQUIRE(r.code == 0);
    RunLog log = RunLog::open_read(dir / "soft/run.h5");
    const auto steps = log.column("eval", "step");
    REQUIRE(steps.back() == 6);
    eval_loss = log.column("eval", "loss").back();
  }
};

// The loss at step 0 of a run started from the softmax checkpoint with `mta` options.
struct Retrofit {
  int code;
  std::string err, note, copied, kept;
  double step0_loss = NAN;
};
Retrofit retrofit(const Trained& t, const std::string& out, const std::string& mta) {
  const ProcResult r = run_mtalab(t.dir.path, "train --run.out " + out + " --train.steps 1 --init-from soft/checkpoint.h5" +
                                                  kModel + " --model.attention mta" + mta);
  Retrofit x{r.code, r.err};
  if (r.code != 0) return x;
  RunLog log = RunLog::open_read(t.dir / (out + "/run.h5"));
  const auto steps = log.column("eval", "step");
  REQUIRE(!steps.empty());
  CHECK(steps.front() == 0);  // a run from --init-from evaluates before its first step
  x.step0_loss = log.column("eval", "loss").front();
  x.note = attr(log, "init_from.not_softmax_at_init");
  x.copied = attr(log, "init_from.copied");
  x.kept = attr(log, "init_from.kept_init");
  return x;
}

// Float precision of a mean cross-entropy over a few hundred float32 terms computed in two
// summation orders (the fused and map kernels): a few dozen rounding units of the loss.
bool same_loss(double a, double b) { return std::fabs(a - b) <= 64 * FLT_EPSILON * std::fabs(b); }

}  // namespace

TEST_CASE("retrofit: every MTA setting that is softmax at identity starts at the softmax run's loss") {
  Trained t;
  int n = 0;
  const char* pads[] = {"both", "left", "right"};
  for (int kq_pre = 0; kq_pre < 2; ++kq_pre)
    for (int kq_post = 0; kq_post < 2; ++kq_post)
      for (int mix_pre = 0; mix_pre < 2; ++mix_pre)
        for (int mix_post = 0; mix_post < 2; ++mix_post) {
          auto b = [](int v) { return v ? std::string("true") : std::string("false"); };
          std::string o = " --mta.group_norm false --mta.gate false --mta.kq_pre " + b(kq_pre) + " --mta.kq_post " +
                          b(kq_post) + " --mta.head_mix_pre " + b(mix_pre) + " --mta.head_mix_post " + b(mix_post);
          if (kq_pre) o += " --mta.cq 2 --mta.ck " + std::string(n % 3 == 0 ? "3" : "4");
          if (kq_post) o += " --mta.cq_post 3 --mta.ck_post 5";
          if (kq_pre || kq_post) {
            const std::string pad = kq_pre && n % 3 != 0 ? (n % 2 ? "left" : "right") : pads[n % 3];
            o += " --mta.kq_layers all --mta.pad " + pad;
          }
          if (mix_pre || mix_post) o += " --mta.ch " + std::string(n % 2 ? "1" : "2");
          CAPTURE(o);
          const Retrofit r = retrofit(t, "m" + std::to_string(n++), o);
          CAPTURE(r.err);
          REQUIRE(r.code == 0);
          CHECK(r.note == "");
          CHECK(same_loss(r.step0_loss, t.eval_loss));
          // Copied: every softmax parameter; kept: exactly the kernels switched on.
          CHECK(r.copied.find("layers.1.attention.wq.weight") != std::string::npos);
          CHECK(r.copied.find("tok_embeddings.weight") != std::string::npos);
          CHECK(r.copied.find("kernel") == std::string::npos);
          CHECK((r.kept.find("layers.0.attention.kq_kernel,") != std::string::npos) == (bool)kq_pre);
          CHECK((r.kept.find("kq_kernel_post") != std::string::npos) == (bool)kq_post);
          CHECK((r.kept.find("head_kernel_pre") != std::string::npos) == (bool)mix_pre);
          CHECK((r.kept.find("head_kernel_post") != std::string::npos) == (bool)mix_post);
        }
  CHECK(n == 16);
  // talking heads is head mixing at identity: softmax too.
  const ProcResult th = run_mtalab(t.dir.path, "train --run.out th --train.steps 1 --init-from soft/checkpoint.h5" +
                                                   kModel + " --model.attention talking_heads");
  REQUIRE(th.code == 0);
  RunLog log = RunLog::open_read(t.dir / "th/run.h5");
  CHECK(same_loss(log.column("eval", "loss").front(), t.eval_loss));
}

TEST_CASE("retrofit: group norm and the gate are not the identity; the run says so and starts elsewhere") {
  Trained t;
  const std::string kernels = " --mta.kq_layers all --mta.cq 2 --mta.ck 3";
  struct Case {
    std::string opts, named;
  } cases[] = {{" --mta.gate false", "--mta.group_norm"},
               {" --mta.group_norm false", "--mta.gate"},
               {" --mta.group_norm false --mta.gate false --mta.init constant", "--mta.init=constant"}};
  int n = 0;
  for (const Case& c : cases) {
    CAPTURE(c.opts);
    const Retrofit r = retrofit(t, "g" + std::to_string(n++), kernels + c.opts);
    CAPTURE(r.err);
    REQUIRE(r.code == 0);
    CHECK(r.note.find(c.named) != std::string::npos);
    CHECK_FALSE(same_loss(r.step0_loss, t.eval_loss));
  }
  // Its own parameters (norm weight, gate) are listed among those that keep their init.
  const Retrofit d = retrofit(t, "gd", kernels);
  REQUIRE(d.code == 0);
  CHECK(d.kept.find("subln.weight") != std::string::npos);
  CHECK(d.kept.find("gate.bias") != std::string::npos);
  // The console says it too (without --quiet).
  std::string quiet_off = kModel.substr(0, kModel.find(" --quiet"));
  const ProcResult loud = run_mtalab(t.dir.path, "train --run.out loud --train.steps 1 --init-from soft/checkpoint.h5" +
                                                     quiet_off + " --model.attention mta" + kernels);
  REQUIRE(loud.code == 0);
  CHECK(loud.out.find("init-from soft/checkpoint.h5: copied") != std::string::npos);
  CHECK(loud.out.find("not softmax attention at initialisation (--mta.group_norm") != std::string::npos);
  CHECK(loud.out.find("eval  step 0 |") != std::string::npos);
}

TEST_CASE("retrofit: a shared parameter of another shape exits 2 naming it; an MTA checkpoint into softmax drops its kernels") {
  Trained t;
  std::string opts = kModel;
  opts.replace(opts.find("d_model 16"), 10, "d_model 32");
  const ProcResult r = run_mtalab(t.dir.path, "train --run.out w --train.steps 1 --init-from soft/checkpoint.h5" + opts +
                                                  " --model.attention mta --mta.kq_layers all");
  CAPTURE(r.err);
  CHECK(r.code == 2);
  CHECK(r.err.find("parameter 'tok_embeddings.weight' has shape [256, 16], the model expects [256, 32]") !=
        std::string::npos);
  CHECK_FALSE(std::filesystem::exists(t.dir / "w"));

  // MTA -> softmax: the kernels are not this model's; everything else is copied.
  REQUIRE(run_mtalab(t.dir.path, "train --run.out mta --train.steps 2 --model.attention mta --mta.kq_layers all" + kModel)
              .code == 0);
  const ProcResult back =
      run_mtalab(t.dir.path, "train --run.out back --train.steps 1 --init-from mta/checkpoint.h5" + kModel);
  CAPTURE(back.err);
  REQUIRE(back.code == 0);
  RunLog log = RunLog::open_read(t.dir / "back/run.h5");
  CHECK(attr(log, "init_from.unused").find("layers.0.attention.kq_kernel") != std::string::npos);
  CHECK(attr(log, "init_from.kept_init") == "");

  // The option a sweep file sets (--train.init_from) is the flag; both at once are refused.
  const ProcResult opt = run_mtalab(t.dir.path, "train --run.out opt --train.steps 1 --train.init_from mta/checkpoint.h5" +
                                                    kModel + " --model.attention mta --mta.kq_layers all");
  CAPTURE(opt.err);
  REQUIRE(opt.code == 0);
  RunLog ol = RunLog::open_read(t.dir / "opt/run.h5");
  CHECK(attr(ol, "init_from") == "mta/checkpoint.h5");
  CHECK(attr(ol, "init_from.kept_init") == "");
  CHECK(attr(ol, "train.init_from") == "mta/checkpoint.h5");
  CHECK(attr(log, "train.init_from") == "mta/checkpoint.h5");  // the flag is logged as the option
  const ProcResult both = run_mtalab(t.dir.path, "train --run.out both --train.steps 1 --init-from mta/checkpoint.h5"
                                                 " --train.init_from mta/checkpoint.h5" + kModel);
  CHECK(both.code == 2);
  CHECK(both.err.find("--init-from and --train.init_from cannot be combined") != std::string::npos);
  // --resume continues from the run's own checkpoint: the option stays as logged.
  const ProcResult res = run_mtalab(t.dir.path, "train --run.out opt --resume --train.steps 2 --train.init_from mta/checkpoint.h5" +
                                                    kModel + " --model.attention mta --mta.kq_layers all");
  CAPTURE(res.err);
  CHECK(res.code == 0);
}
