// Warp-level tensor-core primitives (sm_80+): mma.sync m16n8k16 bf16 -> f32, ldmatrix and
// cp.async. Under nvcc each is one inline-PTX instruction; under the emulator (cuda/emu/)
// each is a warp collective that moves exactly the registers the PTX ISA documents, so a
// kernel that assumes a wrong fragment layout computes a wrong result on the CPU too.
//
// Fragment layouts (PTX ISA, "Matrix Fragments for mma.m16n8k16", .bf16; g = lane / 4,
// t = lane % 4; a register holds two bf16, the lower column/row in the lower 16 bits):
//   A 16x16 (row):  a[0] = A[g][2t, 2t+1]     a[1] = A[g+8][2t, 2t+1]
//                   a[2] = A[g][2t+8, 2t+9]   a[3] = A[g+8][2t+8, 2t+9]
//   B 16x8  (col):  b[0] = B[2t, 2t+1][g]     b[1] = B[2t+8, 2t+9][g]
//   C/D 16x8 (f32): c[0], c[1] = C[g][2t, 2t+1]   c[2], c[3] = C[g+8][2t, 2t+1]
// ldmatrix.m8n8.x4: lane i gives the address of row i % 8 of matrix i / 8 (16 bytes, 16-byte
// aligned); lane l receives r[m] = matrix m's row l / 4, elements 2 (l % 4), +1. With .trans it
// receives the transposed matrix's: elements [2 (l % 4)][l / 4] and [2 (l % 4) + 1][l / 4].
// cp.async.cg: 16 bytes global -> shared, complete at the issuing thread's wait_group.
#pragma once
#include <cstdint>

#include "autograd/bfloat16.h"
#include "cuda/common.cuh"

