// An ablation as a checked-in file: base options, the axes of a grid (seeds are an axis like
// any other) and optional named configurations for sets that are not a grid.
//
//   [model]                      # base options, as in a train config: [section] key = value
//   n_layers = 4
//   [sweep]
//   out = runs/kq_size           # where the runs go: <out>/<run name>/
//   model.attention = softmax, mta
//   mta.cq = 2, 4, "6"           # a value holding a comma is quoted: "0,2"
//   seeds = 3                    # train.seed = base, base+1, base+2 (or: train.seed = 1, 5, 9)
//   [configuration kq-pre]       # a named set of options; the grid runs under each
//   mta.kq_post = false
//
//   [slurm]                      # settings for `mtalab sweep --launcher slurm` (sweep_slurm.h)
//   time = 04:00:00              #   only; the command line's --slurm.time wins
//
// Each run is named for what varies: "attention=mta,cq=4,seed=1", or with configurations
// "kq-pre,cq=4,seed=1" (a key is its last component unless two varied keys share it).
#pragma once
#include <cstdint>
#include <map>
#include <set>
#include <string>
#include <utility>
#include <vector>

namespace mtalab {

struct SweepAxis {
  std::string option;               // e.g. "mta.cq"; "train.seed" for the seeds
  std::vector<std::string> values;  // in the file's order
};

struct SweepConfiguration {
  std::string name;
  std::map<std::string, std::string> options;
};

struct SweepSpec {
  std::string file;  // where it was read from ("" when built in code)
  std::string out;   // the sweep directory
  std::map<std::string, std::string> base;
  std::vector<SweepAxis> axes;  // the seed axis, if any, is last
  std::vector<SweepConfiguration> configurations;
  std::map<std::string, std::string> slurm;  // [slurm] key = value, checked by the Slurm launcher
  std::map<std::string, std::string> where;  // option -> "file:line" first setting it (for messages)
};

struct SweepRun {
  std::string name;           // directory name under out, built from what varies
  std::string configuration;  // the name without the seed: the report's grouping
  int64_t seed = 0;
  std::map<std::string, std::string> options;  // base + configuration + axes, as given
};

// Reads a sweep file. InputError naming the file, the line and what was expected for a
// malformed line, an empty axis, a duplicate key or configuration, or no [sweep] section.
SweepSpec read_sweep_spec(const std::string& path);
SweepSpec parse_sweep_spec(const std::string& text, const std::string& file);

// Adds or replaces an axis from a command-line "option=v1,v2" (`seeds=N` included).
void set_sweep_axis(SweepSpec& spec, const std::string& assignment);

// The attention variants whose options (<variant>.<key>) apply only to runs of that variant.
struct VariantScope {
  std::set<std::string> variants;
  std::string default_variant = "softmax";  // when model.attention is not set
};

// Every run of the sweep: configurations x axes (the first axis varies slowest, seeds
// fastest). A variant's options are dropped from runs of other variants (and leave their
// names), so identical runs collapse into one. InputError when an axis sets an option a
// configuration also sets, or two different runs would get the same name.
std::vector<SweepRun> expand_sweep(const SweepSpec& spec, const VariantScope& scope = {});

// The sweep as a file read_sweep_spec() reads back (written beside the runs, so the sweep
// directory says what it holds even after the checked-in file changed).
std::string sweep_spec_text(const SweepSpec& spec);

// A run's (or configuration's) name becomes a directory <out>/<name>/ and a file
// <out>/logs/<name>.log: InputError naming `what` unless it is one path component that is
// not '.' or '..', holds no control character and fits NAME_MAX with the ".log".
constexpr size_t kMaxRunName = 255 - 4;
void check_sweep_run_name(const std::string& name, const std::string& what);

// Splits "a, b, \"c,d\"" into its trimmed values.
std::vector<std::string> split_sweep_values(const std::string& list);

}  // namespace mtalab
