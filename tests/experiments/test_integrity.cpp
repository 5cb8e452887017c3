// Nothing a researcher runs is lost, mixed up or misreported: the `mtalab` binary as a user
// (and a hostile tester) meets it, one test per class of failure. Each runs real child
// processes on a tiny model and checks exit codes, the one-line messages, and that files
// which must not change did not. (MTALAB_TEST_BIN runs them against another build.)
#include <doctest/doctest.h>
#include <hdf5.h>

#include <algorithm>
#include <cmath>
#include <filesystem>
#include <fstream>

#include "experiments/run/checkpoint_file.h"
#include "experiments/run/run_log.h"
#include "process_util.h"
#include "test_util.h"

namespace fs = std::filesystem;
using namespace mtalab;
using namespace mtalab::testing;

namespace {

// A model and task small enough that a run of a few steps takes well under a second.
const std::string kModel =
    " --model.d_model 16 --model.n_layers 1 --model.n_heads 2 --task.total_len 24 --task.block_len 3"
    " --task.query_len 2 --task.n_test 8 --train.batch_size 4 --train.eval_batch_size 8";
const std::string kTiny = kModel + " --quiet";
// A run that goes on until it is stopped, printing every step.
const std::string kEndless = " --train.steps 100000 --train.log_every 1" + kModel;

struct Dir : TempDir {
  explicit Dir(const std::string& tag) : TempDir("integrity_" + tag) {}
  ProcResult run(const std::string& args, const SpawnOptions& o = {}) const { return run_mtalab(path, args, o); }
  ProcResult run(const std::vector<std::string>& args) const { return run_mtalab(path, args); }
  std::unique_ptr<Child> start(const std::string& args, const SpawnOptions& o = {}) const {
    return std::make_unique<Child>(path, split_words(args), o);
  }
};

auto printed(const std::string& needle) {
  return [needle](const std::string& out) { return out.find(needle) != std::string::npos; };
}

void check_refused(const ProcResult& r, const std::string& needle, int code = 2) {
  CAPTURE(r.err);
  CAPTURE(r.out);
  CHECK(r.code == code);
  CHECK(r.err.find(needle) != std::string::npos);
  CHECK(r.err.rfind("mtalab: error: ", 0) == 0);
  CHECK(std::count(r.err.begin(), r.err.end(), '\n') == 1);  // one line
}

void write_bytes(const std::string& path, const std::string& bytes) {
  std::ofstream(path, std::ios::binary | std::ios::trunc) << bytes;
}

int64_t checkpoint_step(const std::string& path) { return load_checkpoint(path).ints.at("step"); }

// The report's row for run `name`: its 14 columns (run attention n params steps tokens
// train_loss eval_loss metric value tok/s wall_s peak_MiB, then the status, which may hold
// blanks). Empty when there is no such row.
enum ReportCol { kAttention = 1, kN = 2, kSteps = 4, kTrain = 6, kEval = 7, kValue = 9, kStatus = 13 };
std::vector<std::string> report_row(const std::string& table, const std::string& name) {
  std::istringstream lines(table);
  for (std::string line; std::getline(lines, line);) {
    std::vector<std::string> cols = split_words(line);
    if (cols.size() < 14 || cols[0] != name) continue;
    std::string status = cols[13];
    for (size_t i = 14; i < cols.size(); ++i) status += " " + cols[i];
    cols.resize(13);
    cols.push_back(status);
    return cols;
  }
  return {};
}

bool is_number(const std::string& s) { return !s.empty() && s.find_first_not_of("0123456789.") == std::string::npos; }

// Stops a child with SIGINT once it has printed `after`; returns its result.
ProcResult interrupt_after(Child& c, const std::string& after) {
  REQUIRE(c.wait_for_output(printed(after)));
  c.signal(SIGINT);
  return c.wait();
}

// Edits one integer of a checkpoint's /state as an outside tool (h5py, a bug) would.
void edit_state_int(const std::string& path, const char* name, int64_t value) {
  hid_t f = H5Fopen(path.c_str(), H5F_ACC_RDWR, H5P_DEFAULT);
  REQUIRE(f >= 0);
  hid_t g = H5Gopen2(f, "state", H5P_DEFAULT);
  hid_t a = H5Aopen(g, name, H5P_DEFAULT);
  REQUIRE(a >= 0);
  REQUIRE(H5Awrite(a, H5T_NATIVE_INT64, &value) >= 0);
  H5Aclose(a);
  H5Gclose(g);
  H5Fclose(f);
}

}  // namespace

