// The processes of one data-parallel training run: rank and world size, and the few
// exchanges the trainer needs, over MPI point-to-point messages.
//
// A process is part of a larger run only when a launcher started it (mpirun/mpiexec set
// OMPI_COMM_WORLD_SIZE, srun --mpi=pmix sets PMIX_RANK, MPICH-style launchers PMI_RANK);
// a plain `mtalab train` never initialises MPI and is a world of one. A build without MPI
// refuses to run as one rank of several (it would train alone and write the same files).
//
// No exchange waits forever: every wait polls a nonblocking request until a deadline
// (--train.dist_timeout) and then throws CommError naming the peer and what was awaited.
// That is how a rank that died or hangs stops the others within the timeout, even under
// launchers that do not kill the job when one process dies.
#pragma once
#include <cstdint>
#include <stdexcept>
#include <string>
#include <vector>

namespace mtalab::dist {

// A peer did not answer in time, or MPI reported an error: the run cannot continue.
struct CommError : std::runtime_error {
  using std::runtime_error::runtime_error;
};

// Starts MPI when a launcher started this process (see above); otherwise nothing.
// Throws InputError when launched as one of several ranks by a build without MPI.
void init_from_environment();
// MPI_Finalize, when MPI was started and no exchange failed (after a failure a peer may be
// gone and finalising could wait for it; the launcher cleans up). `stopped_by_signal`: the
// launcher is ending the job (mpirun turns SIGINT into SIGTERM to every rank) and would
// never complete finalize's handshake with it; the process just exits.
void finalize(bool stopped_by_signal = false);

int rank();        // 0 in a world of one
int size();        // 1 in a world of one
int local_rank();  // the rank among this machine's processes (chooses the GPU)
bool built_with_mpi();
const char* launcher();  // "mpirun", "srun/pmix", "pmi" or "none"

// Seconds any one wait may take before it is a CommError (default 60).
void set_timeout(double seconds);
double timeout();

// Point-to-point bytes. `what` names the message in a timeout's error.
void send(const std::vector<char>& bytes, int to, int tag, const char* what);
std::vector<char> recv(int from, int tag, const char* what);

// Nonblocking point-to-point, for exchanges progressed while backward runs
// (dist/bucketed_sum.h). The buffer must stay alive and unchanged until the request completes.
using Request = int;  // an index into the communicator's requests; -1: none (or complete)
Request isend(const void* data, size_t bytes, int to, int tag, const char* what);
Request irecv(void* data, size_t capacity, int from, int tag, const char* what);
// True once complete (the request is then -1); never waits.
bool test(Request& r, const char* what);
// Polls until complete or --train.dist_timeout has passed (CommError naming `peer`).
void wait_for(Request& r, int peer, const char* what);

// Every rank's string, in rank order, on every rank (through rank 0).
std::vector<std::string> allgather(const std::string& mine, const char* what);

// FNV-1a 64 of bytes, and of a file's contents ("" when it cannot be read: the error is
// the reader's to report).
uint64_t fnv1a(const void* data, size_t n, uint64_t h = 1469598103934665603ull);
std::string file_hash(const std::string& path);

}  // namespace mtalab::dist
