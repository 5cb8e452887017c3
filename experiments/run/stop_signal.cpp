#include "experiments/run/stop_signal.h"

#include <signal.h>
#include <unistd.h>

#include <atomic>
#include <csignal>

namespace mtalab {

namespace {

// Lock-free atomics: the handler may touch nothing else.
std::atomic<int> g_signal{0};
std::atomic<int> g_writing{0};       // nesting depth of UninterruptibleWrite
std::atomic<bool> g_exit_due{false};  // a second signal came during a write

void say(const char* msg) {
  size_t n = 0;
  while (msg[n]) ++n;
  (void)!::write(STDERR_FILENO, msg, n);
}

[[noreturn]] void exit_now() {
  say("mtalab: second signal: exiting now; the log holds every row up to its last flush and the checkpoint the "
      "last step it saved (continue with --resume)\n");
  ::_exit(130);
}

void on_stop(int sig) {
  int none = 0;
  if (g_signal.compare_exchange_strong(none, sig)) {
    say("mtalab: stopping after the current step (log and checkpoint will be saved; signal again to exit at once)\n");
    return;
  }
  // Marked before the check: the handler may run on another thread (OpenMP workers) while
  // ~UninterruptibleWrite runs, and then one of the two sees the other and exits.
  g_exit_due = true;
  if (g_writing == 0) exit_now();  // else ~UninterruptibleWrite exits once the write is done
}

}  // namespace

void install_stop_handlers() {
  g_signal = 0;
  g_exit_due = false;
  struct sigaction sa {};
  sa.sa_handler = on_stop;
  sigemptyset(&sa.sa_mask);
  sa.sa_flags = SA_RESTART;  // a write interrupted by the first signal just carries on
  sigaction(SIGINT, &sa, nullptr);
  sigaction(SIGTERM, &sa, nullptr);
  std::signal(SIGPIPE, SIG_IGN);
  // A launcher (mtalab sweep) starts runs with the stop signals blocked so that one sent
  // before this point waits for the handlers; it is delivered here, as a stop request.
  sigset_t stop;
  sigemptyset(&stop);
  sigaddset(&stop, SIGINT);
  sigaddset(&stop, SIGTERM);
  sigprocmask(SIG_UNBLOCK, &stop, nullptr);
}

int stop_signal() { return g_signal; }

UninterruptibleWrite::UninterruptibleWrite() { ++g_writing; }

UninterruptibleWrite::~UninterruptibleWrite() {
  if (--g_writing == 0 && g_exit_due) exit_now();
}

}  // namespace mtalab