TEST_CASE("integrity: a live run's directory belongs to it: a second train, --overwrite or --resume exits 2") {
  Dir d("live");
  auto live = d.start("train --run.out r --train.eval_every 20" + kEndless);
  REQUIRE(live->wait_for_output(printed("step 45/")));
  const std::string holder = "run directory 'r' is in use by pid " + std::to_string(live->pid());
  check_refused(d.run("train --run.out r --train.steps 5" + kTiny), holder);
  check_refused(d.run("train --run.out r --overwrite --train.steps 5" + kTiny), holder);
  check_refused(d.run("train --run.out r --resume --quiet"), holder);
  // eval only reads (checkpoints are replaced atomically): it may look at a live run.
  CHECK(d.run("eval --checkpoint r/checkpoint.h5").code == 0);
  live->signal(SIGINT);
  const ProcResult end = live->wait();
  CHECK(end.code == 130);
  // The live run's results are whole: every row from 1, its checkpoint at the last one.
  RunLog log = RunLog::open_read(d / "r/run.h5");
  const auto steps = log.steps("train");
  REQUIRE(steps.size() >= 45);
  for (size_t i = 0; i < steps.size(); ++i) REQUIRE(steps[i] == (int64_t)i + 1);
  CHECK(checkpoint_step(d / "r/checkpoint.h5") == steps.back());
  CHECK(log.attr_string("status") == "interrupted");
}

TEST_CASE("integrity: --overwrite replaces the run whole, --resume refuses a checkpoint that is not its log's") {
  Dir d("overwrite");
  REQUIRE(d.run("train --run.out r --train.steps 4 --train.eval_every 2" + kTiny).code == 0);
  const std::string old_checkpoint = bytes_of(d / "r/checkpoint.h5");
  // A new run over it, killed before its first checkpoint: the old run's must be gone.
  auto fresh = d.start("train --run.out r --overwrite --train.eval_every 100000" + kEndless);
  REQUIRE(fresh->wait_for_output(printed("step 3/")));
  fresh->signal(SIGKILL);
  fresh->wait();
  CHECK_FALSE(fs::exists(d / "r/checkpoint.h5"));
  check_refused(d.run("train --run.out r --resume --quiet"), "no checkpoint at 'r/checkpoint.h5'");
  // The old checkpoint copied back in: another run's weights, never continued.
  write_bytes(d / "r/checkpoint.h5", old_checkpoint);
  const std::string log_before = bytes_of(d / "r/run.h5");
  check_refused(d.run("train --run.out r --resume --train.steps 10 --quiet"), "belongs to another run");
  CHECK(bytes_of(d / "r/run.h5") == log_before);
  CHECK(bytes_of(d / "r/checkpoint.h5") == old_checkpoint);
}

TEST_CASE("integrity: a checkpoint with no run.h5 beside it is existing data, kept without --overwrite") {
  Dir d("orphan");
  REQUIRE(d.run("train --run.out r --train.steps 2" + kTiny).code == 0);
  fs::remove(d / "r/run.h5");
  const std::string ck = bytes_of(d / "r/checkpoint.h5");
  check_refused(d.run("train --run.out r --train.steps 2" + kTiny), "with no run log beside it");
  CHECK(bytes_of(d / "r/checkpoint.h5") == ck);
  CHECK_FALSE(fs::exists(d / "r/run.h5"));
  CHECK(d.run("train --run.out r --overwrite --train.steps 2" + kTiny).code == 0);
}