namespace mtalab::cuda::tc {

#if MTALAB_CUDA_EMU
namespace emu_detail {
inline uint16_t lo(uint32_t r) { return (uint16_t)(r & 0xffffu); }
inline uint16_t hi(uint32_t r) { return (uint16_t)(r >> 16); }
inline float bf(uint16_t b) { return float_from_bf16_bits(b); }
inline uint32_t pack(uint16_t l, uint16_t h) { return (uint32_t)l | ((uint32_t)h << 16); }

struct MmaLane {
  uint32_t a[4], b[2];
  float* d;  // in: C, out: D
};
// D = A B + C for the whole warp, gathering and scattering per the ISA's fragment table.
inline void mma_all(void* const lanes[32], unsigned) {
  float A[16][16], B[16][8], C[16][8];
  for (int l = 0; l < 32; ++l) {
    const MmaLane& x = *static_cast<const MmaLane*>(lanes[l]);
    const int g = l / 4, t = l % 4;
    for (int h = 0; h < 2; ++h) {  // h: the low or high half of a register
      auto part = [&](uint32_t r) { return bf(h ? hi(r) : lo(r)); };
      A[g][2 * t + h] = part(x.a[0]);
      A[g + 8][2 * t + h] = part(x.a[1]);
      A[g][2 * t + 8 + h] = part(x.a[2]);
      A[g + 8][2 * t + 8 + h] = part(x.a[3]);
      B[2 * t + h][g] = part(x.b[0]);
      B[2 * t + 8 + h][g] = part(x.b[1]);
      C[g][2 * t + h] = x.d[h];
      C[g + 8][2 * t + h] = x.d[2 + h];
    }
  }
  float D[16][8];
  for (int i = 0; i < 16; ++i)
    for (int j = 0; j < 8; ++j) {
      float acc = C[i][j];
      for (int k = 0; k < 16; ++k) acc = std::fma(A[i][k], B[k][j], acc);
      D[i][j] = acc;
    }
  for (int l = 0; l < 32; ++l) {
    const MmaLane& x = *static_cast<const MmaLane*>(lanes[l]);
    const int g = l / 4, t = l % 4;
    x.d[0] = D[g][2 * t], x.d[1] = D[g][2 * t + 1], x.d[2] = D[g + 8][2 * t], x.d[3] = D[g + 8][2 * t + 1];
  }
}

struct LdmLane {
  const uint16_t* row;  // this lane's row address
  uint32_t* r;          // 4 result registers
};
template <bool Trans>
inline void ldmatrix_all(void* const lanes[32], unsigned) {
  for (int l = 0; l < 32; ++l)
    if (reinterpret_cast<uintptr_t>(static_cast<const LdmLane*>(lanes[l])->row) % 16)
      throw ::mtalab::emu::KernelError("ldmatrix: lane " + std::to_string(l) + "'s row address is not 16-byte aligned");
  uint16_t M[4][8][8];
  for (int m = 0; m < 4; ++m)
    for (int i = 0; i < 8; ++i)
      for (int j = 0; j < 8; ++j) M[m][i][j] = static_cast<const LdmLane*>(lanes[m * 8 + i])->row[j];
  for (int l = 0; l < 32; ++l) {
    const LdmLane& x = *static_cast<const LdmLane*>(lanes[l]);
    const int r = l / 4, c = 2 * (l % 4);
    for (int m = 0; m < 4; ++m)
      x.r[m] = Trans ? pack(M[m][c][r], M[m][c + 1][r]) : pack(M[m][r][c], M[m][r][c + 1]);
  }
}
}  // namespace emu_detail

// d += a b: one m16n8k16 bf16 product with float accumulation.
inline void mma_bf16(float d[4], const uint32_t a[4], uint32_t b0, uint32_t b1, const char* file = __builtin_FILE(),
                     int line = __builtin_LINE()) {
  emu_detail::MmaLane x{{a[0], a[1], a[2], a[3]}, {b0, b1}, d};
  ::mtalab::emu::warp_collective(0xffffffffu, &x, emu_detail::mma_all, "mma.sync.m16n8k16", file, line);
}
// Four 8x8 b16 matrices from shared memory; `row` is this lane's row (see the header).
inline void ldmatrix_x4(uint32_t r[4], const void* row, const char* file = __builtin_FILE(), int line = __builtin_LINE()) {
  emu_detail::LdmLane x{static_cast<const uint16_t*>(row), r};
  ::mtalab::emu::warp_collective(0xffffffffu, &x, emu_detail::ldmatrix_all<false>, "ldmatrix.x4", file, line);
}
inline void ldmatrix_x4_trans(uint32_t r[4], const void* row, const char* file = __builtin_FILE(),
                              int line = __builtin_LINE()) {
  emu_detail::LdmLane x{static_cast<const uint16_t*>(row), r};
  ::mtalab::emu::warp_collective(0xffffffffu, &x, emu_detail::ldmatrix_all<true>, "ldmatrix.x4.trans", file, line);
}
// 16 bytes global -> shared; `valid` false writes zeros (src-size 0) and reads nothing.
inline void cp_async16(void* smem, const void* gmem, bool valid, const char* file = __builtin_FILE(),
                       int line = __builtin_LINE()) {
  ::mtalab::emu::cp_async16(smem, valid ? gmem : nullptr, file, line);
}
inline void cp_async_commit() { ::mtalab::emu::cp_async_commit(); }
// Waits until at most N of this thread's committed groups are still in flight.
template <int N>
inline void cp_async_wait(const char* file = __builtin_FILE(), int line = __builtin_LINE()) {
  ::mtalab::emu::cp_async_wait(N, file, line);
}

#else  // nvcc: one PTX instruction each

__device__ __forceinline__ void mma_bf16(float d[4], const uint32_t a[4], uint32_t b0, uint32_t b1) {
  asm volatile(
      "mma.sync.aligned.m16n8k16.row.col.f32.bf16.bf16.f32 {%0, %1, %2, %3}, {%4, %5, %6, %7}, {%8, %9}, "
      "{%0, %1, %2, %3};\n"
      : "+f"(d[0]), "+f"(d[1]), "+f"(d[2]), "+f"(d[3])
      : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b0), "r"(b1));
}
__device__ __forceinline__ void ldmatrix_x4(uint32_t r[4], const void* row) {
  const unsigned addr = (unsigned)__cvta_generic_to_shared(row);
  asm volatile("ldmatrix.sync.aligned.m8n8.x4.shared.b16 {%0, %1, %2, %3}, [%4];\n"
               : "=r"(r[0]), "=r"(r[1]), "=r"(r[2]), "=r"(r[3])
               : "r"(addr));
}
__device__ __forceinline__ void ldmatrix_x4_trans(uint32_t r[4], const void* row) {
  const unsigned addr = (unsigned)__cvta_generic_to_shared(row);
  asm volatile("ldmatrix.sync.aligned.m8n8.x4.trans.shared.b16 {%0, %1, %2, %3}, [%4];\n"
               : "=r"(r[0]), "=r"(r[1]), "=r"(r[2]), "=r"(r[3])
               : "r"(addr));
}
__device__ __forceinline__ void cp_async16(void* smem, const void* gmem, bool valid) {
  const unsigned addr = (unsigned)__cvta_generic_to_shared(smem);
  const int src_size = valid ? 16 : 0;
  asm volatile("cp.async.cg.shared.global [%0], [%1], 16, %2;\n" ::"r"(addr), "l"(gmem), "r"(src_size));
}
__device__ __forceinline__ void cp_async_commit() { asm volatile("cp.async.commit_group;\n" ::); }
template <int N>
__device__ __forceinline__ void cp_async_wait() {
  asm volatile("cp.async.wait_group %0;\n" ::"n"(N));
}

#endif

// Two floats as one register of two bf16 (round to nearest even), `lo` in the low half.
__device__ __forceinline__ uint32_t pack_bf16(float lo, float hi) {
#if MTALAB_CUDA_EMU
  return pack_bf16x2(lo, hi);
#else
  uint32_t r;
  asm("cvt.rn.bf16x2.f32 %0, %1, %2;\n" : "=r"(r) : "f"(hi), "f"(lo));  // first source -> upper half
  return r;
#endif
}

}  // namespace mtalab::cuda::tc
