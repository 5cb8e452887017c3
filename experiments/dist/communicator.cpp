#include "experiments/dist/communicator.h"

#include <time.h>

#include <chrono>
#include <climits>
#include <cstdlib>
#include <cstring>
#include <fstream>

#include "autograd/errors.h"

#ifdef MTALAB_HAVE_MPI
#define OMPI_SKIP_MPICXX 1  // the C API only: the C++ bindings are deprecated and need libmpi_cxx
#define MPICH_SKIP_MPICXX 1
#include <mpi.h>
#endif

namespace mtalab::dist {

namespace {

int g_rank = 0, g_size = 1, g_local = 0;
bool g_mpi = false;     // MPI_Init was called
bool g_failed = false;  // an exchange failed: do not finalise
double g_timeout = 60;
const char* g_launcher = "none";

int env_int(const char* name, int fallback) {
  const char* v = std::getenv(name);
  return v && *v ? std::atoi(v) : fallback;
}

#ifdef MTALAB_HAVE_MPI
using Clock = std::chrono::steady_clock;

[[noreturn]] void fail(const std::string& what) {
  g_failed = true;
  throw CommError("rank " + std::to_string(g_rank) + ": " + what);
}

void check(int rc, const char* call, const char* what) {
  if (rc == MPI_SUCCESS) return;
  char text[MPI_MAX_ERROR_STRING] = {0};
  int len = 0;
  MPI_Error_string(rc, text, &len);
  fail(std::string(call) + " failed while exchanging " + what + ": " + text);
}

// Backs off from spinning to short sleeps: a waiting rank must not take the core the rank
// it waits for needs (two ranks on two shared cores).
struct Poll {
  Clock::time_point deadline = Clock::now() + std::chrono::duration_cast<Clock::duration>(
                                                  std::chrono::duration<double>(g_timeout));
  int spins = 0;
  bool expired() const { return Clock::now() > deadline; }
  void pause() {
    if (++spins < 200) return;
    timespec ts{0, spins < 2000 ? 20000L : 200000L};
    nanosleep(&ts, nullptr);
  }
};

[[noreturn]] void timed_out(int peer, const char* what, const char* verb) {
  char secs[32];
  std::snprintf(secs, sizeof secs, "%g", g_timeout);
  fail(std::string("no ") + verb + " rank " + std::to_string(peer) + " within " + secs + " s while exchanging " +
       what + " (that rank died, hangs or is far behind; --train.dist_timeout sets the limit)");
}

void wait(MPI_Request* req, int peer, const char* what, const char* verb) {
  Poll poll;
  for (;;) {
    int done = 0;
    check(MPI_Test(req, &done, MPI_STATUS_IGNORE), "MPI_Test", what);
    if (done) return;
    if (poll.expired()) {
      MPI_Cancel(req);
      timed_out(peer, what, verb);
    }
    poll.pause();
  }
}
#endif

}  // namespace

void init_from_environment() {
  int size = 1;
  if (const char* s = std::getenv("OMPI_COMM_WORLD_SIZE")) {
    size = std::atoi(s);
    g_launcher = "mpirun";
  } else if (std::getenv("PMIX_RANK")) {
    size = env_int("SLURM_NTASKS", env_int("PMIX_SIZE", 2));  // srun --mpi=pmix
    g_launcher = "srun/pmix";
  } else if (std::getenv("PMI_RANK")) {
    size = env_int("PMI_SIZE", 2);
    g_launcher = "pmi";
  }
  if (std::string(g_launcher) == "none") return;
#ifdef MTALAB_HAVE_MPI
  (void)size;
  if (g_mpi) return;
  int provided = 0;
  if (MPI_Init_thread(nullptr, nullptr, MPI_THREAD_FUNNELED, &provided) != MPI_SUCCESS)
    throw CommError("MPI_Init failed (launched by " + std::string(g_launcher) + ")");
  g_mpi = true;
  MPI_Comm_set_errhandler(MPI_COMM_WORLD, MPI_ERRORS_RETURN);
  MPI_Comm_rank(MPI_COMM_WORLD, &g_rank);
  MPI_Comm_size(MPI_COMM_WORLD, &g_size);
  MPI_Comm local;
  MPI_Comm_split_type(MPI_COMM_WORLD, MPI_COMM_TYPE_SHARED, g_rank, MPI_INFO_NULL, &local);
  MPI_Comm_rank(local, &g_local);
  MPI_Comm_free(&local);
#else
  if (size > 1)
    throw InputError(std::string("this mtalab was built without MPI but was started by ") + g_launcher +
                     " as one of " + std::to_string(size) +
                     " processes; expected a build with MPI (install libopenmpi-dev, reconfigure) or a single process");
#endif
}

void finalize(bool stopped_by_signal) {
#ifdef MTALAB_HAVE_MPI
  if (g_mpi && !g_failed && !stopped_by_signal) {
    int done = 0;
    MPI_Finalized(&done);
    if (!done) MPI_Finalize();
  }
#endif
}

int rank() { return g_rank; }
int size() { return g_size; }
int local_rank() { return g_local; }
const char* launcher() { return g_launcher; }
bool built_with_mpi() {
#ifdef MTALAB_HAVE_MPI
  return true;
#else
  return false;
#endif
}

void set_timeout(double seconds) { g_timeout = seconds; }
double timeout() { return g_timeout; }

void send(const std::vector<char>& bytes, int to, int tag, const char* what) {
#ifdef MTALAB_HAVE_MPI
  if (bytes.size() > (size_t)INT_MAX) fail(std::string(what) + " is over 2 GiB in one message");
  MPI_Request req;
  check(MPI_Isend(bytes.data(), (int)bytes.size(), MPI_BYTE, to, tag, MPI_COMM_WORLD, &req), "MPI_Isend", what);
  wait(&req, to, what, "receive by");
#else
  throw std::logic_error("dist::send without MPI");
#endif
}

std::vector<char> recv(int from, int tag, const char* what) {
#ifdef MTALAB_HAVE_MPI
  Poll poll;
  MPI_Status st;
  for (;;) {
    int flag = 0;
    check(MPI_Iprobe(from, tag, MPI_COMM_WORLD, &flag, &st), "MPI_Iprobe", what);
    if (flag) break;
    if (poll.expired()) timed_out(from, what, "message from");
    poll.pause();
  }
  int count = 0;
  MPI_Get_count(&st, MPI_BYTE, &count);
  std::vector<char> bytes((size_t)count);
  check(MPI_Recv(bytes.data(), count, MPI_BYTE, from, tag, MPI_COMM_WORLD, MPI_STATUS_IGNORE), "MPI_Recv", what);
  return bytes;
#else
  throw std::logic_error("dist::recv without MPI");
#endif
}

#ifdef MTALAB_HAVE_MPI
namespace {
std::vector<MPI_Request> g_requests;  // slots; MPI_REQUEST_NULL: free
Request keep(MPI_Request req) {
  for (size_t i = 0; i < g_requests.size(); ++i)
    if (g_requests[i] == MPI_REQUEST_NULL) {
      g_requests[i] = req;
      return (Request)i;
    }
  g_requests.push_back(req);
  return (Request)g_requests.size() - 1;
}
}  // namespace
#endif

Request isend(const void* data, size_t bytes, int to, int tag, const char* what) {
#ifdef MTALAB_HAVE_MPI
  if (bytes > (size_t)INT_MAX) fail(std::string(what) + " is over 2 GiB in one message");
  MPI_Request req;
  check(MPI_Isend(data, (int)bytes, MPI_BYTE, to, tag, MPI_COMM_WORLD, &req), "MPI_Isend", what);
  return keep(req);
#else
  throw std::logic_error("dist::isend without MPI");
#endif
}

Request irecv(void* data, size_t capacity, int from, int tag, const char* what) {
#ifdef MTALAB_HAVE_MPI
  if (capacity > (size_t)INT_MAX) fail(std::string(what) + " is over 2 GiB in one message");
  MPI_Request req;
  check(MPI_Irecv(data, (int)capacity, MPI_BYTE, from, tag, MPI_COMM_WORLD, &req), "MPI_Irecv", what);
  return keep(req);
#else
  throw std::logic_error("dist::irecv without MPI");
#endif
}

bool test(Request& r, const char* what) {
#ifdef MTALAB_HAVE_MPI
  if (r < 0) return true;
  int done = 0;
  check(MPI_Test(&g_requests[(size_t)r], &done, MPI_STATUS_IGNORE), "MPI_Test", what);
  if (done) {
    g_requests[(size_t)r] = MPI_REQUEST_NULL;
    r = -1;
  }
  return done != 0;
#else
  return r < 0;
#endif
}

void wait_for(Request& r, int peer, const char* what) {
#ifdef MTALAB_HAVE_MPI
  if (r < 0) return;
  wait(&g_requests[(size_t)r], peer, what, "exchange with");
  g_requests[(size_t)r] = MPI_REQUEST_NULL;
  r = -1;
#endif
}

namespace {
void put_string(std::vector<char>& out, const std::string& s) {
  const uint64_t n = s.size();
  out.insert(out.end(), (const char*)&n, (const char*)&n + sizeof n);
  out.insert(out.end(), s.begin(), s.end());
}
}  // namespace

std::vector<std::string> allgather(const std::string& mine, const char* what) {
  if (g_size == 1) return {mine};
  constexpr int kTag = 7;
  std::vector<char> all;
  if (g_rank == 0) {
    put_string(all, mine);
    for (int r = 1; r < g_size; ++r) {
      std::vector<char> b = recv(r, kTag, what);
      put_string(all, std::string(b.begin(), b.end()));
    }
    for (int r = 1; r < g_size; ++r) send(all, r, kTag, what);
  } else {
    send(std::vector<char>(mine.begin(), mine.end()), 0, kTag, what);
    all = recv(0, kTag, what);
  }
  std::vector<std::string> out;
  size_t at = 0;
  while (at + sizeof(uint64_t) <= all.size()) {
    uint64_t n;
    std::memcpy(&n, all.data() + at, sizeof n);
    at += sizeof n;
    out.emplace_back(all.data() + at, all.data() + at + n);
    at += n;
  }
  return out;
}

uint64_t fnv1a(const void* data, size_t n, uint64_t h) {
  const unsigned char* p = (const unsigned char*)data;
  for (size_t i = 0; i < n; ++i) h = (h ^ p[i]) * 1099511628211ull;
  return h;
}

std::string file_hash(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) return "";
  uint64_t h = 1469598103934665603ull;
  std::vector<char> buf(1 << 16);
  while (in) {
    in.read(buf.data(), (std::streamsize)buf.size());
    h = fnv1a(buf.data(), (size_t)in.gcount(), h);
  }
  char s[20];
  std::snprintf(s, sizeof s, "%016llx", (unsigned long long)h);
  return s;
}

}  // namespace mtalab::dist