TEST_CASE("integrity: --resume never rewrites a finished run's results, more steps extend it explicitly") {
  Dir d("finished");
  REQUIRE(d.run("train --run.out r --train.steps 4 --train.eval_every 2" + kTiny).code == 0);
  const std::string log_before = bytes_of(d / "r/run.h5"), ck_before = bytes_of(d / "r/checkpoint.h5");
  check_refused(d.run("train --run.out r --resume --quiet"), "finished at step 4; nothing to resume");
  check_refused(d.run("train --run.out r --resume --train.steps 3 --quiet"), "finished at step 4");
  CHECK(bytes_of(d / "r/run.h5") == log_before);
  CHECK(bytes_of(d / "r/checkpoint.h5") == ck_before);
  // Extending is a recorded change of train.steps, and /final describes the longer run.
  REQUIRE(d.run("train --run.out r --resume --train.steps 6 --quiet").code == 0);
  RunLog log = RunLog::open_read(d / "r/run.h5");
  CHECK(log.finals().at("steps") == 6);
  CHECK(log.finals().at("eval_loss") == log.column("eval", "loss").back());
  CHECK(log.finals().at("eval_loss") > 0);
  CHECK(log.steps("eval") == std::vector<int64_t>{2, 4, 6});
  CHECK(log.attr_string("train.steps") == "6");
  const auto changes = log.option_changes();
  REQUIRE(changes.size() == 1);
  CHECK(changes[0].step == 4);
  CHECK(changes[0].option == "train.steps");
  CHECK(changes[0].from == "4");
  CHECK(changes[0].to == "6");
}

TEST_CASE("integrity: a checkpoint at or past the requested steps is refused, one killed before /final finishes") {
  Dir d("past");
  auto c = d.start("train --run.out r --train.eval_every 5" + kEndless);
  REQUIRE(interrupt_after(*c, "step 12/").code == 130);
  const std::string log_before = bytes_of(d / "r/run.h5");
  check_refused(d.run("train --run.out r --resume --train.steps 3 --quiet"), "past --train.steps 3");
  CHECK(bytes_of(d / "r/run.h5") == log_before);

  // Killed while writing its final results (the checkpoint of the last step is on disk):
  // --resume finishes the run from what was measured, never from zeros. The log's writes:
  // the start, the evaluations at 3 and 6, then the final one.
  const ProcResult killed =
      d.run("train --run.out k --train.steps 6 --train.eval_every 3" + kTiny, {{"MTALAB_FAULT=kill@log_write#4"}});
  CHECK(killed.signal == SIGKILL);
  REQUIRE(checkpoint_step(d / "k/checkpoint.h5") == 6);
  REQUIRE(d.run("train --run.out k --resume --quiet").code == 0);
  RunLog log = RunLog::open_read(d / "k/run.h5");
  CHECK(log.attr_string("status") == "finished");
  CHECK(log.finals().at("steps") == 6);
  CHECK(log.finals().at("eval_loss") == log.column("eval", "loss").back());
  CHECK(log.finals().at("train_loss") == log.column("train", "loss").back());
}

TEST_CASE("integrity: every field of a checkpoint's state is checked before any file is touched") {
  Dir d("state");
  auto c = d.start("train --run.out r --train.eval_every 5" + kEndless);
  REQUIRE(interrupt_after(*c, "step 12/").code == 130);
  const std::string ck_path = d / "r/checkpoint.h5", log_before = bytes_of(d / "r/run.h5");
  const std::string ck_before = bytes_of(ck_path);
  const int64_t step = checkpoint_step(ck_path);
  for (auto [field, value] : std::vector<std::pair<const char*, int64_t>>{
           {"step", -5}, {"step", 1}, {"optimizer.steps", step + 1}, {"rng.counter", -1},
           {"data.next_example", 3}, {"data.seed", 12345}}) {
    CAPTURE(field);
    CAPTURE(value);
    edit_state_int(ck_path, field, value);
    check_refused(d.run("train --run.out r --resume --quiet"), "r/checkpoint.h5");
    CHECK(bytes_of(d / "r/run.h5") == log_before);
    write_bytes(ck_path, ck_before);
  }
  CHECK(d.run("train --run.out r --resume --train.steps " + std::to_string(step + 2) + " --quiet").code == 0);
}

