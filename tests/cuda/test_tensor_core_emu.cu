// The emulated tensor-core primitives (cuda/mma.cuh) against the PTX ISA's fragment layouts
// and a scalar product, and the seeded bugs they exist to catch: a wrong fragment layout,
// a missing cp.async wait, a missing __syncthreads after the copies. Emulated build only.
#include <doctest/doctest.h>

#include <cstdint>
#include <string>
#include <utility>
#include <vector>

#include "autograd/kernels.h"
#include "autograd/ops.h"
#include "cuda/mma.cuh"

using namespace mtalab;
using mtalab::cuda::launch;
namespace tc = mtalab::cuda::tc;

namespace {

template <typename T>
struct Dev {
  T* p = nullptr;
  size_t n;
  explicit Dev(size_t count) : n(count) { REQUIRE(cudaMalloc(&p, n * sizeof(T)) == cudaSuccess); }
  ~Dev() { cudaFree(p); }
  void set(const std::vector<T>& v) { cudaMemcpy(p, v.data(), v.size() * sizeof(T), cudaMemcpyHostToDevice); }
  std::vector<T> get() const {
    std::vector<T> v(n);
    cudaMemcpy(v.data(), p, n * sizeof(T), cudaMemcpyDeviceToHost);
    return v;
  }
};

template <typename F>
std::string kernel_error(F&& f) {
  try {
    f();
  } catch (const emu::KernelError& e) {
    return e.what();
  }
  return "";
}

uint16_t bits(float f) { return bf16_bits_from_float(f); }

// D[16x8] = A[16x16] B[16x8] with the fragments gathered from global memory per the ISA's
// table (A row-major, B row-major [k][n]). `wrong` swaps a[1] and a[2]: the mistaken
// belief that A's registers run along a row first (cols 0-7, then 8-15) before the next row.
__global__ void mma_direct(const uint16_t* A, const uint16_t* B, float* D, bool wrong) {
  const int lane = threadIdx.x, g = lane / 4, t = lane % 4;
  auto pa = [&](int r, int c) { return (uint32_t)A[r * 16 + c] | (uint32_t)A[r * 16 + c + 1] << 16; };
  auto pb = [&](int k, int n) { return (uint32_t)B[k * 8 + n] | (uint32_t)B[(k + 1) * 8 + n] << 16; };
  uint32_t a[4] = {pa(g, 2 * t), pa(g + 8, 2 * t), pa(g, 2 * t + 8), pa(g + 8, 2 * t + 8)};
  if (wrong) std::swap(a[1], a[2]);
  float d[4] = {0, 0, 0, 0};
  tc::mma_bf16(d, a, pb(2 * t, g), pb(2 * t + 8, g));
  D[g * 8 + 2 * t] = d[0], D[g * 8 + 2 * t + 1] = d[1], D[(g + 8) * 8 + 2 * t] = d[2], D[(g + 8) * 8 + 2 * t + 1] = d[3];
}

// D[16x16] = A[16x16] B[16x16] through shared memory: A with ldmatrix, B with ldmatrix
// from Bt [n][k] (non-transposed) or from B [k][n] with .trans. Copies by cp.async.
__global__ void mma_ldmatrix(const uint16_t* A, const uint16_t* Bm, float* D, bool b_is_kn) {
  __shared__ __attribute__((aligned(16))) uint16_t sA[256], sB[256];
  const int lane = threadIdx.x, g = lane / 4, t = lane % 4;
  tc::cp_async16(sA + lane * 8, A + lane * 8, true);
  tc::cp_async16(sB + lane * 8, Bm + lane * 8, true);
  tc::cp_async_commit();
  tc::cp_async_wait<0>();
  __syncwarp();
  uint32_t a[4], b[4];
  tc::ldmatrix_x4(a, sA + (lane % 16) * 16 + lane / 16 * 8);
  if (b_is_kn)  // rows k, cols n: matrices (k0-7, n0-7) (k8-15, n0-7) (k0-7, n8-15) (k8-15, n8-15)
    tc::ldmatrix_x4_trans(b, sB + ((lane / 8) % 2 * 8 + lane % 8) * 16 + lane / 16 * 8);
  else  // rows n, cols k: matrices (n0-7, k0-7) (n0-7, k8-15) (n8-15, k0-7) (n8-15, k8-15)
    tc::ldmatrix_x4(b, sB + (lane / 16 * 8 + lane % 8) * 16 + (lane / 8) % 2 * 8);
  for (int h = 0; h < 2; ++h) {
    float d[4] = {0, 0, 0, 0};
    tc::mma_bf16(d, a, b[2 * h], b[2 * h + 1]);
    const int c = h * 8 + 2 * t;
    D[g * 16 + c] = d[0], D[g * 16 + c + 1] = d[1], D[(g + 8) * 16 + c] = d[2], D[(g + 8) * 16 + c + 1] = d[3];
  }
}

// 64 floats global -> shared in two cp.async groups (chunks 0-7, then 8-15), then out =
// shared. waits: 0 none, 1 wait_group 1 (the first group only), 2 wait_group 0.
__global__ void copy_groups(const float* x, float* out, int waits) {
  __shared__ __attribute__((aligned(16))) float s[64];
  const int t = threadIdx.x;  // 8 threads
  tc::cp_async16(s + 4 * t, x + 4 * t, true);
  tc::cp_async_commit();
  tc::cp_async16(s + 32 + 4 * t, x + 32 + 4 * t, true);
  tc::cp_async_commit();
  if (waits == 1) tc::cp_async_wait<1>();
  if (waits == 2) tc::cp_async_wait<0>();
  __syncthreads();
  for (int i = 0; i < 8; ++i) out[8 * t + i] = s[8 * t + i];
}

// Thread t copies chunk t and reads chunk t+1: needs the barrier after the wait.
__global__ void copy_neighbour(const float* x, float* out, bool sync) {
  MTALAB_DYNAMIC_SMEM(float, s);
  const int t = threadIdx.x, n = blockDim.x;
  tc::cp_async16(s + 4 * t, x + 4 * t, true);
  tc::cp_async_commit();
  tc::cp_async_wait<0>();
  if (sync) __syncthreads();
  const int u = (t + 1) % n;
  for (int i = 0; i < 4; ++i) out[4 * t + i] = s[4 * u + i];
}

__global__ void copy_misaligned(const float* x) {
  __shared__ __attribute__((aligned(16))) float s[8];
  tc::cp_async16(s + 1, x, true);
}
__global__ void ldmatrix_misaligned(float* out) {
  __shared__ __attribute__((aligned(16))) uint16_t s[512];
  uint32_t r[4];
  tc::ldmatrix_x4(r, s + threadIdx.x * 8 + (threadIdx.x == 5 ? 2 : 0));
  out[threadIdx.x] = (float)r[0];
}

std::vector<float> small_ints(int n, int seed) {
  std::vector<float> v(n);
  for (int i = 0; i < n; ++i) v[i] = (float)((i * 5 + i / 16 * 3 + seed) % 7 - 3);  // exact in bf16, exact products
  return v;
}

}  // namespace

