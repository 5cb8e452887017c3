// A run's results without what depends on the clock or on the run's identity (loss and
// metric columns, the learned MTA kernel, parameters, optimizer state, counters), and an
// exact comparison: how the tests show that an interrupted and resumed run ended bit for bit
// where an uninterrupted one did. The model must have MTA's key-query convolution in layer 1.
#pragma once
#include <doctest/doctest.h>

#include <cstring>
#include <map>
#include <string>
#include <variant>
#include <vector>

#include "experiments/run/checkpoint_file.h"
#include "experiments/run/run_log.h"

namespace mtalab::testing {

// Everything a run computes, without what depends on the clock or on the run's identity.
struct Results {
  std::map<std::string, std::vector<double>> columns;
  std::map<std::string, CheckpointTensor> params, optim;
  std::map<std::string, int64_t> ints;
  std::vector<double> kernel;
};

inline Results results_of(const std::string& dir) {
  Results r;
  RunLog log = RunLog::open_read(dir + "/run.h5");
  for (auto c : {"step", "loss", "lr", "grad_norm"}) r.columns[std::string("train.") + c] = log.column("train", c);
  for (auto c : {"step", "loss", "error_rate"}) r.columns[std::string("eval.") + c] = log.column("eval", c);
  r.kernel = log.read_array("/kernels/layers.1.attention.kq_kernel").values;
  CheckpointData ck = load_checkpoint(dir + "/checkpoint.h5");
  r.params = ck.params;
  r.optim = ck.optim;
  r.ints = ck.ints;
  return r;
}

inline bool same_bits(const std::map<std::string, CheckpointTensor>& a, const std::map<std::string, CheckpointTensor>& b) {
  if (a.size() != b.size()) return false;
  for (auto& [n, t] : a) {
    if (!b.count(n) || b.at(n).shape != t.shape || b.at(n).values.index() != t.values.index()) return false;
    const bool same = std::visit(
        [&](const auto& v) {
          const auto& w = std::get<std::decay_t<decltype(v)>>(b.at(n).values);
          return v.size() == w.size() && std::memcmp(v.data(), w.data(), v.size() * sizeof(v[0])) == 0;
        },
        t.values);
    if (!same) return false;
  }
  return true;
}

inline void check_same(const Results& a, const Results& b) {
  for (auto& [name, col] : a.columns) {
    CAPTURE(name);
    CHECK(col == b.columns.at(name));  // exact: doubles compared with ==
  }
  CHECK(a.kernel == b.kernel);
  CHECK(same_bits(a.params, b.params));
  CHECK(same_bits(a.optim, b.optim));
  CHECK(a.ints == b.ints);  // step, optimizer steps, RNG and data positions
}

}  // namespace mtalab::testing