TEST_CASE("integrity: --resume refuses changed model or data options naming both values, and records tunable ones") {
  Dir d("options");
  auto c = d.start("train --run.out r --train.eval_every 5" + kEndless);
  REQUIRE(interrupt_after(*c, "step 12/").code == 130);
  const std::string log_before = bytes_of(d / "r/run.h5");
  check_refused(d.run("train --run.out r --resume --model.d_model 32 --quiet"),
                "option --model.d_model is 32, but the run in r/run.h5 was started with 16; it defines the model");
  check_refused(d.run("train --run.out r --resume --task.block_len 4 --quiet"),
                "option --task.block_len is 4, but the run in r/run.h5 was started with 3; it defines the data");
  check_refused(d.run("train --run.out r --resume --model.attention mta --quiet"), "--model.attention is mta");
  CHECK(bytes_of(d / "r/run.h5") == log_before);
  const int64_t step = checkpoint_step(d / "r/checkpoint.h5");
  REQUIRE(d.run("train --run.out r --resume --train.lr 0.002 --train.steps " + std::to_string(step + 3) + " --quiet")
              .code == 0);
  RunLog log = RunLog::open_read(d / "r/run.h5");
  CHECK(log.attr_string("train.lr") == "0.002");
  const auto changes = log.option_changes();
  REQUIRE(changes.size() == 2);
  CHECK(changes[0].option == "train.lr");
  CHECK(changes[0].from == "0.001");
  CHECK(changes[0].to == "0.002");
  CHECK(changes[0].step == step);
  CHECK(changes[1].option == "train.steps");
  CHECK(log.column("train", "lr").back() == 0.002);
}

TEST_CASE("integrity: models too big for memory are refused before allocation, failed allocations are one line") {
  Dir d("memory");
#if !defined(__SANITIZE_ADDRESS__)  // AddressSanitizer's shadow memory does not fit in a capped address space
  SpawnOptions capped;
  capped.address_space = 4L << 30;  // whatever the machine has, the run sees at most 4 GiB
  check_refused(d.run("train --run.out big --model.d_model 8192 --model.n_layers 64", capped),
                "the model and batch need about");
  CHECK_FALSE(fs::exists(d / "big"));
  // An allocation the estimate does not cover (a huge test set) fails cleanly, not by abort.
  SpawnOptions tight;
  tight.address_space = 1L << 30;
  check_refused(d.run("train --run.out oom --task.n_test 16000000 --train.steps 1", tight), "out of memory", 5);
  CHECK_FALSE(fs::exists(d / "oom"));
#endif
  // A device file that fails on read is bad data, reported by the operating system's reason.
  check_refused(d.run("train --run.out dev --data.task text --data.path /proc/self/mem"),
                "data file '/proc/self/mem' cannot be read: Input/output error");
  check_refused(d.run("train --run.out dev --data.task text --data.path /dev/zero"), "is not a regular file");
  CHECK_FALSE(fs::exists(d / "dev"));
}