TEST_CASE("tensor cores (emulated): mma.sync m16n8k16 follows the ISA's fragments; a wrong layout fails") {
  const std::vector<float> A = small_ints(256, 1), B = small_ints(128, 2);
  std::vector<uint16_t> a(256), b(128);
  for (int i = 0; i < 256; ++i) a[i] = bits(A[i]);
  for (int i = 0; i < 128; ++i) b[i] = bits(B[i]);
  Dev<uint16_t> da(256), db(128);
  Dev<float> dd(128);
  da.set(a), db.set(b);
  std::vector<float> ref(128, 0);
  for (int i = 0; i < 16; ++i)
    for (int j = 0; j < 8; ++j)
      for (int k = 0; k < 16; ++k) ref[i * 8 + j] += A[i * 16 + k] * B[k * 8 + j];
  launch("mma_direct", mma_direct, 1, 32, 0, da.p, db.p, dd.p, false);
  CHECK(dd.get() == ref);
  launch("mma_direct", mma_direct, 1, 32, 0, da.p, db.p, dd.p, true);
  CHECK(dd.get() != ref);
}

TEST_CASE("tensor cores (emulated): ldmatrix and ldmatrix.trans feed mma in the ISA's layout") {
  const std::vector<float> A = small_ints(256, 3), B = small_ints(256, 4);  // B [k][n]
  std::vector<uint16_t> a(256), bkn(256), bnk(256);
  for (int i = 0; i < 256; ++i) a[i] = bits(A[i]);
  for (int k = 0; k < 16; ++k)
    for (int n = 0; n < 16; ++n) bkn[k * 16 + n] = bits(B[k * 16 + n]), bnk[n * 16 + k] = bits(B[k * 16 + n]);
  std::vector<float> ref(256, 0);
  for (int i = 0; i < 16; ++i)
    for (int j = 0; j < 16; ++j)
      for (int k = 0; k < 16; ++k) ref[i * 16 + j] += A[i * 16 + k] * B[k * 16 + j];
  Dev<uint16_t> da(256), db(256);
  Dev<float> dd(256);
  da.set(a);
  db.set(bnk);
  launch("mma_ldmatrix", mma_ldmatrix, 1, 32, 0, da.p, db.p, dd.p, false);
  CHECK(dd.get() == ref);
  db.set(bkn);
  launch("mma_ldmatrix", mma_ldmatrix, 1, 32, 0, da.p, db.p, dd.p, true);
  CHECK(dd.get() == ref);
  // the layouts are not interchangeable: [k][n] read without .trans is another product
  launch("mma_ldmatrix", mma_ldmatrix, 1, 32, 0, da.p, db.p, dd.p, false);
  CHECK(dd.get() != ref);
}

