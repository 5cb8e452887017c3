// The emulator's block scheduler: every CUDA thread a fiber, released at barriers and
// warp operations only when all participants have arrived (see emu.h).
#include <sys/mman.h>
#include <unistd.h>

#include <boost/context/detail/fcontext.hpp>

#include <algorithm>
#include <cstdlib>
#include <map>
#include <mutex>
#include <random>
#include <sstream>
#include <vector>

#include "emu.h"

#if defined(__SANITIZE_ADDRESS__)
#include <sanitizer/asan_interface.h>
#include <sanitizer/common_interface_defs.h>
#define MTALAB_EMU_ASAN 1
#else
#define MTALAB_EMU_ASAN 0
#endif

namespace mtalab::emu {
namespace {

namespace bctx = boost::context::detail;

// ---- configuration ----------------------------------------------------------------
struct Config {
  Order order = Order::forward;
  uint64_t seed = 1;
  size_t stack_bytes = 64 * 1024;
};
Config& config() {
  static Config c = [] {
    Config k;
    if (const char* o = std::getenv("MTALAB_EMU_ORDER")) {
      const std::string s = o;
      if (s == "reverse") k.order = Order::reverse;
      else if (s == "random") k.order = Order::random;
      else if (s != "forward" && !s.empty())
        throw std::runtime_error("MTALAB_EMU_ORDER='" + s + "' (expected forward, reverse or random)");
    }
    if (const char* v = std::getenv("MTALAB_EMU_SEED")) k.seed = std::strtoull(v, nullptr, 10);
    if (const char* v = std::getenv("MTALAB_EMU_STACK_KB")) k.stack_bytes = std::max(16ul, std::strtoul(v, nullptr, 10)) * 1024;
    return k;
  }();
  return c;
}

Stats g_stats;

// ---- fiber stacks: mmap'ed, a guard page below each, pooled across launches ----------
struct Stack {
  char* base = nullptr;  // lowest usable address
  size_t size = 0;
};
class StackPool {
 public:
  Stack get() {
    if (!free_.empty()) {
      Stack s = free_.back();
      free_.pop_back();
#if MTALAB_EMU_ASAN
      // A fiber abandoned by a failed launch leaves its frames poisoned.
      __asan_unpoison_memory_region(s.base, s.size);
#endif
      return s;
    }
    const size_t page = (size_t)sysconf(_SC_PAGESIZE);
    const size_t size = (config().stack_bytes + page - 1) / page * page;
    void* m = mmap(nullptr, size + page, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (m == MAP_FAILED) throw KernelError("emulator: cannot map a fiber stack");
    mprotect(m, page, PROT_NONE);  // overflow hits the guard page, not a neighbour
    return {static_cast<char*>(m) + page, size};
  }
  void put(const Stack& s) { free_.push_back(s); }

 private:
  std::vector<Stack> free_;
};
StackPool& stacks() {
  static thread_local StackPool p;
  return p;
}

// ---- one block ---------------------------------------------------------------------------
enum class State : uint8_t { ready, barrier, warp, done, faulted };

struct Thread {
  bctx::fcontext_t ctx = nullptr;
  Stack stack;
  uint3 tid{0, 0, 0};
  int linear = 0;
  State state = State::ready;
  const char* file = "";
  int line = 0;
  WarpOp op = WarpOp::sync;
  unsigned mask = 0;
  uint64_t value = 0, result = 0;
  int arg = 0, width = 32;
  WarpCollectiveFn fn = nullptr;  // WarpOp::collective
  const char* op_label = nullptr;
  void* asan_fake = nullptr;
  // cp.async copies not yet waited for: their bytes, taken at issue, and their group
  // (-1: not yet committed).
  struct Copy {
    void* dst;
    unsigned char bytes[16];
    int64_t group;
  };
  std::vector<Copy> copies;
  int64_t groups_committed = 0;
};

struct Block {
  const Launch* launch = nullptr;
  const std::function<void()>* body = nullptr;
  uint3 idx{0, 0, 0};
  std::vector<Thread> threads;
  void* smem = nullptr;
  Thread* current = nullptr;
  bctx::fcontext_t sched = nullptr;  // where a yielding fiber jumps back to
  std::string fault;                  // the first error a thread raised
  const void* sched_stack_bottom = nullptr;
  size_t sched_stack_size = 0;
  void* sched_fake = nullptr;
};
thread_local Block* g_block = nullptr;

Block& block() {
  if (!g_block) throw KernelError("emulator: a device built-in was used outside a kernel launch");
  return *g_block;
}

const char* op_name(WarpOp op) {
  switch (op) {
    case WarpOp::collective: return "warp collective";
    case WarpOp::shfl: return "__shfl_sync";
    case WarpOp::shfl_up: return "__shfl_up_sync";
    case WarpOp::shfl_down: return "__shfl_down_sync";
    case WarpOp::shfl_xor: return "__shfl_xor_sync";
    case WarpOp::ballot: return "__ballot_sync";
    case WarpOp::any: return "__any_sync";
    case WarpOp::all: return "__all_sync";
    case WarpOp::sync: return "__syncwarp";
  }
  return "?";
}

std::string dim_str(uint3 v) {
  return "(" + std::to_string(v.x) + "," + std::to_string(v.y) + "," + std::to_string(v.z) + ")";
}
const char* op_name(const Thread& t) { return t.op == WarpOp::collective && t.op_label ? t.op_label : op_name(t.op); }

std::string where(const Block& b, const Thread& t) {
  return "kernel '" + std::string(b.launch->name) + "' " + shape_str(*b.launch) + " block " + dim_str(b.idx) +
         " thread " + dim_str(t.tid);
}
std::string site(const char* file, int line) { return std::string(file) + ":" + std::to_string(line); }

// ---- switching -----------------------------------------------------------------------
// The fiber side: back to the scheduler; returns when the scheduler resumes this thread.
void yield_to_scheduler(bool final) {
  Block& b = *g_block;
  Thread* t = b.current;
#if MTALAB_EMU_ASAN
  __sanitizer_start_switch_fiber(final ? nullptr : &t->asan_fake, b.sched_stack_bottom, b.sched_stack_size);
#endif
  const bctx::transfer_t tr = bctx::jump_fcontext(b.sched, nullptr);
  Block& nb = *g_block;
  nb.sched = tr.fctx;
#if MTALAB_EMU_ASAN
  __sanitizer_finish_switch_fiber(t->asan_fake, &nb.sched_stack_bottom, &nb.sched_stack_size);
#endif
  (void)final;
  (void)t;
}

void fiber_main(bctx::transfer_t tr) {
  Block& b = *g_block;
  b.sched = tr.fctx;
  Thread* t = b.current;
#if MTALAB_EMU_ASAN
  __sanitizer_finish_switch_fiber(nullptr, &b.sched_stack_bottom, &b.sched_stack_size);
#endif
  try {
    (*b.body)();
    t->state = State::done;
  } catch (const std::exception& e) {
    if (b.fault.empty()) b.fault = where(b, *t) + ": " + e.what();
    t->state = State::faulted;
  } catch (...) {
    if (b.fault.empty()) b.fault = where(b, *t) + ": unknown exception";
    t->state = State::faulted;
  }
  yield_to_scheduler(true);
  std::abort();  // a finished fiber is never resumed
}

// The scheduler side: runs t until it yields.
void resume(Block& b, Thread& t) {
  b.current = &t;
#if MTALAB_EMU_ASAN
  __sanitizer_start_switch_fiber(&b.sched_fake, t.stack.base, t.stack.size);
#endif
  const bctx::transfer_t tr = bctx::jump_fcontext(t.ctx, nullptr);
#if MTALAB_EMU_ASAN
  __sanitizer_finish_switch_fiber(b.sched_fake, nullptr, nullptr);
#endif
  t.ctx = tr.fctx;
  b.current = nullptr;
}

// ---- warps -----------------------------------------------------------------------------
std::string hex(unsigned v) {
  std::ostringstream o;
  o << "0x" << std::hex << v;
  return o.str();
}

int warp_size_of(const Block& b, int warp) {
  const int n = (int)b.threads.size();
  return std::min(32, n - warp * 32);
}

uint64_t warp_result(const Block& b, int warp, const Thread& t, unsigned mask) {
  const int lane = t.linear % 32;
  auto value_of = [&](int src) -> uint64_t {
    if (!(mask >> src & 1u))
      throw KernelError(where(b, t) + ": " + op_name(t) + " at " + site(t.file, t.line) + " reads lane " +
                        std::to_string(src) + ", which does not take part (mask " + hex(mask) + ")");
    return b.threads[warp * 32 + src].value;
  };
  const int w = t.width, seg = lane / w * w, in_seg = lane % w;
  switch (t.op) {
    case WarpOp::shfl: return value_of(seg + ((t.arg % w) + w) % w);
    case WarpOp::shfl_up: return in_seg >= t.arg ? value_of(lane - t.arg) : t.value;
    case WarpOp::shfl_down: return in_seg + t.arg < w ? value_of(lane + t.arg) : t.value;
    case WarpOp::shfl_xor: {
      const int src = lane ^ t.arg;
      return src >= seg && src < seg + w ? value_of(src) : t.value;
    }
    case WarpOp::ballot:
    case WarpOp::any:
    case WarpOp::all: {
      uint64_t ballot = 0;
      for (int k = 0; k < 32; ++k)
        if (mask >> k & 1u) ballot |= (uint64_t)(b.threads[warp * 32 + k].value != 0) << k;
      if (t.op == WarpOp::ballot) return ballot;
      if (t.op == WarpOp::any) return ballot != 0;
      return ballot == mask;
    }
    case WarpOp::sync:
    case WarpOp::collective: return 0;
  }
  return 0;
}

// Performs every warp operation whose lanes have all arrived; throws on one that never
// can. Returns whether any thread was released.
bool resolve_warps(Block& b) {
  bool released = false;
  const int n = (int)b.threads.size();
  for (int warp = 0; warp * 32 < n; ++warp) {
    const int size = warp_size_of(b, warp);
    unsigned handled = 0;
    for (int lane = 0; lane < size; ++lane) {
      Thread& lead = b.threads[warp * 32 + lane];
      if (lead.state != State::warp || (handled >> lane & 1u)) continue;
      const unsigned mask = lead.mask;
      const std::string at = std::string(op_name(lead)) + " at " + site(lead.file, lead.line);
      if (!(mask >> lane & 1u))
        throw KernelError(where(b, lead) + ": " + at + " with mask " + hex(mask) + ", which leaves out the calling lane " +
                          std::to_string(lane));
      if (lead.op != WarpOp::sync && (lead.width < 1 || lead.width > 32 || (lead.width & (lead.width - 1))))
        throw KernelError(where(b, lead) + ": " + at + " with width " + std::to_string(lead.width) +
                          " (expected a power of two up to 32)");
      for (int k = 0; k < 32; ++k) {
        if (!(mask >> k & 1u)) continue;
        if (k >= size)
          throw KernelError(where(b, lead) + ": " + at + " with mask " + hex(mask) + " names lane " + std::to_string(k) +
                            ", which does not exist (this warp has " + std::to_string(size) + " threads)");
        const Thread& o = b.threads[warp * 32 + k];
        if (o.state == State::done)
          throw KernelError(where(b, lead) + ": " + at + " with mask " + hex(mask) + " waits for lane " +
                            std::to_string(k) + ", which has exited");
        if (o.state == State::barrier)
          throw KernelError(where(b, lead) + ": " + at + " with mask " + hex(mask) + " waits for lane " +
                            std::to_string(k) + ", which waits at __syncthreads at " + site(o.file, o.line) +
                            " (deadlock)");
        if (o.op != lead.op || o.mask != mask || o.fn != lead.fn)
          throw KernelError(where(b, lead) + ": lanes of one warp operation disagree: lane " + std::to_string(lane) +
                            " calls " + at + " with mask " + hex(mask) + ", lane " + std::to_string(k) + " calls " +
                            op_name(o) + " at " + site(o.file, o.line) + " with mask " + hex(o.mask));
      }
      if (lead.op == WarpOp::collective) {
        void* lanes[32] = {};
        for (int k = 0; k < 32; ++k)
          if (mask >> k & 1u) lanes[k] = reinterpret_cast<void*>(b.threads[warp * 32 + k].value);
        g_stats.collectives++;
        try {
          lead.fn(lanes, mask);
        } catch (const std::exception& e) {
          throw KernelError(where(b, lead) + ": " + at + ": " + e.what());
        }
      } else {
        for (int k = 0; k < 32; ++k)
          if (mask >> k & 1u) {
            Thread& o = b.threads[warp * 32 + k];
            o.result = warp_result(b, warp, o, mask);
          }
      }
      for (int k = 0; k < 32; ++k)
        if (mask >> k & 1u) b.threads[warp * 32 + k].state = State::ready;
      handled |= mask;
      released = true;
      g_stats.warp_ops++;
    }
  }
  return released;
}

// Releases a barrier every live thread has reached; throws when it cannot be.
bool resolve_barrier(Block& b) {
  int waiting = 0, exited = 0, at_warp = 0;
  const Thread* first = nullptr;
  for (const Thread& t : b.threads) {
    if (t.state == State::barrier) {
      ++waiting;
      if (!first) first = &t;
    }
    exited += t.state == State::done;
    at_warp += t.state == State::warp;
  }
  if (!waiting) return false;
  if (exited)
    throw KernelError(where(b, *first) + ": divergent barrier at " + site(first->file, first->line) + ": " +
                      std::to_string(exited) + " threads exited while " + std::to_string(waiting) + " wait");
  if (at_warp) {
    for (const Thread& t : b.threads)
      if (t.state == State::warp)
        throw KernelError(where(b, t) + ": deadlock: " + op_name(t) + " at " + site(t.file, t.line) +
                          " cannot complete while " + std::to_string(waiting) + " threads wait at __syncthreads at " +
                          site(first->file, first->line));
  }
  for (const Thread& t : b.threads)
    if (t.line != first->line || std::strcmp(t.file, first->file) != 0)
      throw KernelError(where(b, t) + ": threads wait at different barriers: " + site(t.file, t.line) + " and " +
                        site(first->file, first->line) + " (thread " + dim_str(first->tid) + ")");
  for (Thread& t : b.threads) t.state = State::ready;
  g_stats.barriers++;
  return true;
}

class OrderGen {
 public:
  explicit OrderGen(int n) : idx_(n), rng_(config().seed) {
    for (int i = 0; i < n; ++i) idx_[i] = config().order == Order::reverse ? n - 1 - i : i;
  }
  const std::vector<int>& next() {
    if (config().order == Order::random) std::shuffle(idx_.begin(), idx_.end(), rng_);
    return idx_;
  }