TEST_CASE("integrity: a signal during startup is honoured, a second one exits promptly after a complete checkpoint") {
  Dir d("signals");
  const ProcResult early = d.run("train --run.out r" + kEndless, {{"MTALAB_FAULT=sigint@startup"}});
  CAPTURE(early.err);
  CHECK(early.code == 130);
  CHECK(early.err.find("mtalab: error: stopped by signal 2 during startup (while setting up the model); nothing "
                       "was written") != std::string::npos);
  CHECK_FALSE(fs::exists(d / "r"));

  // The first checkpoint's write pauses half-way: both signals arrive during it.
  auto c = d.start("train --run.out q --train.eval_every 5" + kEndless, {{"MTALAB_FAULT=pause@ckpt_write#1"}});
  const auto start = std::chrono::steady_clock::now();
  REQUIRE(c->wait_for_output(printed("eval  step 5")));
  for (int i = 0; i < 400 && !fs::exists(d / "q/checkpoint.h5.tmp"); ++i)
    std::this_thread::sleep_for(std::chrono::milliseconds(1));
  c->signal(SIGINT);
  std::this_thread::sleep_for(std::chrono::milliseconds(20));
  c->signal(SIGINT);
  const ProcResult r = c->wait();
  CAPTURE(r.err);
  CHECK(r.code == 130);
  CHECK(r.err.find("second signal: exiting now") != std::string::npos);
  CHECK(std::chrono::steady_clock::now() - start < std::chrono::seconds(20));
  CHECK(checkpoint_step(d / "q/checkpoint.h5") == 5);  // complete, though exited "at once"
  CHECK(RunLog::open_read(d / "q/run.h5").steps("train").back() >= 5);
}

TEST_CASE("integrity: output into a closed pipe does not kill the run") {
  Dir d("pipe");
  // head exits after the first line; the run's later lines meet a closed pipe.
  std::ofstream(d / "pipe.sh") << "cd '" << d.path.string() << "' && OMP_NUM_THREADS=1 '" << mtalab_bin()
                               << "' train --run.out r --train.steps 40 --train.log_every 1" << kModel
                               << " 2>err | head -n 1 >/dev/null; echo ${PIPESTATUS[0]} >code\n";
  REQUIRE(std::system(("bash '" + (d / "pipe.sh") + "'").c_str()) == 0);
  CHECK(bytes_of(d / "code") == "0\n");
  RunLog log = RunLog::open_read(d / "r/run.h5");
  CHECK(log.attr_string("status") == "finished");
  CHECK(log.finals().at("steps") == 40);
  CHECK(checkpoint_step(d / "r/checkpoint.h5") == 40);
}

TEST_CASE("integrity: a run stopped before its first evaluation says so, and is not reported as done") {
  Dir d("report_stop");
  auto c = d.start("train --run.out r --train.eval_every 1000" + kEndless);
  const ProcResult r = interrupt_after(*c, "step 3/");
  CHECK(r.code == 130);
  CAPTURE(r.out);
  CHECK(r.out.find("done:") == std::string::npos);
  CHECK(r.out.find("eval loss 0.0000") == std::string::npos);
  CHECK(r.out.find("no evaluation yet (the first is due at step 1000)") != std::string::npos);
  CHECK(r.out.find("(not finished)") != std::string::npos);
  const ProcResult rep = d.run("report r/run.h5");
  CHECK(rep.code == 0);
  const auto row = report_row(rep.out, "r");
  CAPTURE(rep.out);
  REQUIRE(row.size() == 14);
  CHECK(row[kAttention] == "softmax");
  CHECK(is_number(row[kSteps]));
  CHECK(is_number(row[kTrain]));  // the last training loss
  CHECK(row[kEval] == "-");       // eval loss: never measured
  CHECK(row[kValue] == "-");      // the metric's value: never measured
  CHECK(row[kStatus] == "interrupted at " + row[kSteps]);
}