TEST_CASE("tensor cores (emulated): cp.async's destination is poison until the matching wait_group") {
  std::vector<float> x(64);
  for (int i = 0; i < 64; ++i) x[i] = (float)i;
  Dev<float> dx(64), out(64);
  dx.set(x);
  launch("copy_groups", copy_groups, 1, 8, 0, dx.p, out.p, 0);
  std::vector<float> v = out.get();
  for (int i = 0; i < 64; ++i) CHECK(std::isnan(v[i]));  // a missing wait reads NaN everywhere
  launch("copy_groups", copy_groups, 1, 8, 0, dx.p, out.p, 1);
  v = out.get();
  for (int i = 0; i < 32; ++i) CHECK(v[i] == (float)i);  // wait_group 1: the older group landed
  for (int i = 32; i < 64; ++i) CHECK(std::isnan(v[i]));  // the newer is still in flight
  launch("copy_groups", copy_groups, 1, 8, 0, dx.p, out.p, 2);
  CHECK(out.get() == x);
}

TEST_CASE("tensor cores (emulated): reading another thread's cp.async data needs __syncthreads, in every order") {
  struct Guard {
    emu::Order saved = emu::order();
    ~Guard() { emu::set_order(saved, 7); }
  } guard;
  std::vector<float> x(128);
  for (int i = 0; i < 128; ++i) x[i] = (float)i;
  Dev<float> dx(128), out(128);
  dx.set(x);
  for (emu::Order o : {emu::Order::forward, emu::Order::reverse, emu::Order::random}) {
    CAPTURE(emu::order_name(o));
    emu::set_order(o, 11);
    launch("copy_neighbour", copy_neighbour, 1, 32, 128 * sizeof(float), dx.p, out.p, true);
    std::vector<float> v = out.get();
    bool right = true;
    for (int t = 0; t < 32; ++t)
      for (int i = 0; i < 4; ++i) right &= v[4 * t + i] == (float)(4 * ((t + 1) % 32) + i);
    CHECK(right);
    launch("copy_neighbour", copy_neighbour, 1, 32, 128 * sizeof(float), dx.p, out.p, false);
    v = out.get();
    int nans = 0;
    for (float f : v) nans += std::isnan(f);
    CHECK(nans > 0);
  }
}

TEST_CASE("tensor cores (emulated): misaligned cp.async and ldmatrix addresses name the line") {
  Dev<float> dx(64), out(32);
  std::string e = kernel_error([&] { launch("copy_misaligned", copy_misaligned, 1, 1, 0, dx.p); });
  CHECK(e.find("cp.async at") != std::string::npos);
  CHECK(e.find("test_tensor_core_emu.cu:") != std::string::npos);
  CHECK(e.find("16-byte aligned") != std::string::npos);
  e = kernel_error([&] { launch("ldmatrix_misaligned", ldmatrix_misaligned, 1, 32, 0, out.p); });
  CHECK(e.find("ldmatrix.x4 at") != std::string::npos);
  CHECK(e.find("lane 5") != std::string::npos);
}

TEST_CASE("tensor cores (emulated): bfloat16 plain attention runs on them, float32 does not") {
  const Device cuda{DeviceKind::cuda, 0};
  auto collectives = [&](DType dt, int64_t D) {
    const Shape s{1, 1, 19, D};
    Tensor q = full(s, 0.5, {dt, cuda}), o = full(s, 0.0, {dt == DType::bf16 ? DType::f32 : dt, cuda});
    Tensor lse = full({1, 1, 19}, 0.0, {dt == DType::bf16 ? DType::f32 : dt, cuda});
    AttentionParams a;
    a.scale = 0.5;
    const uint64_t before = emu::stats().collectives;
    attention_kernel(cuda)(q, q, q, a, o, lse);
    return emu::stats().collectives - before;
  };
  CHECK(collectives(DType::bf16, 32) > 0);
  CHECK(collectives(DType::bf16, 128) > 0);
  CHECK(collectives(DType::f32, 32) == 0);
  CHECK(collectives(DType::bf16, 16) == 0);  // head dim 16: the float32 path
}