 private:
  std::vector<int> idx_;
  std::mt19937_64 rng_;
};

void release_block(Block& b) {
  for (Thread& t : b.threads)
    if (t.stack.base) stacks().put(t.stack);
  b.threads.clear();
}

void run_block(Block& b, OrderGen& order) {
  const dim3 bd = b.launch->block;
  const int n = (int)(bd.x * bd.y * bd.z);
  b.threads.assign(n, Thread{});
  for (int i = 0; i < n; ++i) {
    Thread& t = b.threads[i];
    t.linear = i;
    t.tid = {(unsigned)i % bd.x, (unsigned)i / bd.x % bd.y, (unsigned)i / (bd.x * bd.y)};
    t.stack = stacks().get();
    t.ctx = bctx::make_fcontext(t.stack.base + t.stack.size, t.stack.size, fiber_main);
  }
  g_stats.threads += n;
  for (;;) {
    for (int i : order.next()) {
      Thread& t = b.threads[i];
      if (t.state != State::ready) continue;
      resume(b, t);
      if (t.state == State::faulted) throw KernelError(b.fault);
    }
    // Nobody is ready now: every thread has exited or waits. A wait that can never be
    // released throws from the resolvers, so the loop always ends.
    if (resolve_warps(b) || resolve_barrier(b)) continue;
    for (const Thread& t : b.threads)
      if (t.state != State::done) throw KernelError(where(b, t) + ": emulator: thread neither done nor waiting");
    return;
  }
}

std::map<const void*, int>& smem_optin() {
  static std::map<const void*, int> m;
  return m;
}

void check_limits(const Launch& l) {
  auto bad = [&](const std::string& why) {
    throw KernelError("kernel '" + std::string(l.name) + "' " + shape_str(l) + ": invalid configuration: " + why);
  };
  const uint64_t threads = (uint64_t)l.block.x * l.block.y * l.block.z;
  if (!l.block.x || !l.block.y || !l.block.z || !l.grid.x || !l.grid.y || !l.grid.z) bad("a zero dimension");
  if (threads > 1024) bad(std::to_string(threads) + " threads per block (at most 1024)");
  if (l.block.x > 1024 || l.block.y > 1024 || l.block.z > 64) bad("block dimensions beyond (1024, 1024, 64)");
  if (l.grid.x > 2147483647u || l.grid.y > 65535 || l.grid.z > 65535) bad("grid dimensions beyond (2^31-1, 65535, 65535)");
  auto it = smem_optin().find(l.kernel);
  const size_t limit = it == smem_optin().end() ? 48 * 1024 : (size_t)it->second;
  if (l.smem > limit)
    bad(std::to_string(l.smem) + " bytes of dynamic shared memory (limit " + std::to_string(limit) +
        (it == smem_optin().end() ? "; above 48 KiB needs cudaFuncSetAttribute" : "") + ")");
}

}  // namespace

// ---- public API ------------------------------------------------------------------------
void set_order(Order o, uint64_t seed) {
  config().order = o;
  config().seed = seed;
}
Order order() { return config().order; }
const char* order_name(Order o) {
  switch (o) {
    case Order::forward: return "forward";
    case Order::reverse: return "reverse";
    case Order::random: return "random";
  }
  return "?";
}

const uint3& thread_idx() {
  Block& b = block();
  return b.current->tid;
}
const uint3& block_idx() { return block().idx; }
const dim3& block_dim() { return block().launch->block; }
const dim3& grid_dim() { return block().launch->grid; }
void* dynamic_smem() { return block().smem; }

void syncthreads(const char* file, int line) {
  Block& b = block();
  Thread* t = b.current;
  t->state = State::barrier;
  t->file = file;
  t->line = line;
  yield_to_scheduler(false);
}

uint64_t warp_op(WarpOp op, unsigned mask, uint64_t value, int arg, int width, const char* file, int line) {
  Block& b = block();
  Thread* t = b.current;
  t->state = State::warp;
  t->op = op;
  t->mask = mask;
  t->value = value;
  t->arg = arg;
  t->width = width;
  t->file = file;
  t->line = line;
  yield_to_scheduler(false);
  return t->result;
}

void warp_collective(unsigned mask, void* lane_data, WarpCollectiveFn fn, const char* name, const char* file, int line) {
  Thread* t = block().current;
  t->fn = fn;
  t->op_label = name;
  warp_op(WarpOp::collective, mask, reinterpret_cast<uint64_t>(lane_data), 0, 32, file, line);
}

void cp_async16(void* dst, const void* src, const char* file, int line) {
  Block& b = block();
  Thread* t = b.current;
  auto fail = [&](const std::string& why) {
    throw KernelError(where(b, *t) + ": cp.async at " + site(file, line) + ": " + why);
  };
  if (reinterpret_cast<uintptr_t>(dst) % 16 || reinterpret_cast<uintptr_t>(src) % 16)
    fail("a 16-byte copy needs 16-byte aligned addresses");
  if (src && !is_device_range(src, 16)) fail("the source is not inside a device allocation");
  if (is_device_range(dst, 16)) fail("the destination is global memory (cp.async writes shared memory)");
  Thread::Copy c{dst, {}, -1};
  if (src) std::memcpy(c.bytes, src, 16);
  t->copies.push_back(c);
  std::memset(dst, 0xff, 16);  // poison until the matching wait
}

void cp_async_commit() {
  Thread* t = block().current;
  for (Thread::Copy& c : t->copies)
    if (c.group < 0) c.group = t->groups_committed;
  t->groups_committed++;
}

void cp_async_wait(int pending, const char* file, int line) {
  Block& b = block();
  Thread* t = b.current;
  if (pending < 0) throw KernelError(where(b, *t) + ": cp.async.wait_group at " + site(file, line) + ": negative count");
  const int64_t done_below = t->groups_committed - pending;  // groups [0, done_below) complete
  std::vector<Thread::Copy> keep;
  for (const Thread::Copy& c : t->copies) {
    if (c.group >= 0 && c.group < done_below) std::memcpy(c.dst, c.bytes, 16);
    else keep.push_back(c);
  }
  t->copies.swap(keep);
}

void set_max_dynamic_smem(const void* kernel, int bytes) { smem_optin()[kernel] = bytes; }

std::string shape_str(const Launch& l) {
  return "<<<" + dim_str({l.grid.x, l.grid.y, l.grid.z}) + ", " + dim_str({l.block.x, l.block.y, l.block.z}) + ", " +
         std::to_string(l.smem) + ">>>";
}

void run_grid(const Launch& l, const std::function<void()>& body) {
  if (g_block) throw KernelError("kernel '" + std::string(l.name) + "': launched from inside a kernel");
  check_limits(l);
  g_stats.launches++;
  Block b;
  b.launch = &l;
  b.body = &body;
  OrderGen order((int)(l.block.x * l.block.y * l.block.z));
  struct Reset {
    Block& b;
    ~Reset() {
      std::free(b.smem);
      release_block(b);
      g_block = nullptr;
    }
  } reset{b};
  if (l.smem) {
    if (posix_memalign(&b.smem, 16, l.smem)) throw KernelError("emulator: out of memory for shared memory");
  }
  g_block = &b;
  for (unsigned z = 0; z < l.grid.z; ++z)
    for (unsigned y = 0; y < l.grid.y; ++y)
      for (unsigned x = 0; x < l.grid.x; ++x) {
        b.idx = {x, y, z};
        if (b.smem) std::memset(b.smem, 0xff, l.smem);  // a GPU does not clear shared memory
        run_block(b, order);
        release_block(b);
        g_stats.blocks++;
      }
}

Stats stats() { return g_stats; }

}  // namespace mtalab::emu
