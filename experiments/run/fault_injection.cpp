#include "experiments/run/fault_injection.h"

#include <signal.h>

#include <cerrno>
#include <chrono>
#include <thread>
#include <cstdlib>
#include <map>
#include <mutex>
#include <string>
#include <vector>

namespace mtalab::fault {
namespace {

constexpr int kKill = -1, kSigint = -2, kPause = -3, kStall = -4;

struct Fault {
  std::string point;
  int action = 0;  // kKill, kSigint, kPause, or the errno to fail with
  long nth = 1;    // 1-based occurrence of the point
  bool and_after = false;
};

// Parses MTALAB_FAULT once. A malformed entry is ignored: this is a test hook, and a typo
// must not change how a real run behaves.
std::vector<Fault> parse(const char* spec) {
  std::vector<Fault> out;
  std::string s = spec ? spec : "";
  size_t start = 0;
  while (start < s.size()) {
    size_t end = s.find(',', start);
    if (end == std::string::npos) end = s.size();
    const std::string item = s.substr(start, end - start);
    start = end + 1;
    const size_t at = item.find('@');
    if (at == std::string::npos) continue;
    Fault f;
    const std::string action = item.substr(0, at);
    f.action = action == "kill"     ? kKill
               : action == "sigint" ? kSigint
               : action == "pause"  ? kPause
               : action == "stall"  ? kStall
               : action == "enospc" ? ENOSPC
               : action == "eio"    ? EIO
                                    : 0;
    if (f.action == 0) continue;
    std::string rest = item.substr(at + 1);
    if (!rest.empty() && rest.back() == '+') {
      f.and_after = true;
      rest.pop_back();
    }
    const size_t hash = rest.find('#');
    f.point = rest.substr(0, hash);
    if (hash != std::string::npos) f.nth = std::strtol(rest.c_str() + hash + 1, nullptr, 10);
    if (!f.point.empty() && f.nth >= 1) out.push_back(f);
  }
  return out;
}

}  // namespace

int at(const char* point) {
  static const std::vector<Fault> faults = parse(std::getenv("MTALAB_FAULT"));
  if (faults.empty()) return 0;
  static std::mutex mu;
  static std::map<std::string, long> seen;
  std::lock_guard<std::mutex> g(mu);
  const long n = ++seen[point];
  for (const auto& f : faults) {
    if (f.point != point || (f.and_after ? n < f.nth : n != f.nth)) continue;
    if (f.action == kKill) ::raise(SIGKILL);
    if (f.action == kSigint) ::raise(SIGINT);
    // Time for a test to send signals; sleep_for resumes after each handler runs.
    if (f.action == kPause) std::this_thread::sleep_for(std::chrono::milliseconds(500));
    // A rank that hangs (another rank's exchange must time out): ten minutes, signals included.
    if (f.action == kStall) {
      const auto until = std::chrono::steady_clock::now() + std::chrono::minutes(10);
      while (std::chrono::steady_clock::now() < until) std::this_thread::sleep_for(std::chrono::milliseconds(100));
    }
    return f.action > 0 ? f.action : 0;
  }
  return 0;
}

}  // namespace mtalab::fault
