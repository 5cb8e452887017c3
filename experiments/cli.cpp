#include "experiments/cli.h"

#include <boost/program_options.hpp>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <set>
#include <sstream>

#include "autograd/errors.h"
#include "experiments/checkpoint_file.h"
#include "experiments/config.h"
#include "experiments/report.h"
#include "experiments/run_log.h"
#include "experiments/train_data.h"
#include "experiments/trainer.h"
#include "layers/attention.h"

namespace po = boost::program_options;

namespace mtalab {
namespace {

const char* kUsage =
    "usage: mtalab <command> [options]\n\n"
    "commands:\n"
    "  train     train a model (find-the-block task or byte-level text); logs to <run.out>/run.h5\n"
    "  eval      evaluate a checkpoint on the run's task or a text file\n"
    "  report    print a results table from run logs (run.h5 files)\n"
    "  variants  list attention variants with their options and defaults\n\n"
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

// Parses argv (after the subcommand) and an optional --config file; the command line
// takes precedence. `base` holds values to start from (a resumed run's stored options).
CommandLine parse(int argc, char** argv, const po::options_description& flags,
                  const std::map<std::string, std::string>& base = {}) {
  po::options_description all;
  po::options_description declared = declared_options();
  all.add(flags).add(declared);
  CommandLine cl;
  po::variables_map vm;
  po::store(po::command_line_parser(argc, argv).options(all).style(style()).run(), vm);
  if (vm.count("config")) {
    const std::string path = vm["config"].as<std::string>();
    std::ifstream f(path);
    if (!f) throw InputError("config file '" + path + "' cannot be opened (expected a readable INI file)");
    try {
      po::store(po::parse_config_file(f, declared, false), vm);  // stored second: the command line wins
    } catch (const po::error& e) {
      throw InputError("config file '" + path + "': " + std::string(e.what()));
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

// Options stored as root attributes of a run log (how `--resume` and `eval` recover them).
std::map<std::string, std::string> stored_options(const std::string& log_path) {
  std::map<std::string, std::string> out;
  RunLog log = RunLog::open_read(log_path);
  std::set<std::string> known;
  for (const auto& s : train_option_specs()) known.insert(s.name);
  for (const auto* v : AttentionRegistry::list())
    for (const auto& s : v->options) known.insert(v->name + "." + s.name);
  for (auto& [k, v] : log.attrs())
    if (known.count(k) && std::holds_alternative<std::string>(v)) out[k] = std::get<std::string>(v);
  return out;
}

void print_help(const char* cmd, const po::options_description& flags) {
  std::cout << "usage: mtalab " << cmd << " [options]\n\n" << flags << "\n" << declared_options() << "\n";
}

int cmd_train(int argc, char** argv) {
  po::options_description flags("train");
  flags.add_options()("help,h", "show this help")("config", po::value<std::string>(), "INI file of options")(
      "overwrite", "replace an existing run log in run.out")("resume", "continue the run in run.out from its checkpoint")(
      "init-from", po::value<std::string>(), "load parameters (only) from this checkpoint")(
      "no-shuffle", "visit training windows in file order (same as --data.shuffle false)")(
      "quiet", "no progress lines");
  // A resumed run starts from the options it was started with.
  std::map<std::string, std::string> base;
  {
    CommandLine pre = parse(argc, argv, flags);
    if (pre.flags.count("help")) {
      print_help("train", flags);
      return 0;
    }
    if (pre.flags.count("resume")) {
      const std::string log = run_log_path(pre.train.get_string("run.out"));
      if (!std::filesystem::exists(log))
        throw InputError("--resume: no run log at '" + log + "' (expected the run.out of an earlier run)");
      base = stored_options(log);
    }
  }
  CommandLine cl = parse(argc, argv, flags, base);
  if (cl.flags.count("no-shuffle")) {
    if (cl.given.count("data.shuffle") && cl.train.get_bool("data.shuffle"))
      throw InputError("--no-shuffle contradicts --data.shuffle " + cl.given["data.shuffle"]);
    cl.train.set("data.shuffle", "false");
  }
  if (cl.flags.count("resume") && cl.flags.count("init-from"))
    throw InputError("--resume and --init-from cannot be combined (resume restores everything from the run's checkpoint)");
  if (cl.flags.count("resume") && cl.flags.count("overwrite"))
    throw InputError("--resume and --overwrite cannot be combined (one continues the run log, the other replaces it)");
  RunRequest req;
  const std::string chosen = cl.train.get_string("model.attention");
  req.config = make_train_config(cl.train, cl.variants.at(chosen));
  req.options = resolved(cl);
  req.overwrite = cl.flags.count("overwrite") > 0;
  req.resume = cl.flags.count("resume") > 0;
  req.quiet = cl.flags.count("quiet") > 0;
  if (cl.flags.count("init-from")) req.init_from = cl.flags["init-from"].as<std::string>();
  if (!req.resume && !req.overwrite && std::filesystem::exists(run_log_path(req.config.out_dir)))
    throw InputError("run log '" + run_log_path(req.config.out_dir) +
                     "' already exists (use --overwrite to replace it, --resume to continue it, or another --run.out)");
  install_stop_handlers();
  RunSummary s = train(req);
  std::printf("done: %lld steps, train loss %.4f, eval loss %.4f, %s %.4f, %.1f s\n", (long long)s.steps, s.train_loss,
              s.eval_loss, s.metric_name.c_str(), s.eval_metric, s.wall_s);
  return s.interrupted ? 130 : 0;
}

int cmd_eval(int argc, char** argv) {
  po::options_description flags("eval");
  flags.add_options()("help,h", "show this help")("config", po::value<std::string>(), "INI file of options")(
      "checkpoint", po::value<std::string>(), "checkpoint to evaluate (its run.h5 beside it supplies the model options)");
  CommandLine pre = parse(argc, argv, flags);
  if (pre.flags.count("help")) {
    print_help("eval", flags);
    return 0;
  }
  if (!pre.flags.count("checkpoint")) throw InputError("eval: --checkpoint FILE is required");
  const std::string ck = pre.flags["checkpoint"].as<std::string>();
  const auto log = std::filesystem::path(ck).parent_path() / "run.h5";
  std::map<std::string, std::string> base;
  if (std::filesystem::exists(log)) base = stored_options(log.string());
  CommandLine cl = parse(argc, argv, flags, base);
  const std::string chosen = cl.train.get_string("model.attention");
  TrainConfig c = make_train_config(cl.train, cl.variants.at(chosen));
  auto data = make_train_data(c);
  Transformer model(c.model);
  model.to(c.device);  // --train.device picks where; a checkpoint loads onto either device
  CheckpointData d = load_checkpoint(ck);
  load_parameters(d, model.named_parameters(), ck);
  model.train(false);
  EvalResult r = data->evaluate(model);
  std::printf("%s on %s: loss %.4f | %s %.4f\n", ck.c_str(), c.task == "text" ? c.data_path.c_str() : "find_block",
              r.loss, data->metric_name().c_str(), r.metric);
  return 0;
}

int cmd_variants() {
  std::cout << describe_attention_variants();
  return 0;
}

int cmd_report(int argc, char** argv) {
  if (argc < 2 || std::string(argv[1]) == "--help" || std::string(argv[1]) == "-h") {
    std::cout << "usage: mtalab report RUN.h5 [RUN.h5 ...]\n  one row per run: variant, parameters, steps, "
                 "final losses and metric, wall time\n";
    return argc < 2 ? 2 : 0;
  }
  std::vector<std::string> paths(argv + 1, argv + argc);
  std::cout << format_report(paths);
  return 0;
}

}  // namespace

int mtalab_main(int argc, char** argv) {
  if (argc < 2) {
    std::cerr << kUsage;
    return 2;
  }
  const std::string cmd = argv[1];
  try {
    if (cmd == "--help" || cmd == "-h" || cmd == "help") {
      std::cout << kUsage;
      return 0;
    }
    if (cmd == "train") return cmd_train(argc - 1, argv + 1);
    if (cmd == "eval") return cmd_eval(argc - 1, argv + 1);
    if (cmd == "report") return cmd_report(argc - 1, argv + 1);
    if (cmd == "variants") return cmd_variants();
    std::cerr << "mtalab: error: unknown command '" << cmd << "' (expected train, eval, report or variants)\n";
    return 2;
  } catch (const InputError& e) {
    std::cerr << "mtalab: error: " << e.what() << "\n";
    return 2;
  } catch (const po::error& e) {
    std::cerr << "mtalab: error: " << e.what() << "\n";
    return 2;
  } catch (const DivergedError& e) {
    std::cerr << "mtalab: error: " << e.what() << "\n";
    return 3;
  }
}

}  // namespace mtalab
