// Clean stops. The first SIGINT or SIGTERM asks a training run to stop after its current
// step (log flushed, checkpoint written, exit 130); it is honoured from the moment the
// handlers are installed, during startup too. A second one exits at once with 130 — except
// while a checkpoint is being written, which is finished first, so the directory always
// holds a complete checkpoint. SIGPIPE is ignored: output into a closed pipe
// (`mtalab train ... | head`) fails as a write error instead of killing the run.
#pragma once

namespace mtalab {

// Installs the handlers and forgets any earlier request. The first signal prints one line
// to stderr saying what happens next.
void install_stop_handlers();

// The signal that asked to stop (0: none yet).
int stop_signal();

// While one exists, a second signal waits for it to end before exiting.
class UninterruptibleWrite {
 public:
  UninterruptibleWrite();
  ~UninterruptibleWrite();
  UninterruptibleWrite(const UninterruptibleWrite&) = delete;
  UninterruptibleWrite& operator=(const UninterruptibleWrite&) = delete;
};

}  // namespace mtalab
