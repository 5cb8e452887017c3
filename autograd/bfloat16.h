// bfloat16: the storage type of mixed-precision training (the top 16 bits of an IEEE
// float32: 8 exponent bits, 7 mantissa bits). Arithmetic never happens in it: a kernel
// reads bfloat16 as float (exact), computes in float32 or wider, and rounds once when
// it stores.
//
// The conversion is written out in integer operations and compiled unchanged for the
// CPU, for the GPU (nvcc) and for the CUDA emulator, so a float32 rounds to the same
// bits on every device (the hardware instructions differ: x86's VCVTNEPS2BF16 flushes
// subnormals to zero, CUDA's __float2bfloat16 returns one canonical NaN):
//   - round to nearest, ties to even, subnormals included;
//   - values past the largest bfloat16 (and not representable below it) become ±inf;
//   - NaN stays NaN: quiet, with its sign and the top 6 bits of its payload (plain
//     truncation of a NaN whose payload sits in the low 16 bits would give inf).
// float64 converts through float32 (as PyTorch does), so on every device a double
// rounds twice, the same way.
#pragma once
#include <cstdint>
#include <cstring>

#include "autograd/host_device.h"

namespace mtalab {

MTALAB_HD inline uint32_t float_bits(float f) {
  uint32_t u;
  std::memcpy(&u, &f, sizeof u);
  return u;
}
MTALAB_HD inline float bits_float(uint32_t u) {
  float f;
  std::memcpy(&f, &u, sizeof f);
  return f;
}

// float32 -> bfloat16 bits, round to nearest even (see above).
MTALAB_HD inline uint16_t bf16_bits_from_float(float f) {
  uint32_t u = float_bits(f);
  if ((u & 0x7fffffffu) > 0x7f800000u) return (uint16_t)((u >> 16) | 0x0040u);  // NaN: make it quiet
  u += 0x7fffu + ((u >> 16) & 1u);  // a carry out of the mantissa bumps the exponent: up to inf
  return (uint16_t)(u >> 16);
}
MTALAB_HD inline float float_from_bf16_bits(uint16_t b) { return bits_float((uint32_t)b << 16); }

struct bfloat16 {
  uint16_t bits;
  bfloat16() = default;
  // Explicit from float, implicit to float: `bfloat16 s = 0; s += x` does not compile, so
  // no kernel accumulates in bfloat16 by accident.
  MTALAB_HD explicit bfloat16(float f) : bits(bf16_bits_from_float(f)) {}
  MTALAB_HD explicit bfloat16(double d) : bits(bf16_bits_from_float((float)d)) {}
  MTALAB_HD explicit bfloat16(int32_t i) : bits(bf16_bits_from_float((float)i)) {}
  MTALAB_HD explicit bfloat16(int64_t i) : bits(bf16_bits_from_float((float)i)) {}
  MTALAB_HD operator float() const { return float_from_bf16_bits(bits); }
  MTALAB_HD static bfloat16 from_bits(uint16_t b) {
    bfloat16 x;
    x.bits = b;
    return x;
  }
};
static_assert(sizeof(bfloat16) == 2, "bfloat16 is two bytes");

// Two bfloat16 in one 32-bit register, `lo` in the low half: the operand layout of the
// tensor-core instructions (the element with the lower index in the lower bits).
MTALAB_HD inline uint32_t pack_bf16x2(float lo, float hi) {
  return (uint32_t)bf16_bits_from_float(lo) | ((uint32_t)bf16_bits_from_float(hi) << 16);
}

// The arithmetic type of a storage type: float for bfloat16, the type itself otherwise.
template <typename T>
struct acc_type {
  using type = T;
};
template <>
struct acc_type<bfloat16> {
  using type = float;
};
template <typename T>
using acc_t = typename acc_type<T>::type;

}  // namespace mtalab
