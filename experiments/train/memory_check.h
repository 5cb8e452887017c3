// Whether a model and batch fit in memory, checked before anything is allocated: the kernel
// would otherwise grant the allocations and then kill the process (the OOM killer) without
// a checkpoint or a message.
#pragma once
#include <cstdint>
#include <stdexcept>
#include <string>

#include "experiments/train/config.h"

namespace mtalab {

// Bytes a training run needs at its peak, by kind. Rough (activations especially: the
// saved tensors of one forward pass, not every temporary), and deliberately not generous:
// a refusal must mean the run clearly cannot fit.
struct MemoryEstimate {
  double parameters = 0, optimizer = 0, gradients = 0;
  double activations = 0;  // training step or evaluation, whichever is larger
  double checkpoint = 0;   // the host copies a checkpoint is built from
  double host_total = 0;   // what must fit in host memory (cuda: the checkpoint copies only)
  std::string breakdown() const;  // "parameters 1.2 GiB, optimizer state 2.4 GiB, ..."
};

MemoryEstimate estimate_training_memory(const TrainConfig& c);

// Bytes this process may still allocate: /proc/meminfo's MemAvailable, capped by the
// cgroup's memory limit and the address-space limit (ulimit -v). 0 when none can be read.
uint64_t available_memory();

// InputError with the estimate and the available memory when the run cannot fit.
void check_training_memory(const TrainConfig& c);

std::string format_bytes(double bytes);  // "1.5 GiB"

}  // namespace mtalab

namespace mtalab {
// Memory ran out while training (a failed allocation): exit code 5. The message says what
// the files on disk hold.
struct OutOfMemoryError : std::runtime_error {
  using std::runtime_error::runtime_error;
};
}  // namespace mtalab