TEST_CASE("tensor cores (emulated): bfloat16 MTA runs on them, forward and backward; float32 does not") {
  const Device cuda{DeviceKind::cuda, 0};
  // Warp collectives of the forward and of the backward (every gradient asked), all four
  // components, c_h 2.
  auto collectives = [&](DType dt, int64_t D) {
    const DType acc = dt == DType::bf16 ? DType::f32 : dt;
    const Shape s{1, 2, 21, D};
    Tensor q = full(s, 0.5, {dt, cuda}), o = full(s, 0.0, {acc, cuda}), lse = full({1, 2, 21}, 0.0, {acc, cuda});
    AttentionParams a;
    a.scale = 0.5;
    a.kq_pre = full({2, 2, 3}, 0.25, {acc, cuda}), a.p_pre = 1;
    a.kq_post = full({2, 2, 2}, 0.25, {acc, cuda}), a.p_post = 0;
    a.mix_pre = full({1, 2, 2}, 0.5, {acc, cuda}), a.mix_post = full({1, 2, 2}, 0.5, {acc, cuda});
    uint64_t before = emu::stats().collectives;
    attention_kernel(cuda)(q, q, q, a, o, lse);
    const uint64_t fwd = emu::stats().collectives - before;
    auto like = [&](const Tensor& x) { return full(x.shape(), 0.0, {x.dtype(), cuda}); };
    AttentionGrads g{like(q), like(q), like(q), like(a.kq_pre), like(a.mix_pre), like(a.kq_post), like(a.mix_post)};
    before = emu::stats().collectives;
    attention_bwd_kernel(cuda)(q, q, q, o, lse, o, a, g);
    const uint64_t bwd = emu::stats().collectives - before;
    return std::pair<uint64_t, uint64_t>{fwd, bwd};
  };
  for (int64_t D : {32, 64, 128}) {
    CAPTURE(D);
    const auto [fwd, bwd] = collectives(DType::bf16, D);
    CHECK(fwd > 0);
    CHECK(bwd > 0);
  }
  CHECK(collectives(DType::f32, 32) == std::pair<uint64_t, uint64_t>{0, 0});
  CHECK(collectives(DType::bf16, 16) == std::pair<uint64_t, uint64_t>{0, 0});  // head dim 16: the staged path
}

TEST_CASE("tensor cores (emulated): bfloat16 MTA whose boxes exceed a block's shared memory takes the staged path") {
  // c_h 8 heads with a 12 x 31 convolution at D 128: the backward tile's grids need ~350 KiB
  // (cuda/attention_mta_tc.cuh's make_plan), over the 160 KiB a block may have.
  const Device cuda{DeviceKind::cuda, 0};
  const Shape s{1, 8, 9, 128};
  Tensor q = full(s, 0.25, {DType::bf16, cuda}), o = full(s, 0.0, {DType::f32, cuda});
  Tensor lse = full({1, 8, 9}, 0.0, {DType::f32, cuda});
  AttentionParams a;
  a.scale = 0.5;
  a.kq_pre = full({8, 12, 31}, 0.0, {DType::f32, cuda}), a.p_pre = 15;
  a.mix_pre = full({1, 8, 8}, 0.125, {DType::f32, cuda});
  const uint64_t before = emu::stats().collectives;
  attention_kernel(cuda)(q, q, q, a, o, lse);
  CHECK(emu::stats().collectives == before);
  for (double x : o.to_vector<double>()) CHECK(x == doctest::Approx(0.25));  // rows of equal values average to it
}

TEST_CASE("tensor cores (emulated): a bfloat16 view that starts mid-chunk takes the staged path, not cp.async") {
  const Device cuda{DeviceKind::cuda, 0};
  const Shape s{1, 1, 19, 32};
  Tensor flat = full({1 + 19 * 32}, 0.25, {DType::bf16, cuda});
  Tensor q = reshape(slice(flat, 0, 1, 1 + 19 * 32), s);  // 2 bytes past a 16-byte boundary
  REQUIRE(reinterpret_cast<uintptr_t>(q.raw()) % 16 == 2);
  Tensor o = full(s, 0.0, {DType::f32, cuda}), lse = full({1, 1, 19}, 0.0, {DType::f32, cuda});
  AttentionParams a;
  a.scale = 0.5;
  const uint64_t before = emu::stats().collectives;
  attention_kernel(cuda)(q, q, q, a, o, lse);
  CHECK(emu::stats().collectives == before);
  for (double x : o.to_vector<double>()) CHECK(x == doctest::Approx(0.25));
}
