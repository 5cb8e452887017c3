#include "experiments/commands/cli.h"

#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <boost/program_options.hpp>
#include <csignal>
#include <cstring>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <new>
#include <set>
#include <sstream>

#include "autograd/errors.h"
#include "experiments/run/atomic_file.h"
#include "experiments/run/checkpoint_file.h"
#include "experiments/run/fault_injection.h"
#include "experiments/train/config.h"
#include "experiments/commands/generate.h"
#include "experiments/train/memory_check.h"
#include "experiments/commands/report.h"
#include "experiments/run/resume.h"
#include "experiments/run/run_log.h"
#include "experiments/run/stop_signal.h"
#include "experiments/commands/sweep.h"
#include "experiments/commands/sweep_slurm.h"
#include "experiments/dist/communicator.h"
#include "experiments/tasks/train_data.h"
#include "experiments/train/trainer.h"
#include "layers/attention.h"

namespace po = boost::program_options;

namespace mtalab {
namespace {

const char* kExitCodes =
    "exit codes: 0 done, 1 internal error, 2 bad input (nothing written), 3 training diverged,\n"
    "  4 I/O failure (a file could not be written; the message says what the files on disk hold),\n"
    "  5 out of memory, 6 another rank died or did not answer within --train.dist_timeout (mpirun/srun),\n"
    "  130 stopped by a signal\n";

const char* kUsageFooter =
    "`mtalab <command> --help` lists a command's options. Options come from the command line and\n"
    "from INI files (--config FILE; [section] key=value becomes --section.key); the command line wins.\n";

// Options of one subcommand: the declared specs (train, attention variants) plus flags.
struct CommandLine {
  OptionValues train;
  std::map<std::string, OptionValues> variants;  // every registered variant's options
  std::map<std::string, std::string> given;      // name → value as given (file or command line)
  po::variables_map flags;
};

po::options_description declared_options() {
  po::options_description d("model, data and training options");
  for (const auto& s : train_option_specs())
    d.add_options()(s.name.c_str(), po::value<std::string>()->value_name("<" + s.type_name() + ">"),
                    (s.help + " (default " + (s.default_value.empty() ? "''" : s.default_value) + ")").c_str());
  for (const auto* v : AttentionRegistry::list())
    for (const auto& s : v->options) {
      const std::string n = v->name + "." + s.name;
      d.add_options()(n.c_str(), po::value<std::string>()->value_name("<" + s.type_name() + ">"),
                      (s.help + " (default " + s.default_value + ")").c_str());
    }
  return d;
}

int style() {
  // No prefix guessing: --train.step must not silently mean --train.steps.
  return po::command_line_style::default_style & ~po::command_line_style::allow_guessing;
}

// Control characters, invalid UTF-8 and the invisible byte-order mark shown as \xNN, so a
// message about a file's contents shows what is really there.
std::string printable(const std::string& s) {
  std::string out;
  for (size_t i = 0; i < s.size(); ++i) {
    const auto c = (unsigned char)s[i];
    const bool bom = s.compare(i, 3, "\xEF\xBB\xBF") == 0;
    if (c < 0x20 || c == 0x7f || bom || (c >= 0x80 && c < 0xc0) || c >= 0xf8) {
      const size_t n = bom ? 3 : 1;
      for (size_t k = 0; k < n; ++k) {
        char buf[8];
        std::snprintf(buf, sizeof buf, "\\x%02X", (unsigned char)s[i + k]);
        out += buf;
      }
      i += n - 1;
    } else {
      out += (char)c;
    }
  }
  return out;
}

// The text of an INI file, a UTF-8 byte-order mark (as some editors write) dropped.
std::string read_config(const std::string& path) {
  std::error_code ec;
  if (path.empty()) throw InputError("option --config is empty; expected an INI file");
  if (std::filesystem::is_directory(path, ec))
    throw InputError("config file '" + path + "' is a directory; expected an INI file");
  std::ifstream f(path, std::ios::binary);
  if (!f) throw InputError("config file '" + path + "' cannot be opened (expected a readable INI file)");
  std::stringstream ss;
  ss << f.rdbuf();
  std::string text = ss.str();
  if (text.compare(0, 3, "\xEF\xBB\xBF") == 0) text.erase(0, 3);
  return text;
}

// Words that are not options: `--overwrite no` must not mean --overwrite.
void refuse_positional(const po::parsed_options& parsed) {
  for (const auto& o : parsed.options)
    if (o.position_key >= 0) {
      const std::string word = o.original_tokens.empty() ? "" : o.original_tokens.front();
      throw InputError("unexpected argument '" + printable(word) +
                       "' (expected options as --name value; flags such as --overwrite and --resume take no value)");
    }
}

// Parses argv (after the subcommand) and an optional --config file; the command line
// takes precedence. `base` holds values to start from (a resumed run's stored options).
//
// `check_variant` off: a first look for the flags only (--help, --resume, --checkpoint),
// before the options the run was made with are known — `--mta.cq 3` on a resumed MTA run
// must not be judged against the default variant.
CommandLine parse(int argc, char** argv, const po::options_description& flags,
                  const std::map<std::string, std::string>& base = {}, bool check_variant = true) {
  po::options_description all;
  po::options_description declared = declared_options();
  all.add(flags).add(declared);
  CommandLine cl;
  po::variables_map vm;
  const po::parsed_options parsed = po::command_line_parser(argc, argv).options(all).style(style()).run();
  refuse_positional(parsed);
  po::store(parsed, vm);
  if (vm.count("config")) {
    const std::string path = vm["config"].as<std::string>();
    std::istringstream text(read_config(path));
    try {
      po::store(po::parse_config_file(text, declared, false), vm);  // stored second: the command line wins
    } catch (const po::error& e) {
      throw InputError("config file '" + path + "': " + printable(e.what()));
    }
  }
  po::notify(vm);
  cl.flags = vm;
  cl.train = OptionValues(train_option_specs(), "");
  for (const auto* v : AttentionRegistry::list()) cl.variants.emplace(v->name, OptionValues(v->options, v->name));
  auto assign = [&](const std::string& name, const std::string& value) {
    const auto dot = name.find('.');
    const std::string head = name.substr(0, dot);
    auto it = cl.variants.find(head);
    if (it != cl.variants.end())
      it->second.set(name.substr(dot + 1), value);
    else
      cl.train.set(name, value);
  };
  for (auto& [k, v] : base) assign(k, v);
  for (const auto& opt : declared.options()) {
    const std::string& n = opt->long_name();
    if (vm.count(n)) {
      assign(n, vm[n].as<std::string>());
      cl.given[n] = vm[n].as<std::string>();
    }
  }
  const std::string chosen = cl.train.get_string("model.attention");
  AttentionRegistry::get(chosen);
  if (!check_variant) return cl;
  for (auto& [n, v] : cl.given) {
    const std::string head = n.substr(0, n.find('.'));
    if (cl.variants.count(head) && head != chosen)
      throw InputError("option --" + n + " belongs to attention variant '" + head + "', but --model.attention is '" +
                       chosen + "'");
  }
  return cl;
}

std::map<std::string, std::string> resolved(const CommandLine& cl) {
  std::map<std::string, std::string> r = cl.train.resolved();
  const std::string chosen = cl.train.get_string("model.attention");
  for (auto& [k, v] : cl.variants.at(chosen).resolved()) r[chosen + "." + k] = v;
  return r;
}

std::string flag_value(const CommandLine& cl, const char* flag) {
  const std::string v = cl.flags[flag].as<std::string>();
  if (v.empty()) throw InputError(std::string("option --") + flag + " is empty; expected a checkpoint file");
  return v;
}

// What the variants' options do to the model these options describe (e.g. which layers
// MTA's key-query convolution lands in), one line per variant that says.
std::string variant_notes(const CommandLine& cl) {
  std::string notes;
  for (const AttentionVariant* v : AttentionRegistry::list()) {
    if (!v->describe_model) continue;
    try {
      ModelConfig m;
      m.n_layers = cl.train.get_int("model.n_layers");
      m.n_heads = cl.train.get_int("model.n_heads");
      m.d_model = cl.train.get_int("model.d_model");
      const std::string line = v->describe_model(model_attention_config(m), cl.variants.at(v->name));
      if (!line.empty()) notes += line + "\n";
    } catch (const std::exception&) {
      // bad options: the run itself reports them
    }
  }
  return notes;
}

void print_help(const char* cmd, const po::options_description& flags, const std::string& note = "") {
  std::cout << "usage: mtalab " << cmd << " [options]\n\n" << flags << "\n" << declared_options() << "\n" << note
            << kExitCodes;
}

// MPI_Finalize when cmd_train leaves, unless an exchange failed (dist/communicator.h).
struct DistSession {
  DistSession() { dist::init_from_environment(); }
  ~DistSession() { dist::finalize(/*stopped_by_signal=*/stop_signal() != 0); }
};

int cmd_train(int argc, char** argv) {
  install_stop_handlers();  // first: a signal during startup is honoured, not dropped
  DistSession ranks;        // one rank of several when mpirun/srun started this process
  po::options_description flags("train");
  flags.add_options()("help,h", "show this help")("config", po::value<std::string>(), "INI file of options")(
      "overwrite", "replace the run in run.out (its log and checkpoints)")(
      "resume", "continue the run in run.out from its checkpoint (tunable options such as --train.lr and "
                "--train.steps may change; the change is recorded in the log)")(
      "init-from", po::value<std::string>(), "load parameters (only) from this checkpoint")(
      "no-shuffle", "visit training windows in file order (same as --data.shuffle false)")(
      "quiet", "no progress lines");
  // A resumed run starts from the options it was started with.
  std::map<std::string, std::string> base;
  {
    CommandLine pre = parse(argc, argv, flags, {}, /*check_variant=*/false);
    if (pre.flags.count("help")) {
      print_help("train", flags, variant_notes(pre));
      return 0;
    }
    if (pre.flags.count("resume")) {
      const std::string log = run_log_path(pre.train.get_string("run.out"));
      if (!std::filesystem::exists(log))
        throw InputError("--resume: no run log at '" + log + "' (expected the run.out of an earlier run)");
      base = read_logged_run(log).options;
    }
  }
  CommandLine cl = parse(argc, argv, flags, base);
  if (cl.flags.count("no-shuffle")) {
    if (cl.given.count("data.shuffle") && cl.train.get_bool("data.shuffle"))
      throw InputError("--no-shuffle contradicts --data.shuffle " + cl.given["data.shuffle"]);
    cl.train.set("data.shuffle", "false");
    cl.given["data.shuffle"] = "false";
  }
  if (cl.flags.count("resume") && cl.flags.count("init-from"))
    throw InputError("--resume and --init-from cannot be combined (resume restores everything from the run's checkpoint)");
  if (cl.flags.count("resume") && cl.flags.count("overwrite"))
    throw InputError("--resume and --overwrite cannot be combined (one continues the run log, the other replaces it)");
  RunRequest req;
  const std::string chosen = cl.train.get_string("model.attention");
  req.config = make_train_config(cl.train, cl.variants.at(chosen));
  // One GPU per rank: with several ranks on a machine, a plain "cuda" means the local rank's
  // device ("cuda:N" is taken as given).
  if (dist::size() > 1 && !req.config.device.is_cpu() && cl.train.get_string("train.device") == "cuda")
    req.config.device.index = dist::local_rank();
  check_device_exists(req.config.device, "--train.device");
  req.options = resolved(cl);
  req.overwrite = cl.flags.count("overwrite") > 0;
  req.resume = cl.flags.count("resume") > 0;
  req.quiet = cl.flags.count("quiet") > 0;
  if (cl.flags.count("init-from") && cl.given.count("train.init_from"))
    throw InputError("--init-from and --train.init_from cannot be combined (they are the same option)");
  if (cl.flags.count("init-from")) req.init_from = req.options["train.init_from"] = flag_value(cl, "init-from");
  else if (!req.resume) req.init_from = cl.train.get_string("train.init_from");  // a resumed run has its checkpoint
  std::set<std::string> given;
  for (auto& [k, v] : cl.given) given.insert(k);
  check_options_take_effect(cl.train, cl.variants.at(chosen), given);
  RunSummary s = train(req);
  if (dist::rank() == 0) std::printf("%s\n", summary_line(s).c_str());
  return s.interrupted ? 130 : 0;
}

// The options a checkpoint's model was trained with: its own (saved since run identities),
// else the run.h5 beside it — if that log is the same run's.
std::map<std::string, std::string> checkpoint_model_options(const CheckpointData& ck, const std::string& path,
                                                            std::string* source) {
  std::map<std::string, std::string> own = checkpoint_options(ck);
  if (!own.empty()) {
    *source = "the checkpoint";
    return own;
  }
  const auto log = std::filesystem::path(path).parent_path() / "run.h5";
  std::error_code ec;
  if (!std::filesystem::exists(log, ec)) {
    *source = "the defaults";
    return {};
  }
  LoggedRun run = read_logged_run(log.string());
  const std::string id = ck.strings.count("run_id") ? ck.strings.at("run_id") : "";
  if (run.run_id != id)
    throw InputError("checkpoint '" + path + "' is not from the run logged in '" + log.string() +
                     "' beside it (run ids differ); expected that run's checkpoint, or the model options given explicitly");
  *source = log.string();
  return run.options;
}

int cmd_eval(int argc, char** argv) {
  po::options_description flags("eval");
  flags.add_options()("help,h", "show this help")("config", po::value<std::string>(), "INI file of options")(
      "checkpoint", po::value<std::string>(),
      "checkpoint to evaluate (its model options are read from it, or from the run.h5 beside it)");
  CommandLine pre = parse(argc, argv, flags, {}, /*check_variant=*/false);
  if (pre.flags.count("help")) {
    print_help("eval", flags);
    return 0;
  }
  if (!pre.flags.count("checkpoint")) throw InputError("eval: --checkpoint FILE is required");
  const std::string path = flag_value(pre, "checkpoint");
  CheckpointData ck = load_checkpoint(path);
  std::string source;
  const std::map<std::string, std::string> base = checkpoint_model_options(ck, path, &source);
  CommandLine cl = parse(argc, argv, flags, base);
  if (!base.empty()) check_model_options(base, resolved(cl), source);
  const std::string chosen = cl.train.get_string("model.attention");
  if (ck.strings.count("model.attention") && ck.strings.at("model.attention") != chosen)
    throw InputError("checkpoint '" + path + "' is of attention variant '" + ck.strings.at("model.attention") +
                     "', but --model.attention is '" + chosen + "'");
  TrainConfig c = make_train_config(cl.train, cl.variants.at(chosen));
  check_device_exists(c.device, "--train.device");
  auto data = make_train_data(c);
  Transformer model(c.model);
  model.to(c.device);  // --train.device picks where; a checkpoint loads onto either device
  load_parameters(ck, model.named_parameters(), path);
  model.train(false);
  EvalResult r = data->evaluate(model);
  std::printf("%s on %s: loss %.4f | %s %.4f\n", path.c_str(), c.task == "text" ? c.data_path.c_str() : c.task.c_str(),
              r.loss, data->metric_name().c_str(), r.metric);
  return 0;
}

int cmd_generate(int argc, char** argv) {
  po::options_description flags("generate");
  flags.add_options()("help,h", "show this help")(
      "checkpoint", po::value<std::string>(), "checkpoint to generate with (its model options are read from it)")(
      "prompt", po::value<std::string>(), "the text to continue (bytes)")(
      "prompt-file", po::value<std::string>(), "read the prompt from this file instead")(
      "tokens", po::value<int64_t>()->default_value(200), "how many bytes to generate")(
      "temperature", po::value<double>()->default_value(0.0), "0: greedy; above 0: sample at this temperature")(
      "top-k", po::value<int64_t>()->default_value(0), "sample from the k most likely bytes only (0: all)")(
      "seed", po::value<uint64_t>()->default_value(0), "seed of the sampling")(
      "device", po::value<std::string>(), "cpu, cuda or cuda:N (default: the device the checkpoint's run trained on)")(
      "no-cache", "recompute the whole context for every token (the O(T^2) reference) instead of decoding "
                  "incrementally from a key/value cache");
  po::variables_map vm;
  const po::parsed_options parsed = po::command_line_parser(argc, argv).options(flags).style(style()).run();
  refuse_positional(parsed);
  po::store(parsed, vm);
  po::notify(vm);
  if (vm.count("help")) {
    std::cout << "usage: mtalab generate --checkpoint FILE --prompt TEXT [--tokens N] [--temperature T] [--top-k K] [--no-cache]\n\n"
              << flags;
    return 0;
  }
  if (!vm.count("checkpoint")) throw InputError("generate: --checkpoint FILE is required");
  if (vm.count("prompt") == vm.count("prompt-file"))
    throw InputError("generate: give the text to continue with --prompt TEXT or --prompt-file FILE (one of them)");
  std::string prompt;
  if (vm.count("prompt")) {
    prompt = vm["prompt"].as<std::string>();
  } else {
    const std::string file = vm["prompt-file"].as<std::string>();
    std::ifstream f(file, std::ios::binary);
    if (!f) throw InputError("--prompt-file '" + file + "' cannot be opened");
    std::stringstream ss;
    ss << f.rdbuf();
    prompt = ss.str();
  }
  if (prompt.empty()) throw InputError("generate: the prompt is empty; expected at least one byte");
  GenerateOptions o;
  o.new_tokens = vm["tokens"].as<int64_t>();
  o.temperature = vm["temperature"].as<double>();
  o.top_k = vm["top-k"].as<int64_t>();
  o.seed = vm["seed"].as<uint64_t>();
  o.cache = !vm.count("no-cache");
  if (o.new_tokens < 0) throw InputError("--tokens " + std::to_string(o.new_tokens) + "; expected 0 or more");
  check_sampling(o);
  const std::string path = vm["checkpoint"].as<std::string>();
  if (path.empty()) throw InputError("option --checkpoint is empty; expected a checkpoint file");
  CheckpointData ck = load_checkpoint(path);
  std::string source;
  std::map<std::string, std::string> base = checkpoint_model_options(ck, path, &source);
  if (vm.count("device")) base["train.device"] = vm["device"].as<std::string>();
  char* none[] = {(char*)"generate", nullptr};
  po::options_description nothing;
  CommandLine cl = parse(1, none, nothing, base);
  const std::string chosen = cl.train.get_string("model.attention");
  TrainConfig c = make_train_config(cl.train, cl.variants.at(chosen));
  check_device_exists(c.device, vm.count("device") ? "--device" : "the checkpoint's train.device (override: --device cpu)");
  Transformer model(c.model);
  model.to(c.device);
  load_parameters(ck, model.named_parameters(), path);
  std::vector<int64_t> tokens(prompt.begin(), prompt.end());
  for (auto& t : tokens) t = (unsigned char)t;
  // A reader that goes away (`mtalab generate ... | head -c 100`) ends the generation: SIGPIPE
  // is ignored (mtalab_main), so a failed write is how it shows.
  bool reader_gone = std::fwrite(prompt.data(), 1, prompt.size(), stdout) != prompt.size() || std::fflush(stdout) != 0;
  if (!reader_gone)
    generate(model, tokens, o, [&](int64_t t) {
      reader_gone = std::fputc((int)t, stdout) == EOF || std::fflush(stdout) != 0;
      return !reader_gone;
    });
  if (!reader_gone) std::fputc('\n', stdout);
  return 0;
}

int cmd_variants() {
  std::cout << describe_attention_variants();
  return 0;
}

// Flags plus any number of positional inputs (run logs, run or sweep directories) as "input".
po::variables_map parse_with_inputs(int argc, char** argv, const po::options_description& flags) {
  po::options_description hidden;
  hidden.add_options()("input", po::value<std::vector<std::string>>());
  po::options_description all;
  all.add(flags).add(hidden);
  po::positional_options_description pos;
  pos.add("input", -1);
  po::variables_map vm;
  po::store(po::command_line_parser(argc, argv).options(all).positional(pos).style(style()).run(), vm);
  po::notify(vm);
  return vm;
}

int cmd_report(int argc, char** argv) {
  po::options_description flags("report");
  flags.add_options()("help,h", "show this help")("per-seed", "each run's row under its configuration's")(
      "baseline", po::value<std::string>(), "a configuration's name: add the metric's and eval loss's differences to it")(
      "format", po::value<std::string>()->default_value("text"), "text, csv or markdown");
  po::variables_map vm = parse_with_inputs(argc, argv, flags);
  if (vm.count("help") || !vm.count("input")) {
    std::cout << "usage: mtalab report RUN.h5|RUN_DIR|SWEEP_DIR [...] [--per-seed] [--baseline NAME] [--format F]\n"
                 "  one row per configuration (runs differing only in their seed are one; a sweep's runs are\n"
                 "  grouped by its configurations): mean ± std over finished runs of the losses and the metric,\n"
                 "  n (finished/all), parameters, steps, tokens seen, tokens/s, wall time, peak memory and a\n"
                 "  status (finished, diverged at N, interrupted at N, running, unreadable: why); exit 2 if an\n"
                 "  input is unreadable\n\n"
              << flags;
    return vm.count("help") ? 0 : 2;
  }
  ReportOptions o;
  const std::string f = vm["format"].as<std::string>();
  if (f == "text") o.format = ReportOptions::Format::text;
  else if (f == "csv") o.format = ReportOptions::Format::csv;
  else if (f == "markdown" || f == "md") o.format = ReportOptions::Format::markdown;
  else throw InputError("--format '" + printable(f) + "'; expected text, csv or markdown");
  o.per_seed = vm.count("per-seed") > 0;
  if (vm.count("baseline")) o.baseline = vm["baseline"].as<std::string>();
  const auto paths = vm["input"].as<std::vector<std::string>>();
  Report r = format_report(paths, o);
  std::cout << r.table << std::flush;
  if (r.unreadable > 0) {
    std::cerr << "mtalab: error: " << r.unreadable << " of " << paths.size()
              << " inputs could not be read (their rows say why)\n";
    return 2;
  }
  return 0;
}

// Runs ARGS as a child (its output on ours) and returns its exit code (127: could not be
// started; 128 + N: killed by signal N).
int run_and_wait(std::vector<std::string> args) {
  std::vector<char*> argv_c;
  for (auto& a : args) argv_c.push_back(a.data());
  argv_c.push_back(nullptr);
  std::fflush(nullptr);
  const pid_t pid = fork();
  if (pid == 0) {
    execv(argv_c[0], argv_c.data());
    _exit(127);
  }
  int status = 0;
  if (pid < 0 || waitpid(pid, &status, 0) < 0) throw IoError("cannot run " + args.front() + ": " + errno_text(errno));
  return WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
}

// `mtalab plot`: the runs grouped as the report groups them, handed to scripts/plot.py.
int cmd_plot(int argc, char** argv) {
  po::options_description flags("plot");
  flags.add_options()("help,h", "show this help")("out", po::value<std::string>(),
                                                  "folder for the figures and index.html (default: <sweep>/plots for one sweep, "
                                                  "else plots)")("title", po::value<std::string>(), "the HTML page's title");
  po::variables_map vm = parse_with_inputs(argc, argv, flags);
  if (vm.count("help") || !vm.count("input")) {
    std::cout << "usage: mtalab plot RUN.h5|RUN_DIR|SWEEP_DIR [...] [--out DIR]\n"
                 "  loss and metric curves per configuration (seeds as a band), attention maps of the logged\n"
                 "  example (layers x heads), learned kernels over training, and index.html with the report\n"
                 "  table and every figure. Needs python3-matplotlib and python3-h5py (scripts/setup.sh).\n\n"
              << flags;
    return vm.count("help") ? 0 : 2;
  }
  const auto inputs = vm["input"].as<std::vector<std::string>>();
  std::error_code ec;
  std::string out = vm.count("out") ? vm["out"].as<std::string>() : "plots";
  if (!vm.count("out") && inputs.size() == 1 && std::filesystem::exists(sweep_manifest_path(inputs[0]), ec))
    out = (std::filesystem::path(inputs[0]) / "plots").string();
  if (out.empty()) throw InputError("option --out is empty; expected a folder for the figures");
  const auto runs = report_runs(inputs);
  if (runs.empty()) throw InputError("no readable run log among the inputs (expected run.h5 files, run or sweep directories)");
  const char* script_env = std::getenv("MTALAB_PLOT_SCRIPT");
  const char* python_env = std::getenv("MTALAB_PYTHON");
  const std::string script = script_env && *script_env ? script_env : MTALAB_PLOT_SCRIPT;
  const std::string python = python_env && *python_env ? python_env : "/usr/bin/python3";
  const std::string title = vm.count("title") ? vm["title"].as<std::string>() : "mtalab: " + inputs.front();
  // What the script needs, asked before anything is written: matplotlib and h5py are blamed
  // only when they are what is missing.
  if (const int m = run_and_wait({python, "-c", "import matplotlib, h5py, numpy"}); m != 0)
    throw InputError(m == 127 ? "cannot run " + python + " (expected python3; MTALAB_PYTHON names another)"
                              : python + " cannot import matplotlib, h5py or numpy (its message is above); plot needs "
                                         "python3-matplotlib and python3-h5py (scripts/setup.sh installs them); "
                                         "nothing was written");
  std::filesystem::create_directories(out, ec);
  if (ec) throw IoError("cannot create '" + out + "': " + ec.message());
  std::string tsv = "configuration\trun\tlog\tstatus\n";
  for (const auto& r : runs) tsv += r.configuration + "\t" + r.name + "\t" + r.log + "\t" + r.status + "\n";
  replace_file((std::filesystem::path(out) / "runs.tsv").string(), tsv.data(), tsv.size());
  ReportOptions ro;
  ro.format = ReportOptions::Format::csv;
  ro.per_seed = true;
  const std::string csv = format_report(inputs, ro).table;
  replace_file((std::filesystem::path(out) / "report.csv").string(), csv.data(), csv.size());
  std::vector<std::string> args{python, script, out, title};
  const int code = run_and_wait(args);
  if (code != 0) {
    std::vector<std::string> names;
    for (const auto& e : std::filesystem::directory_iterator(out, ec)) names.push_back(e.path().filename().string());
    std::sort(names.begin(), names.end());
    std::string written;
    for (const auto& n : names) written += (written.empty() ? "" : ", ") + n;
    throw std::runtime_error(script + " failed (exit " + std::to_string(code) + "; its message is above) after " +
                             out + " held: " + written + (std::filesystem::exists(std::filesystem::path(out) / "index.html", ec)
                                                              ? " (index.html is from an earlier plot)"
                                                              : " (no index.html)"));
  }
  return 0;
}

// A data file exists and is a regular file (train reads it; a sweep only looks).
void check_data_file(const std::string& path, const char* option) {
  if (path.empty()) throw InputError(std::string("option ") + option + " is empty; expected a data file");
  struct stat st {};
  if (::stat(path.c_str(), &st) != 0) {
    const int err = errno;
    throw InputError(std::string("data file '") + printable(path) + "' (" + option + ") " +
                     (err == ENOENT ? "does not exist" : "cannot be read: " + errno_text(err)) +
                     "; expected a readable text file");
  }
  if (!S_ISREG(st.st_mode) || ::access(path.c_str(), R_OK) != 0)
    throw InputError(std::string("data file '") + printable(path) + "' (" + option +
                     ") is not a readable regular file; expected a text file");
}

// One run of a sweep checked as `mtalab train` would check it; its options resolved.
std::map<std::string, std::string> validate_sweep_run(const SweepRun& run) {
  if (run.options.count("run.out"))
    throw InputError("option run.out is set by the sweep (<sweep out>/<run name>); expected it left out");
  std::vector<std::string> args{"train"};
  for (const auto& [k, v] : run.options) {
    args.push_back("--" + k);
    args.push_back(v);
  }
  std::vector<char*> argv;
  for (auto& a : args) argv.push_back(a.data());
  po::options_description none;
  CommandLine cl = parse((int)argv.size(), argv.data(), none);
  const std::string chosen = cl.train.get_string("model.attention");
  const TrainConfig c = make_train_config(cl.train, cl.variants.at(chosen));
  std::set<std::string> given;
  for (auto& [k, v] : cl.given) given.insert(k);
  check_options_take_effect(cl.train, cl.variants.at(chosen), given);
  // What `mtalab train` checks before its first step, short of reading the data: a run
  // that is bound to fail is refused with the sweep, not found failed hours later.
  check_device_exists(c.device, "--train.device");
  if (c.task == "text") {
    check_data_file(c.data_path, "data.path");
    if (!c.val_path.empty()) check_data_file(c.val_path, "data.val_path");
  }
  check_training_memory(c);
  check_variant_fits(c.model);
  return resolved(cl);
}

// Every option a sweep file sets is one `mtalab train` knows: InputError naming the file and
// line of the first that is not (before any run is expanded, so it is said once).
void check_sweep_option_names(const SweepSpec& spec, const po::options_description& declared) {
  auto check = [&](const std::string& name) {
    if (declared.find_nothrow(name, false)) return;
    auto it = spec.where.find(name);
    const std::string at = it != spec.where.end() ? it->second : spec.file.empty() ? "sweep" : spec.file;
    throw InputError(at + ": unknown option '" + printable(name) +
                     "'; expected an option of mtalab train as section.key (mtalab train --help lists them)");
  };
  for (const auto& [k, v] : spec.base) check(k);
  for (const auto& a : spec.axes) check(a.option);
  for (const auto& c : spec.configurations)
    for (const auto& [k, v] : c.options) check(k);
}

// An option given on the command line that an axis or a configuration also sets would be
// silently replaced in every run: refused, naming both.
void refuse_shadowed_options(const SweepSpec& spec, const std::map<std::string, std::string>& given) {
  for (const auto& [k, v] : given) {
    std::string by;
    for (const auto& a : spec.axes)
      if (a.option == k) by = "a sweep axis (" + k + " = " + [&] {
                                std::string l;
                                for (const auto& x : a.values) l += (l.empty() ? "" : ", ") + x;
                                return l;
                              }() + ")";
    for (const auto& c : spec.configurations)
      if (by.empty() && c.options.count(k)) by = "set by [configuration " + c.name + "] to " + c.options.at(k);
    if (by.empty()) continue;
    auto it = spec.where.find(k);
    throw InputError("--" + k + " " + printable(v) + " is given on the command line, but " + k + " is " + by +
                     (it != spec.where.end() ? " at " + it->second : std::string()) +
                     ", which would replace it in every run; expected one or the other (--grid " + k + "=" +
                     printable(v) + " replaces an axis)");
  }
}

std::string self_binary() {
  std::error_code ec;
  const auto p = std::filesystem::read_symlink("/proc/self/exe", ec);
  if (ec) throw IoError("cannot find the mtalab executable (/proc/self/exe): " + ec.message());
  return p.string();
}

// The runs of a sweep, to be run by `binary` (this executable) and checked as train would.
void expand_sweep_request(SweepRequest& req) {
  VariantScope scope;
  for (const auto* v : AttentionRegistry::list()) scope.variants.insert(v->name);
  scope.default_variant = OptionValues(train_option_specs(), "").get_string("model.attention");
  req.runs = expand_sweep(req.spec, scope);
  req.scope = scope;
  req.binary = self_binary();
  req.validate = validate_sweep_run;
}

int cmd_sweep(int argc, char** argv) {
  po::options_description flags("sweep");
  flags.add_options()("help,h", "show this help")("grid", po::value<std::vector<std::string>>()->composing(),
                                                  "an axis option=v1,v2,... (or seeds=N), added to or replacing the file's")(
      "sweep.out", po::value<std::string>(), "the sweep's directory (overrides the file's [sweep] out)")(
      "jobs", po::value<int>()->default_value(1), "runs at once; the cores are split between them")(
      "retry-failed", "run diverged and failed runs again (from scratch)")(
      "dry-run", "list the runs and what relaunching would do; run nothing (with --launcher slurm: and the "
                 "batch script and its --array)")(
      "status", "each run's state, from its directory, the manifest and (for a Slurm sweep) Slurm's queue")(
      "launcher", po::value<std::string>()->default_value("local"),
      "local: the runs are child processes here; slurm: one Slurm job array (the --slurm.* settings, or the "
      "file's [slurm] section)")("wait", "with --launcher slurm: follow the tasks until they end, one line per change");
  po::options_description slurm_flags("Slurm (--launcher slurm; also KEY = VALUE under [slurm] in the sweep file)");
  for (const auto& s : slurm_settings())
    slurm_flags.add_options()(("slurm." + std::string(s.key)).c_str(), po::value<std::string>()->value_name(s.value_name),
                              s.help);
  flags.add(slurm_flags);
  po::options_description all;
  po::options_description declared = declared_options();
  all.add(flags).add(declared);
  po::positional_options_description pos;
  pos.add("file", 1);
  po::options_description hidden;
  hidden.add_options()("file", po::value<std::string>());
  all.add(hidden);
  po::variables_map vm;
  po::store(po::command_line_parser(argc, argv).options(all).positional(pos).style(style()).run(), vm);
  po::notify(vm);
  if (vm.count("help") || !vm.count("file")) {
    std::cout << "usage: mtalab sweep FILE.ini [--grid option=v1,v2 ...] [--jobs N] [options]\n"
                 "       mtalab sweep FILE.ini --launcher slurm [--slurm.time T --slurm.gpus N ...] [--wait]\n"
                 "       mtalab sweep FILE.ini --status\n\n"
                 "Runs every combination of the file's [sweep] axes (and [configuration NAME] sets) x seeds,\n"
                 "each in <out>/<run name>/, N at once; relaunching skips finished runs and resumes\n"
                 "interrupted ones. Options given here (--train.steps 100) replace the file's base options.\n"
                 "With --launcher slurm the same runs go to Slurm as one job array (script in\n"
                 "<out>/slurm/sweep.sbatch), each task checkpointing and requeueing itself before its time limit.\n\n"
              << flags << "\n"
              << kExitCodes << "  (sweep: 3 when some run diverged, failed or was busy; the manifest says which)\n";
    return vm.count("help") ? 0 : 2;
  }
  SweepRequest req;
  req.spec = read_sweep_spec(vm["file"].as<std::string>());
  check_sweep_option_names(req.spec, declared);
  std::map<std::string, std::string> given_here;
  for (const auto& opt : declared.options())
    if (vm.count(opt->long_name())) given_here[opt->long_name()] = req.spec.base[opt->long_name()] = vm[opt->long_name()].as<std::string>();
  if (vm.count("grid"))
    for (const auto& g : vm["grid"].as<std::vector<std::string>>()) set_sweep_axis(req.spec, g);
  refuse_shadowed_options(req.spec, given_here);
  if (vm.count("sweep.out")) req.spec.out = vm["sweep.out"].as<std::string>();
  if (req.spec.out.empty())
    throw InputError("sweep '" + req.spec.file + "' has no out; expected [sweep] out = DIR or --sweep.out DIR");
  expand_sweep_request(req);
  req.jobs = vm["jobs"].as<int>();
  req.retry_failed = vm.count("retry-failed") > 0;
  req.dry_run = vm.count("dry-run") > 0;
  if (vm.count("status")) {
    print_sweep_status(req);
    return 0;
  }
  const std::string launcher = vm["launcher"].as<std::string>();
  std::map<std::string, std::string> settings = req.spec.slurm;
  std::string given;
  for (const auto& s : slurm_settings())
    if (vm.count("slurm." + std::string(s.key))) {
      settings[s.key] = vm["slurm." + std::string(s.key)].as<std::string>();
      given = "--slurm." + std::string(s.key);
    }
  const SlurmOptions o = slurm_options(settings);  // a typo in [slurm] is caught on any launcher
  if (launcher == "slurm") {
    if (!vm["jobs"].defaulted())
      throw InputError("--jobs is for the local launcher; with --launcher slurm, --slurm.parallel K runs at most K "
                       "tasks at once");
    req.spec.slurm = settings;  // sweep.ini records what was submitted
    return submit_slurm_sweep(req, o, vm.count("wait") > 0).exit_code();
  }
  if (launcher != "local") throw InputError("--launcher '" + printable(launcher) + "'; expected local or slurm");
  if (!given.empty() || vm.count("wait"))
    throw InputError((given.empty() ? std::string("--wait") : given) + " is for --launcher slurm (the local launcher "
                     "runs here and always waits)");
  return run_sweep(req).exit_code();
}

// The body of one task of a Slurm sweep's job array; the batch script execs it.
int cmd_sweep_task(int argc, char** argv) {
  po::options_description flags("sweep-task");
  flags.add_options()("help,h", "show this help")("sweep", po::value<std::string>(), "the sweep directory's sweep.ini")(
      "requeues", po::value<int>()->default_value(3), "requeue after the time-limit signal at most this often")(
      "launch", po::value<std::string>(), "what starts the ranks of a run with more than one task");
  po::variables_map vm;
  const po::parsed_options parsed = po::command_line_parser(argc, argv).options(flags).style(style()).run();
  refuse_positional(parsed);
  po::store(parsed, vm);
  po::notify(vm);
  if (vm.count("help") || !vm.count("sweep")) {
    std::cout << "usage: mtalab sweep-task --sweep OUT/sweep.ini [--requeues N] [--launch CMD]\n"
                 "  one task of the job array `mtalab sweep --launcher slurm` submits (its batch script runs it):\n"
                 "  runs row $SLURM_ARRAY_TASK_ID of the sweep, requeueing itself after the time-limit signal\n\n"
              << flags;
    return vm.count("help") ? 0 : 2;
  }
  SweepRequest req;
  req.spec = read_sweep_spec(vm["sweep"].as<std::string>());
  expand_sweep_request(req);
  std::map<std::string, std::string> settings{{"requeues", std::to_string(vm["requeues"].as<int>())}};
  if (vm.count("launch")) settings["launch"] = vm["launch"].as<std::string>();
  return run_slurm_task(req, slurm_options(settings));
}

int fail(int code, const std::string& what) {
  // A message of several lines (an indented one per bad run) keeps its line breaks; any
  // other control character (a line break inside a value included) is shown as \xNN.
  std::string shown;
  size_t b = 0;
  for (size_t e; (e = what.find("\n  ", b)) != std::string::npos; b = e + 1) shown += printable(what.substr(b, e - b)) + "\n";
  std::cerr << "mtalab: error: " << shown << printable(what.substr(b)) << "\n";
  return code;
}

}  // namespace

// The commands, once: usage, dispatch and the unknown-command error come from this list.
struct Command {
  const char* name;
  const char* help;
  int (*run)(int argc, char** argv);  // argv[0] is the command's name
};
const std::vector<Command>& commands() {
  static const std::vector<Command> list = {
      {"train", "train a model (find-the-block task or byte-level text); logs to <run.out>/run.h5", cmd_train},
      {"eval", "evaluate a checkpoint on the run's task or a text file", cmd_eval},
      {"generate", "continue a prompt with a checkpoint (greedy, or sampled: temperature, top-k, seed)", cmd_generate},
      {"sweep", "run an ablation file: a grid of options x seeds, N runs at once, resumable;\n"
                "              --launcher slurm: one Slurm job array, requeued on its time limit; --status",
       cmd_sweep},
      {"sweep-task", "one task of a Slurm sweep's job array (the batch script runs it)", cmd_sweep_task},
      {"report", "results table from run logs, run directories or sweeps: seeds grouped, mean ± std", cmd_report},
      {"plot", "figures and an HTML page for runs or a sweep: curves, attention maps, learned kernels", cmd_plot},
      {"variants", "list attention variants with their options and defaults", [](int, char**) { return cmd_variants(); }},
  };
  return list;
}

std::string usage() {
  std::string u = "usage: mtalab <command> [options]\n\ncommands:\n";
  for (const Command& c : commands())
    u += "  " + std::string(c.name) + std::string(std::max<size_t>(2, 12 - std::strlen(c.name)), ' ') + c.help + "\n";
  return u + "\n" + kUsageFooter;
}

int mtalab_main(int argc, char** argv) {
  if (argc < 2) {
    std::cerr << usage();
    return 2;
  }
  std::signal(SIGPIPE, SIG_IGN);  // a closed pipe is a write error, never a silent death
  fault::at("main");              // tests: a pause before any command installs its handlers
  const std::string cmd = argv[1];
  try {
    if (cmd == "--help" || cmd == "-h" || cmd == "help") {
      std::cout << usage() << "\n" << kExitCodes;
      return 0;
    }
    std::string names;
    for (const Command& c : commands()) {
      if (cmd == c.name) return c.run(argc - 1, argv + 1);
      names += (names.empty() ? "" : ", ") + std::string(c.name);
    }
    std::cerr << "mtalab: error: unknown command '" << printable(cmd) << "' (expected one of: " << names << ")\n";
    return 2;
  } catch (const InputError& e) {
    return fail(2, e.what());
  } catch (const po::error& e) {
    return fail(2, e.what());
  } catch (const DivergedError& e) {
    return fail(3, e.what());
  } catch (const IoError& e) {
    return fail(4, e.what());
  } catch (const OutOfMemoryError& e) {
    return fail(5, e.what());
  } catch (const std::bad_alloc&) {
    return fail(5, "out of memory (an allocation failed; expected a smaller model or batch)");
  } catch (const InterruptedError& e) {
    return fail(130, e.what());
  } catch (const dist::CommError& e) {
    return fail(6, e.what());
  } catch (const std::exception& e) {
    return fail(1, std::string("internal error: ") + e.what());
  }
}

}  // namespace mtalab