TEST_CASE("integrity: eval checks the checkpoint against its options and refuses non-finite parameters") {
  Dir d("eval");
  REQUIRE(d.run("train --run.out m --model.attention mta --mta.kq_layers all --train.steps 2" + kTiny).code == 0);
  check_refused(d.run("eval --checkpoint m/checkpoint.h5 --model.attention softmax"),
                "option --model.attention is softmax, but the checkpoint's model has mta");
  check_refused(d.run("eval --checkpoint m/checkpoint.h5 --model.d_model 32"),
                "option --model.d_model is 32, but the checkpoint's model has 16");
  check_refused(d.run("eval --checkpoint m/checkpoint.h5 --mta.cq 3"), "option --mta.cq is 3");
  CHECK(d.run("eval --checkpoint m/checkpoint.h5").code == 0);
  CheckpointData ck = load_checkpoint(d / "m/checkpoint.h5");
  std::get<std::vector<float>>(ck.params.at("layers.0.attention.wq.weight").values)[3] = std::nanf("");
  fs::create_directories(d / "nan");
  save_checkpoint(d / "nan/checkpoint.h5", ck);
  check_refused(d.run("eval --checkpoint nan/checkpoint.h5"),
                "parameter 'layers.0.attention.wq.weight' holds a non-finite value (at index 3)");
}

TEST_CASE("integrity: report shows one row per input with its status, and one bad file never hides the rest") {
  Dir d("report");
  REQUIRE(d.run("train --run.out done --train.steps 3" + kTiny).code == 0);
  auto stopped = d.start("train --run.out stopped --train.eval_every 1000" + kEndless);
  REQUIRE(interrupt_after(*stopped, "step 3/").code == 130);
  auto killed = d.start("train --run.out killed --train.eval_every 1000" + kEndless);
  REQUIRE(killed->wait_for_output(printed("step 4/")));
  killed->signal(SIGKILL);
  killed->wait();
  auto live = d.start("train --run.out live" + kEndless);
  REQUIRE(live->wait_for_output(printed("step 4/")));
  write_bytes(d / "junk.h5", "not a log");
  const ProcResult r = d.run("report done/run.h5 junk.h5 stopped killed/run.h5 live/run.h5 missing/run.h5");
  CAPTURE(r.out);
  CHECK(r.code == 2);
  CHECK(r.err == "mtalab: error: 2 of 6 inputs could not be read (their rows say why)\n");
  CHECK(std::count(r.out.begin(), r.out.end(), '\n') == 7);  // a header and one row each
  auto status = [&](const std::string& name) {
    const auto row = report_row(r.out, name);
    return row.empty() ? "<no row>" : row[kStatus];
  };
  CHECK(report_row(r.out, "done").at(kSteps) == "3");
  CHECK(status("done") == "finished");
  CHECK(status("junk.h5").rfind("unreadable: junk.h5: not an HDF5 file", 0) == 0);
  CHECK(status("stopped") == "interrupted at " + report_row(r.out, "stopped").at(kSteps));
  CHECK(status("killed") == "interrupted at " + report_row(r.out, "killed").at(kSteps));
  CHECK(status("live") == "running");
  CHECK(status("missing").rfind("unreadable: missing/run.h5: file does not exist", 0) == 0);
}

TEST_CASE("integrity: a live run's log opens with HDF5's default file locking (h5py's), while it trains") {
  Dir d("live_read");
  auto live = d.start("train --run.out r --train.eval_every 10" + kEndless);
  REQUIRE(live->wait_for_output(printed("step 25/")));
  const std::string path = d / "r/run.h5";
  // What h5py.File(path, "r") does: a plain H5Fopen, file locking on.
  hid_t f = H5Fopen(path.c_str(), H5F_ACC_RDONLY, H5P_DEFAULT);
  CHECK(f >= 0);
  if (f >= 0) {
    hid_t ds = H5Dopen2(f, "/train/loss", H5P_DEFAULT);
    CHECK(ds >= 0);
    hid_t space = H5Dget_space(ds);
    CHECK(H5Sget_simple_extent_npoints(space) >= 20);
    H5Sclose(space);
    H5Dclose(ds);
    H5Fclose(f);
  }
  // The README's recipe itself, where h5py is installed (Debian's python3-h5py).
  if (std::system("/usr/bin/python3 -c 'import h5py' 2>/dev/null") == 0) {
    const std::string py = "/usr/bin/python3 -c 'import h5py; f = h5py.File(\"" + path +
                           "\", \"r\"); print(len(f[\"train/loss\"][:]), dict(f.attrs)[\"status\"])' > '" +
                           (d / "py.out") + "' 2>&1";
    CHECK(std::system(py.c_str()) == 0);
    CHECK(bytes_of(d / "py.out").find(" running") != std::string::npos);
  }
  const ProcResult rep = d.run("report r");
  CHECK(rep.code == 0);
  CHECK(rep.out.find(" running\n") != std::string::npos);
}

