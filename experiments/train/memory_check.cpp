#include "experiments/train/memory_check.h"

#include "layers/attention.h"

#include <sys/resource.h>
#include <unistd.h>

#include <algorithm>
#include <cstdio>
#include <fstream>
#include <string>

#include "autograd/backend.h"
#include "autograd/errors.h"

namespace mtalab {

namespace {

// One number from a file such as /sys/fs/cgroup/memory.max; 0 when absent or "max".
uint64_t read_number(const std::string& path) {
  std::ifstream in(path);
  std::string s;
  if (!(in >> s) || s == "max") return 0;
  try {
    return std::stoull(s);
  } catch (...) {
    return 0;
  }
}

uint64_t mem_available_kib() {
  std::ifstream in("/proc/meminfo");
  std::string key;
  uint64_t value = 0;
  std::string unit;
  while (in >> key >> value >> unit)
    if (key == "MemAvailable:") return value;
  return 0;
}

// Room left under the cgroup's limit (v2, then v1); 0 when there is none.
uint64_t cgroup_room() {
  uint64_t limit = read_number("/sys/fs/cgroup/memory.max"), used = read_number("/sys/fs/cgroup/memory.current");
  if (limit == 0) {
    limit = read_number("/sys/fs/cgroup/memory/memory.limit_in_bytes");
    used = read_number("/sys/fs/cgroup/memory/memory.usage_in_bytes");
    if (limit >= (1ull << 60)) limit = 0;  // v1 reports "no limit" as a huge number
  }
  if (limit == 0) return 0;
  return limit > used ? limit - used : 1;
}

// Room left under an address-space limit (ulimit -v), which allocations hit first.
uint64_t address_space_room() {
  struct rlimit rl;
  if (::getrlimit(RLIMIT_AS, &rl) != 0 || rl.rlim_cur == RLIM_INFINITY) return 0;
  std::ifstream statm("/proc/self/statm");
  uint64_t pages = 0;
  statm >> pages;
  const uint64_t used = pages * (uint64_t)::sysconf(_SC_PAGESIZE);
  return rl.rlim_cur > used ? rl.rlim_cur - used : 1;
}

}  // namespace

std::string format_bytes(double b) {
  const char* units[] = {"B", "KiB", "MiB", "GiB", "TiB", "PiB"};
  int u = 0;
  while (b >= 1024 && u < 5) {
    b /= 1024;
    ++u;
  }
  char buf[32];
  std::snprintf(buf, sizeof buf, u == 0 ? "%.0f %s" : "%.1f %s", b, units[u]);
  return buf;
}

std::string MemoryEstimate::breakdown() const {
  return "parameters " + format_bytes(parameters) + ", optimizer state " + format_bytes(optimizer) + ", gradients " +
         format_bytes(gradients) + ", activations " + format_bytes(activations) + ", checkpoint copies " +
         format_bytes(checkpoint);
}

MemoryEstimate estimate_training_memory(const TrainConfig& c) {
  const ModelConfig& m = c.model;
  const double e = m.dtype == DType::f64 ? 8 : 4;
  const double V = (double)m.vocab_size, d = (double)m.d_model, L = (double)m.n_layers, H = (double)m.n_heads;
  const double F = (double)m.ffn_hidden_size();
  const double T = (double)m.max_seq_len;  // the task's longest sequence
  // Token embedding (and an untied output), per block 4 attention and 3 SwiGLU matrices
  // and two norms, the final norm. The variants' own parameters are small beside these.
  const double P = V * d * (m.tie_embeddings ? 1 : 2) + L * (4 * d * d + 3 * d * F + 2 * d) + d;
  const double O = c.optimizer.name == "adamw" ? 2 * P : (c.optimizer.momentum > 0 ? P : 0);
  // Saved for backward per block: about 14 activations of width d and 4 of width F per
  // token, and per head the T x T maps the variant says it keeps (AttentionVariant::
  // maps_per_head) unless it runs fused (it says whether it can; --attn.impl and dropout
  // decide whether it does), when the kernel's scratch is a few bands of 64 rows per
  // thread; the logits with their softmax and gradient.
  const AttentionVariant& variant = AttentionRegistry::get(m.attention);
  const bool fused = variant.fused && attention_runs_fused(m.attn_impl, m.dropout, /*training=*/true, false);
  const double maps = fused ? 0 : variant.maps_per_head;
  const double B = (double)c.batch_size, Be = (double)c.eval_batch_size;
  const double scratch = fused ? 10.0 * std::max(1, c.threads) * H * 64 * T : 0;
  const double train_act = L * B * T * (14 * d + 4 * F + maps * H * T) + 3 * B * T * V + scratch;
  // Evaluation keeps no graph: the largest temporaries of one layer and the logits.
  const double eval_act = Be * T * (4 * d + 2 * F + (fused ? 0 : 2 * H * T)) + 2 * Be * T * V + scratch;
  MemoryEstimate est;
  est.parameters = P * e;
  est.optimizer = O * e;
  est.gradients = P * e;
  est.activations = std::max(train_act, eval_act) * e;
  est.checkpoint = 2 * (P + O) * e;  // the values copied out, and the file image built from them
  const double state = est.parameters + est.optimizer + est.gradients;
  est.host_total = c.device.is_cpu() ? state + std::max(est.activations, est.checkpoint) : est.checkpoint;
  return est;
}

uint64_t available_memory() {
  uint64_t avail = mem_available_kib() * 1024;
  for (const uint64_t room : {cgroup_room(), address_space_room()})
    if (room > 0 && (avail == 0 || room < avail)) avail = room;
  return avail;
}

void check_training_memory(const TrainConfig& c) {
  const MemoryEstimate est = estimate_training_memory(c);
  size_t dev_free = 0, dev_total = 0;
  const double dev_need = est.parameters + est.optimizer + est.gradients + est.activations;
  if (!c.device.is_cpu() && cuda_memory_info(c.device.index, &dev_free, &dev_total) && dev_need > (double)dev_free)
    throw InputError("the model and batch need about " + format_bytes(dev_need) + " of memory on " + c.device.str() +
                     " (" + est.breakdown() + "), more than the " + format_bytes((double)dev_free) +
                     " free there; expected a smaller model (--model.d_model, --model.n_layers), batch "
                     "(--train.batch_size, --train.eval_batch_size) or sequence (--data.seq_len)");
  const uint64_t avail = available_memory();
  if (avail == 0 || est.host_total <= (double)avail) return;
  throw InputError("the model and batch need about " + format_bytes(est.host_total) + " of memory (" + est.breakdown() +
                   "), more than the " + format_bytes((double)avail) +
                   " available; expected a smaller model (--model.d_model, --model.n_layers), batch "
                   "(--train.batch_size, --train.eval_batch_size) or sequence (--data.seq_len)");
}

}  // namespace mtalab
