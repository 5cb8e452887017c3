// What one fused causal attention call costs, for benchmarks that report TFLOP/s and the
// share of the device's peak (bench/bench_cuda.cpp, scripts/gpu_check.sh), and the tile
// sizes of the tensor-core kernels that decide how often they re-read K, V, Q and dO
// (cuda/attention_flash.cuh takes its tiles from here: one list).
//
// FLOPs in FlashAttention's convention (Dao 2023, section 4.1): the forward counts its two
// products, S = Q Kᵀ and O = P V, at 2 FLOPs a multiply-add: 4 B H T² D, halved when causal;
// the backward counts 2.5 times the forward (five products of the same size: S recomputed,
// dP, dV, dK, dQ). Softmax exponentials are not counted.
#pragma once
#include <cstdint>
#include <string>

namespace mtalab {

// Tiles of the tensor-core FlashAttention-2 kernels (cuda/attention_flash.cuh).
constexpr int kFlashRowsFwd = 64;  // query rows per forward and dQ block
constexpr int kFlashColsFwd = 64;  // keys per forward tile
constexpr int kFlashKeysBwd = 64;  // keys per dK/dV block
constexpr int kFlashColsDq = 32;   // keys per dQ tile
// Queries per dK/dV tile: 16 at D = 128 (dK and dV alone take 128 registers a thread).
template <int D>
constexpr int kFlashRowsBwd = D == 128 ? 16 : 32;
inline int flash_rows_bwd(int64_t D) { return D == 128 ? kFlashRowsBwd<128> : kFlashRowsBwd<64>; }

struct AttentionCost {
  double flops = 0;  // FlashAttention's convention (see the top)
  double bytes = 0;  // global-memory traffic of the kernels, as tiled (see attention_cost)
};

inline double attention_flops(int64_t B, int64_t H, int64_t T, int64_t D, bool causal, bool backward) {
  const double fwd = 4.0 * (double)B * (double)H * (double)T * (double)T * (double)D * (causal ? 0.5 : 1.0);
  return backward ? 2.5 * fwd : fwd;
}

// Tiles of `tile` rows over [0, T), and the causal sum over query tiles of the key tiles
// they read (query tile i of rows [i r, i r + r) reads keys below its last row).
inline double causal_tile_pairs(int64_t T, int64_t q_rows, int64_t k_rows) {
  double pairs = 0;
  for (int64_t q0 = 0; q0 < T; q0 += q_rows) {
    const int64_t last = (q0 + q_rows < T ? q0 + q_rows : T) - 1;
    pairs += (double)(last / k_rows + 1);
  }
  return pairs;
}

// The causal tensor-core kernels' global traffic for bfloat16 q, k, v (o and dO of
// `out_bytes` per element, gradients of `grad_bytes`): every tile they load (cp.async),
// every output they write, lse and D = rowsum(dO ∘ O) as float32. The L2 cache serves
// many re-reads on a GPU, so this is an upper bound on DRAM traffic.
inline AttentionCost attention_cost(int64_t B, int64_t H, int64_t T, int64_t D, bool backward, int out_bytes = 4,
                                    int grad_bytes = 4) {
  AttentionCost c;
  c.flops = attention_flops(B, H, T, D, true, backward);
  const double BH = (double)B * (double)H, row = (double)D * 2;  // one bf16 row of q, k, v
  if (!backward) {
    // Q once; K and V one tile per (query tile, key tile) pair; O and lse written.
    const double kv_rows = causal_tile_pairs(T, kFlashRowsFwd, kFlashColsFwd) * kFlashColsFwd;
    c.bytes = BH * ((double)T * row + 2 * kv_rows * row + (double)T * D * out_bytes + (double)T * 4);
    return c;
  }
  // D: reads dO and O, writes D (and a bf16 dO when dO is float32).
  double bytes = (double)T * D * 2 * out_bytes + (double)T * 4 + (out_bytes == 2 ? 0 : (double)T * row);
  // dK, dV: K and V once per key block; Q, dO (and lse, D) per query tile from the diagonal.
  const int64_t rb = flash_rows_bwd(D);
  double q_rows = 0;
  for (int64_t k0 = 0; k0 < T; k0 += kFlashKeysBwd) q_rows += (double)((T - k0 + rb - 1) / rb * rb);
  bytes += 2 * (double)T * row + q_rows * (2 * row + 8) + 2 * (double)T * D * grad_bytes;
  // dQ: Q, dO, lse, D once; K and V one tile per pair; dQ written.
  const double kv_rows = causal_tile_pairs(T, kFlashRowsFwd, kFlashColsDq) * kFlashColsDq;
  bytes += 2 * (double)T * row + (double)T * 8 + 2 * kv_rows * row + (double)T * D * grad_bytes;
  c.bytes = BH * bytes;
  return c;
}

// Dense bfloat16 tensor-core peak of a device, TFLOP/s (NVIDIA's data sheets, without
// sparsity), by a substring of its name; 0 when unknown.
inline double bf16_peak_tflops(const std::string& device_name) {
  struct Peak {
    const char* name;
    double tflops;
  };
  static constexpr Peak kPeaks[] = {{"H200", 989.4}, {"H100 SXM", 989.4}, {"H100 PCIe", 756.0}, {"H100", 989.4},
                                    {"A100", 312.0}, {"L40S", 362.1},     {"A10", 125.0}};
  for (const Peak& p : kPeaks)
    if (device_name.find(p.name) != std::string::npos) return p.tflops;
  return 0;
}

}  // namespace mtalab