TEST_CASE("integrity: the command line refuses stray words, a directory as --config and empty paths, reads a BOM") {
  Dir d("cli");
  REQUIRE(d.run("train --run.out r --train.steps 2" + kTiny).code == 0);
  const std::string log_before = bytes_of(d / "r/run.h5");
  check_refused(d.run("train --run.out r --overwrite no --train.steps 2" + kTiny), "unexpected argument 'no'");
  CHECK(bytes_of(d / "r/run.h5") == log_before);
  check_refused(d.run("train --config . --run.out c" + kTiny), "config file '.' is a directory");
  check_refused(d.run({"train", "--run.out", "", "--train.steps", "1", "--quiet"}), "option --run.out is empty");
  check_refused(d.run({"train", "--run.out", "e", "--init-from", "", "--quiet"}), "option --init-from is empty");
  check_refused(d.run({"eval", "--checkpoint", ""}), "option --checkpoint is empty");
  std::ofstream(d / "bom.ini", std::ios::binary) << "\xEF\xBB\xBF[train]\nsteps = 3\n";
  REQUIRE(d.run("train --config bom.ini --run.out b" + kTiny).code == 0);
  CHECK(RunLog::open_read(d / "b/run.h5").steps("train").back() == 3);
  std::ofstream(d / "bad.ini", std::ios::binary) << "[train]\n\x01steps = 3\n";
  check_refused(d.run("train --config bad.ini --run.out x" + kTiny), "\\x01");
  CHECK_FALSE(fs::exists(d / "c"));
  CHECK_FALSE(fs::exists(d / "e"));
  CHECK_FALSE(fs::exists(d / "x"));
}

TEST_CASE("integrity: options that would have no effect are refused, --help names the kq-conv layers") {
  Dir d("no_effect");
  std::string text;
  for (int i = 0; i < 100; ++i) text += "some text to train on. ";
  std::ofstream(d / "t.txt") << text;
  const std::string small = " --model.d_model 16 --model.n_layers 1 --train.steps 1 --quiet";
  check_refused(d.run("train --data.task text --data.path t.txt --data.seq_len 16 --task.block_len 4 --run.out a" + small),
                "option --task.block_len has no effect because --data.task is text");
  check_refused(d.run("train --data.seq_len 16 --run.out a" + small),
                "option --data.seq_len has no effect because --data.task is find_block");
  check_refused(d.run("train --train.momentum 0.9 --run.out a" + small),
                "option --train.momentum has no effect because --train.optimizer is adamw");
  check_refused(d.run("train --model.attention mta --mta.kq_pre false --mta.cq 3 --run.out a" + small),
                "option --mta.cq has no effect because --mta.kq_pre is false");
  check_refused(d.run("train --model.attention mta --model.n_layers 2 --run.out a --train.steps 1 --quiet"),
                "option --mta.kq_layers=every:4+2 (the default) selects no layer of this 2-layer model");
  CHECK_FALSE(fs::exists(d / "a"));
  const ProcResult help = d.run("train --help --model.n_layers 12");
  CHECK(help.code == 0);
  CHECK(help.out.find("For this 12-layer model, --mta.kq_layers every:4+2 puts MTA's key-query convolution in "
                      "0-based layers: 2, 6, 10") != std::string::npos);
  CHECK(help.out.find("4 I/O failure") != std::string::npos);
}
