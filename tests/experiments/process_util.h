// Running the real `mtalab` binary as a child process: argument lists without a shell,
// extra environment (MTALAB_FAULT), resource limits, and children that are killed and
// reaped however a test ends. MTALAB_TEST_BIN overrides the binary (to run these tests
// against another build, e.g. the previous commit's, and see which fail there).
#pragma once
#include <signal.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cstdlib>
#include <fcntl.h>
#include <filesystem>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "test_util.h"

namespace mtalab::testing {

inline std::string mtalab_bin() {
  const char* over = std::getenv("MTALAB_TEST_BIN");
  return over && *over ? over : std::string(MTALAB_BINARY_DIR) + "/mtalab";
}

inline std::vector<std::string> split_words(const std::string& s) {
  std::istringstream in(s);
  std::vector<std::string> out;
  for (std::string w; in >> w;) out.push_back(w);
  return out;
}

struct ProcResult {
  int code = -1;    // exit code, or -1 when killed by a signal
  int signal = 0;   // the signal that killed it
  std::string out, err;
};

struct SpawnOptions {
  std::vector<std::string> env;  // NAME=value entries, added or replacing the inherited ones
  long address_space = 0;        // RLIMIT_AS in bytes (0: unlimited)
};

// A running mtalab child; killed (SIGKILL) and reaped by the destructor if still running.
class Child {
 public:
  Child(const std::filesystem::path& cwd, const std::vector<std::string>& args, const SpawnOptions& o = {})
      : out_((cwd / ("stdout." + std::to_string(counter()))).string()),
        err_((cwd / ("stderr." + std::to_string(counter()))).string()) {
    ++counter();
    const std::string bin = mtalab_bin();
    // Everything the child needs is built before fork: after it, only async-signal-safe calls.
    std::vector<std::string> argv_s{bin};
    argv_s.insert(argv_s.end(), args.begin(), args.end());
    std::vector<char*> argv;
    for (auto& a : argv_s) argv.push_back(a.data());
    argv.push_back(nullptr);
    std::vector<std::string> env_s{"OMP_NUM_THREADS=1"};
    auto replaced = [&](const std::string& e) {
      for (const auto& x : o.env) {
        const auto eq = x.find('=');
        if (eq != std::string::npos && e.compare(0, eq + 1, x, 0, eq + 1) == 0) return true;
      }
      return false;
    };
    for (char** e = environ; *e; ++e)
      if (std::string(*e).rfind("OMP_NUM_THREADS=", 0) != 0 && std::string(*e).rfind("MTALAB_FAULT=", 0) != 0 &&
          !replaced(*e))
        env_s.emplace_back(*e);
    env_s.insert(env_s.end(), o.env.begin(), o.env.end());
    std::vector<char*> envp;
    for (auto& e : env_s) envp.push_back(e.data());
    envp.push_back(nullptr);
    const std::string dir = cwd.string();
    std::fflush(nullptr);
    pid_ = ::fork();
    if (pid_ == 0) {
      if (::chdir(dir.c_str()) != 0) ::_exit(99);
      const int fo = ::open(out_.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644);
      const int fe = ::open(err_.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644);
      if (fo < 0 || fe < 0 || ::dup2(fo, 1) < 0 || ::dup2(fe, 2) < 0) ::_exit(98);
      if (o.address_space > 0) {
        struct rlimit rl = {(rlim_t)o.address_space, (rlim_t)o.address_space};
        ::setrlimit(RLIMIT_AS, &rl);
      }
      ::execve(argv[0], argv.data(), envp.data());
      ::_exit(97);
    }
  }
  ~Child() {
    if (pid_ > 0 && pid_ended_ < 0) {
      ::kill(pid_, SIGKILL);
      ::waitpid(pid_, nullptr, 0);
    }
  }
  Child(const Child&) = delete;
  Child& operator=(const Child&) = delete;

  pid_t pid() const { return pid_; }
  void signal(int sig) const {
    if (pid_ > 0) ::kill(pid_, sig);
  }
  std::string out() const { return bytes_of(out_); }
  std::string err() const { return bytes_of(err_); }
  // Polls until `pred(stdout)` holds or `seconds` pass; false on timeout or if the child ended.
  template <class P>
  bool wait_for_output(P pred, double seconds = 30) const {
    const auto end = std::chrono::steady_clock::now() + std::chrono::duration<double>(seconds);
    while (std::chrono::steady_clock::now() < end) {
      if (pred(out())) return true;
      if (ended()) return pred(out());
      std::this_thread::sleep_for(std::chrono::milliseconds(5));
    }
    return false;
  }
  // True once the child has ended (its status kept for wait()).
  bool ended() const {
    int st = 0;
    if (pid_ended_ < 0 && pid_ > 0 && ::waitpid(pid_, &st, WNOHANG) == pid_) pid_ended_ = st;
    return pid_ended_ >= 0;
  }
  ProcResult wait() {
    int st = 0;
    if (pid_ended_ >= 0)
      st = pid_ended_;
    else if (pid_ > 0)
      ::waitpid(pid_, &st, 0);
    pid_ = -1;
    ProcResult r;
    if (WIFEXITED(st)) r.code = WEXITSTATUS(st);
    if (WIFSIGNALED(st)) r.signal = WTERMSIG(st);
    r.out = out();
    r.err = err();
    return r;
  }

 private:
  static int& counter() {
    static int n = 0;
    return n;
  }
  pid_t pid_ = -1;
  mutable int pid_ended_ = -1;
  std::string out_, err_;
};

inline ProcResult run_mtalab(const std::filesystem::path& cwd, const std::vector<std::string>& args,
                             const SpawnOptions& o = {}) {
  Child c(cwd, args, o);
  return c.wait();
}

inline ProcResult run_mtalab(const std::filesystem::path& cwd, const std::string& args, const SpawnOptions& o = {}) {
  return run_mtalab(cwd, split_words(args), o);
}

}  // namespace mtalab::testing
