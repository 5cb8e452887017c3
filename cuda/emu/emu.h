// The CUDA emulator: runs mtalab's CUDA kernels, unchanged, on the CPU.
//
// The same cuda/*.cu file compiles twice: with nvcc for the GPU, and with g++ over the
// stand-in headers of this folder (cuda_runtime.h, cublas_v2.h), which come first on the
// include path of the emulated build (-DMTALAB_CUDA=EMU). There, every CUDA thread of a
// launch is a fiber (Boost.Context's fcontext: a stack switch, no system call). The
// blocks of a grid run one after another on the calling thread; inside a block a
// scheduler runs each fiber until it reaches __syncthreads, a warp intrinsic or its end,
// and releases a barrier only when every live thread of the block is there, a warp
// operation only when every lane of its mask is. What a GPU leaves undefined, it
// reports as an error naming the kernel, the block, the thread and the source line:
// divergent barriers (some threads exited, or wait at another __syncthreads), warp
// masks naming lanes that exited, do not exist or disagree, a lane reading a lane that
// does not take part, deadlocks, launch limits (1024 threads, grid y/z <= 65535, 48 KiB
// of dynamic shared memory without opt-in) and host pointers passed as kernel arguments.
//
// The order in which threads run between two synchronisation points is selectable
// (MTALAB_EMU_ORDER = forward, reverse or random, seeded by MTALAB_EMU_SEED): a missing
// __syncthreads that one order hides, another shows. cudaMalloc memory and dynamic shared
// memory start as all-ones bytes (NaN in float and double, -1 in integers), because a GPU
// does not zero them either. Allocations are exact-size heap blocks and fiber switches
// are annotated for AddressSanitizer, so an ASan build reports out-of-bounds global and
// shared memory accesses with the kernel's line.
//
// What it cannot show: timing, occupancy, memory-model and inter-block races (blocks
// never overlap), stream overlap (everything is synchronous) and reads of uninitialised
// static __shared__ memory (it is a zeroed static here).
#pragma once
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <functional>
#include <stdexcept>
#include <string>
#include <tuple>
#include <type_traits>
#include <utility>

struct uint3 {
  unsigned x, y, z;
};
struct dim3 {
  unsigned x, y, z;
  constexpr dim3(unsigned vx = 1, unsigned vy = 1, unsigned vz = 1) : x(vx), y(vy), z(vz) {}
  constexpr dim3(uint3 v) : x(v.x), y(v.y), z(v.z) {}
};

namespace mtalab::emu {

// A kernel did something a GPU leaves undefined, or a launch broke a limit.
struct KernelError : std::runtime_error {
  using std::runtime_error::runtime_error;
};

enum class Order { forward, reverse, random };
void set_order(Order o, uint64_t seed = 1);  // default from MTALAB_EMU_ORDER / MTALAB_EMU_SEED
Order order();
const char* order_name(Order o);

// --- inside a kernel ---------------------------------------------------------------
const uint3& thread_idx();
const uint3& block_idx();
const dim3& block_dim();
const dim3& grid_dim();
void* dynamic_smem();
void syncthreads(const char* file, int line);

enum class WarpOp { shfl, shfl_up, shfl_down, shfl_xor, ballot, any, all, sync, collective };
// One warp-wide operation: the calling lane waits until every lane of `mask` has called
// the same operation, then gets its result (a value's bits, or the ballot).
uint64_t warp_op(WarpOp op, unsigned mask, uint64_t value, int arg, int width, const char* file, int line);
template <typename T>
T warp_value(WarpOp op, unsigned mask, T v, int arg, int width, const char* file, int line) {
  static_assert(sizeof(T) <= 8 && std::is_trivially_copyable_v<T>, "warp shuffles move values of up to 8 bytes");
  uint64_t bits = 0;
  std::memcpy(&bits, &v, sizeof(T));
  const uint64_t r = warp_op(op, mask, bits, arg, width, file, line);
  T out;
  std::memcpy(&out, &r, sizeof(T));
  return out;
}

// A warp-collective instruction on per-lane registers (tensor-core mma.sync, ldmatrix):
// each lane of `mask` passes a pointer to its own operand/result registers; once every lane
// has arrived, `fn` runs once with the 32 pointers (nullptr outside the mask) and computes
// every lane's results, then the lanes continue. `name` names the instruction in errors;
// lanes of one collective must pass the same fn. fn may throw KernelError.
using WarpCollectiveFn = void (*)(void* const lanes[32], unsigned mask);
void warp_collective(unsigned mask, void* lane_data, WarpCollectiveFn fn, const char* name, const char* file, int line);

// cp.async (sm_80): a 16-byte global-to-shared copy that completes at the issuing thread's
// matching cp.async.wait_group. Here the copy's bytes are taken at issue, the destination
// holds all-ones bytes (NaN in float and bfloat16) until the wait, and only then the data:
// reading it before the wait gives NaN. `src` nullptr zero-fills (src-size 0). Misaligned
// addresses and a source outside device memory are errors naming the line.
void cp_async16(void* dst, const void* src, const char* file, int line);
void cp_async_commit();
// Completes every committed group but the newest `pending` ones (cp.async.wait_group N).
void cp_async_wait(int pending, const char* file, int line);

// --- memory ------------------------------------------------------------------------
void* device_alloc(size_t nbytes);  // all-ones bytes; nullptr when out of memory
bool device_free(void* p);          // false if p is not a live allocation
// The live allocation holding [p, p + nbytes), or false.
bool is_device_range(const void* p, size_t nbytes);
size_t device_bytes_in_use();

// --- launches ----------------------------------------------------------------------
struct Launch {
  const char* name;
  const void* kernel;  // identity for cudaFuncSetAttribute
  dim3 grid, block;
  size_t smem;
};
void set_max_dynamic_smem(const void* kernel, int bytes);
// Runs body once per CUDA thread of every block; throws KernelError.
void run_grid(const Launch& l, const std::function<void()>& body);
// Throws KernelError when argument `index` is a pointer into no device allocation.
void check_pointer_arg(const Launch& l, int index, const void* p);
std::string shape_str(const Launch& l);  // "<<<(g.x,g.y,g.z), (b.x,b.y,b.z), smem>>>"

namespace detail {
template <typename T>
void check_arg(const Launch& l, int index, const T& v) {
  if constexpr (std::is_pointer_v<T>) check_pointer_arg(l, index, (const void*)v);
}
}  // namespace detail

// kernel<<<grid, block, smem>>>(args...). The arguments are converted to the kernel's
// parameter types once, as CUDA copies them to the device; every thread gets a copy.
template <typename... KArgs, typename... Args>
void launch(const char* name, void (*kernel)(KArgs...), dim3 grid, dim3 block, size_t smem, Args&&... args) {
  static_assert(sizeof...(KArgs) == sizeof...(Args), "kernel launched with the wrong number of arguments");
  const Launch l{name, (const void*)kernel, grid, block, smem};
  const std::tuple<std::decay_t<KArgs>...> params(std::forward<Args>(args)...);
  std::apply([&](const auto&... p) {
    int i = 0;
    (detail::check_arg(l, i++, p), ...);
  }, params);
  run_grid(l, [&] {
    auto copy = params;
    std::apply(kernel, copy);
  });
}

// Counters for tests and reports.
struct Stats {
  uint64_t launches = 0, blocks = 0, threads = 0, barriers = 0, warp_ops = 0;
  uint64_t collectives = 0;  // warp collectives (tensor-core mma.sync, ldmatrix) among warp_ops
};
Stats stats();

}  // namespace mtalab::emu
