#include "experiments/commands/slurm_client.h"

#include <fcntl.h>
#include <poll.h>
#include <pwd.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <cstdlib>
#include <sstream>

#include "autograd/errors.h"
#include "experiments/run/atomic_file.h"

namespace mtalab {

Captured capture(const std::vector<std::string>& argv, const std::string& input, bool ignore_term) {
  Captured c;
  const std::string exe = find_on_path(argv.at(0));
  if (exe.empty()) {
    c.code = 127;
    c.err = argv[0] + ": not found on PATH";
    return c;
  }
  std::vector<std::string> args = argv;
  std::vector<char*> argv_c;
  for (auto& a : args) argv_c.push_back(a.data());
  argv_c.push_back(nullptr);
  int in[2], out[2], err[2];
  if (pipe2(in, O_CLOEXEC) != 0) throw IoError("pipe: " + errno_text(errno));
  if (pipe2(out, O_CLOEXEC) != 0 || pipe2(err, O_CLOEXEC) != 0) throw IoError("pipe: " + errno_text(errno));
  std::fflush(nullptr);
  const pid_t pid = fork();
  if (pid == 0) {
    if (ignore_term) signal(SIGTERM, SIG_IGN);
    signal(SIGUSR1, SIG_DFL);
    signal(SIGINT, SIG_DFL);
    dup2(in[0], 0);
    dup2(out[1], 1);
    dup2(err[1], 2);
    execv(exe.c_str(), argv_c.data());
    _exit(127);
  }
  ::close(in[0]);
  ::close(out[1]);
  ::close(err[1]);
  if (pid < 0) {
    ::close(in[1]);
    ::close(out[0]);
    ::close(err[0]);
    throw IoError("cannot start " + argv[0] + ": fork: " + errno_text(errno));
  }
  // A batch script fits a pipe's buffer: written whole before the output is read.
  for (size_t done = 0; done < input.size();) {
    const ssize_t n = ::write(in[1], input.data() + done, input.size() - done);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) break;
    done += (size_t)n;
  }
  ::close(in[1]);
  struct pollfd fds[2] = {{out[0], POLLIN, 0}, {err[0], POLLIN, 0}};
  std::string* into[2] = {&c.out, &c.err};
  int open_fds = 2;
  while (open_fds > 0) {
    if (poll(fds, 2, -1) < 0) {
      if (errno == EINTR) continue;
      break;
    }
    for (int i = 0; i < 2; ++i) {
      if (fds[i].fd < 0 || !(fds[i].revents & (POLLIN | POLLHUP | POLLERR))) continue;
      char buf[4096];
      const ssize_t n = ::read(fds[i].fd, buf, sizeof buf);
      if (n > 0) {
        into[i]->append(buf, (size_t)n);
      } else if (n == 0 || errno != EINTR) {
        ::close(fds[i].fd);
        fds[i].fd = -1;
        --open_fds;
      }
    }
  }
  int status = 0;
  while (waitpid(pid, &status, 0) < 0 && errno == EINTR) {
  }
  c.code = WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
  return c;
}

std::string one_line(const std::string& output) {
  std::string out;
  std::istringstream in(output);
  for (std::string line; std::getline(in, line);) {
    for (const char* p : {"sbatch: error: ", "squeue: error: ", "scontrol: error: ", "sbatch: ", "squeue: ", "scontrol: "})
      if (line.rfind(p, 0) == 0) {
        line.erase(0, std::string(p).size());
        break;
      }
    if (!line.empty()) out += (out.empty() ? "" : "; ") + line;
  }
  return out;
}

std::string find_on_path(const std::string& name) {
  if (name.find('/') != std::string::npos) return access(name.c_str(), X_OK) == 0 ? name : "";
  const char* path = std::getenv("PATH");
  std::istringstream in(path ? path : "");
  for (std::string dir; std::getline(in, dir, ':');) {
    const std::string p = (dir.empty() ? "." : dir) + "/" + name;
    if (access(p.c_str(), X_OK) == 0) return p;
  }
  return "";
}

void require_slurm_clients() {
  std::string missing;
  for (const char* c : {"sbatch", "squeue", "scontrol"})
    if (find_on_path(c).empty()) missing += (missing.empty() ? "" : ", ") + std::string(c);
  if (!missing.empty())
    throw InputError("--launcher slurm: " + missing + " not found on PATH (expected Slurm's client commands, " +
                     "e.g. Debian's slurm-client; without Slurm, run the sweep here without --launcher slurm)");
}

std::map<std::string, SlurmTask> slurm_queue() {
  const passwd* pw = getpwuid(getuid());
  const std::string user = pw ? pw->pw_name : std::to_string(getuid());
  const Captured c = capture({"squeue", "--noheader", "--array", "--user", user, "--Format",
                              "JobArrayID:|,State:|,RestartCnt:|,NodeList:|,Reason:"});
  if (c.code != 0) throw InputError("squeue failed (exit " + std::to_string(c.code) + "): " + one_line(c.err + c.out));
  std::map<std::string, SlurmTask> out;
  std::istringstream in(c.out);
  for (std::string line; std::getline(in, line);) {
    std::vector<std::string> f;
    std::istringstream fields(line);
    for (std::string x; std::getline(fields, x, '|');) {
      const auto b = x.find_first_not_of(' ');
      const auto e = x.find_last_not_of(' ');
      f.push_back(b == std::string::npos ? "" : x.substr(b, e - b + 1));
    }
    if (f.size() < 4 || f[0].empty()) continue;
    SlurmTask t;
    t.state = f[1];
    t.restarts = std::atoi(f[2].c_str());
    t.node = f[3];
    t.reason = f.size() > 4 ? f[4] : "";
    out[f[0]] = t;
  }
  return out;
}

}  // namespace mtalab
