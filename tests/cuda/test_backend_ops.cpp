// Every kernel family of every backend against a float64 reference, in the manner of
// ggml's test-backend-ops: one table of cases, each calling the kernel tables directly
// with inputs from a fixed seed and outputs pre-filled with NaN (an entry a kernel
// forgets to write fails). Each case runs four ways: the CPU in float64 (the reference),
// the CPU in float32, CUDA in float32 and CUDA in float64; every output of the case (the
// values, and for backward families every gradient) is compared with the reference by
// normalised error  max|y - ref| / max|ref|  against the tolerance stated in the case.
// CUDA runs twice and must give the same bits (determinism). The random family must be
// bitwise equal across devices. The support matrix is printed, and a family without a
// kernel on a backend is a failure.
//
// bfloat16 runs twice more (CPU and CUDA) against a float64 reference computed on the same
// inputs: every value drawn is first rounded to bfloat16, so the error measured is the
// kernel's own — arithmetic in float32 (the case's float32 tolerance covers it) plus one
// rounding of each bfloat16 output, at most u = 2^-8 of its value (round to nearest,
// 8 significant bits). Statistics (norms' mean/rstd, cross-entropy's loss/lse, attention's
// lse) stay float32, as the kernels' contract says (autograd/kernels.h).
#include <doctest/doctest.h>

#include <cmath>
#include <cstdio>
#include <cstring>
#include <functional>
#include <ios>
#include <limits>
#include <set>
#include <string>
#include <vector>

#include "autograd/kernels.h"
#include "autograd/ops.h"

using namespace mtalab;

namespace {

const Device kCuda{DeviceKind::cuda, 0};
// float32 inputs are the reference's inputs rounded to float: an exact kernel (copy, where)
// is off by that rounding, 2^-24 relative.
constexpr double kRound32 = 6e-8;
// bfloat16's unit roundoff: one rounding to nearest moves a value by at most 2^-8 of it.
constexpr double kBf16 = 0x1p-8;
constexpr double kNaN = std::numeric_limits<double>::quiet_NaN();
// The tensor-core attention (cuda/attention_flash.cuh) also rounds P and dS to bfloat16 as
// mma operands (FlashAttention-2 does the same), so each of its sums sum_j x_j y_j moves by
// up to u sum_j |x_j y_j| beside the output's own rounding u: normalised by the largest
// output, u (1 + kappa) with kappa = max sum |x_j y_j| / max |sum x_j y_j|. For the causal
// rows here (the first row of O is V_0 itself; dK, dV, dQ sums of up to T terms with random
// signs) kappa stays below 3 (largest seen: 2.4, over 5 draws of each shape below with these
// inputs' distribution, computed in float64): the tolerance is 4 u plus the float32 case's 4e-6.
// The fused MTA kernels (cuda/attention_mta_tc.cuh) round the same operands once each (P' for
// P'V and P'ᵀdO, dS for dS K and dSᵀQ, a float32 dO for dO Vᵀ) and keep the convolutions,
// head mixing and softmax in float32 between them, so the same bound applies to their cases
// (their kappa was not computed separately; the measured errors are printed per case).
constexpr double kBf16TensorCoreAttention = 4 * kBf16 + 4e-6;

// What a case runs on, and how it makes its tensors there.
struct Env {
  Device device;
  DType dtype;
  uint64_t seed;
  bool bf16_values = false;  // every value drawn rounded to bfloat16 first (the bfloat16 runs and their reference)
  // The dtype of statistics and of the mixed-precision kernels' float32 operands.
  DType acc() const { return dtype == DType::bf16 ? DType::f32 : dtype; }
  // Values in [lo, hi) from a fixed stream (drawn in float64 on the host, then cast).
  Tensor input(const Shape& s, double lo = -1, double hi = 1) const { return from_host(s, lo, hi, 0); }
  // The same, rounded down to multiples of `step` (ties for comparisons, exact casts).
  Tensor grid(const Shape& s, double lo, double hi, double step) const { return from_host(s, lo, hi, step); }
  Tensor ints(const Shape& s, int64_t lo, int64_t hi, DType t = DType::i32) const {
    std::vector<int64_t> v(shape_numel(s));
    for (auto& x : v) x = lo + (int64_t)(next() % (uint64_t)(hi - lo));
    return from_vector<int64_t>(v, s, {t, device});
  }
  Tensor output(const Shape& s, DType t) const { return full(s, kNaN, {t, device}); }
  Tensor output(const Shape& s) const { return output(s, dtype); }
  Tensor stat_output(const Shape& s) const { return output(s, acc()); }
  Tensor acc_input(const Shape& s, double lo = -1, double hi = 1) const { return from_host(s, lo, hi, 0).to(acc()); }

  mutable uint64_t state = 0;
  uint64_t next() const {
    state = state * 6364136223846793005ull + 1442695040888963407ull + seed;
    return state >> 11;
  }
  Tensor from_host(const Shape& s, double lo, double hi, double step) const {
    std::vector<double> v(shape_numel(s));
    for (auto& x : v) {
      x = lo + (hi - lo) * (double)(next() % (1ull << 52)) / (double)(1ull << 52);
      if (step > 0) x = std::floor(x / step) * step;
      if (bf16_values) x = (float)bfloat16((float)x);
    }
    return from_vector<double>(v, s, {dtype, device});
  }
};

struct Output {
  std::string name;
  std::vector<double> values;
};
using Outputs = std::vector<Output>;
Output out(const std::string& name, const Tensor& t) { return {name, t.to_vector<double>()}; }

struct Case {
  std::string name;
  std::vector<std::string> families;  // kernel tables this case exercises
  double tol32, tol64;                // normalised error allowed for float32 and float64 runs
  double tol16;                       // ... and for bfloat16 runs (see the top of the file)
  std::function<Outputs(const Env&)> run;
  bool bitwise_across_devices = false;  // compare CUDA with the CPU in the same dtype, exactly
};

// max|y - ref| / max|ref|; a NaN where the reference has none (or the reverse) is +inf.
double norm_error(const std::vector<double>& y, const std::vector<double>& ref) {
  if (y.size() != ref.size()) return std::numeric_limits<double>::infinity();
  double diff = 0, scale = 0;
  for (size_t i = 0; i < y.size(); ++i) {
    if (std::isnan(ref[i]) || std::isnan(y[i])) {
      if (std::isnan(ref[i]) != std::isnan(y[i])) return std::numeric_limits<double>::infinity();
      continue;
    }
    if (std::isinf(ref[i]) || std::isinf(y[i])) {
      if (ref[i] != y[i]) return std::numeric_limits<double>::infinity();
      continue;
    }
    diff = std::max(diff, std::abs(y[i] - ref[i]));
    scale = std::max(scale, std::abs(ref[i]));
  }
  return diff / std::max(scale, 1e-300);
}

bool same_bits(const Outputs& a, const Outputs& b) {
  if (a.size() != b.size()) return false;
  for (size_t k = 0; k < a.size(); ++k)
    if (a[k].values.size() != b[k].values.size() ||
        std::memcmp(a[k].values.data(), b[k].values.data(), a[k].values.size() * sizeof(double)) != 0)
      return false;
  return true;
}

// ---- the cases ---------------------------------------------------------------------------
std::vector<Case> cases() {
  std::vector<Case> c;
  const double t32 = 2e-6, t64 = 1e-13;

  // copy: layouts and casts
  c.push_back({"copy: permute [7,11,13] -> (2,0,1)", {"copy"}, kRound32, 0, 0, [](const Env& e) {
                 Tensor x = e.input({7, 11, 13}), y = e.output({13, 7, 11});
                 copy_kernel(e.device)(x.permute({2, 0, 1}), y);
                 return Outputs{out("y", y)};
               }});
  c.push_back({"copy: transpose [63,67] into a transposed destination", {"copy"}, kRound32, 0, 0, [](const Env& e) {
                 Tensor x = e.input({63, 67}), base = e.output({63, 67});
                 copy_kernel(e.device)(x.transpose(0, 1), base.transpose(0, 1));  // dst strided
                 return Outputs{out("base", base)};
               }});
  c.push_back({"copy: slice with offset, broadcast source", {"copy"}, kRound32, 0, 0, [](const Env& e) {
                 Tensor x = e.input({9, 67}), y = e.output({5, 60}), z = e.output({4, 67});
                 copy_kernel(e.device)(x.slice(0, 2, 7).slice(1, 3, 63), y);
                 copy_kernel(e.device)(x.slice(0, 1, 2).expand({4, 67}), z);
                 return Outputs{out("y", y), out("z", z)};
               }});
  c.push_back({"copy: casts float -> int32 -> int64 -> float", {"copy"}, kRound32, 0, 0, [](const Env& e) {
                 Tensor x = e.grid({3, 67}, -1000, 1000, 1), i = e.output({3, 67}, DType::i32),
                        l = e.output({67, 3}, DType::i64), y = e.output({67, 3});
                 copy_kernel(e.device)(x, i);
                 copy_kernel(e.device)(i.transpose(0, 1), l);
                 copy_kernel(e.device)(l, y);
                 return Outputs{out("y", y)};
               }});
  c.push_back({"fill: float, int32, int64", {"fill"}, 0, 0, 0, [](const Env& e) {
                 Tensor a = e.output({1001}), b = e.output({67}, DType::i32), d = e.output({3, 5}, DType::i64);
                 fill_kernel(e.device)(a, -2.5);
                 fill_kernel(e.device)(b, 7);
                 fill_kernel(e.device)(d, -3);
                 return Outputs{out("a", a), out("b", b), out("d", d)};
               }});

  // unary: every kind on its domain
  for (int k = 0; k < kNumUnaryKinds; ++k) {
    const UnaryKind kind = (UnaryKind)k;
    const bool positive = kind == UnaryKind::log || kind == UnaryKind::sqrt || kind == UnaryKind::rsqrt ||
                          kind == UnaryKind::pow_scalar || kind == UnaryKind::rdiv_scalar;
    const double alpha = kind == UnaryKind::pow_scalar ? 1.7 : -0.75;
    c.push_back({"unary kind " + std::to_string(k), {"unary"}, 4e-6, t64, kBf16 + 4e-6, [=](const Env& e) {
                   Tensor x = positive ? e.input({1001}, 0.1, 3) : e.input({1001}, -4, 4), y = e.output({1001});
                   unary_kernel(e.device)(kind, x, y, alpha);
                   return Outputs{out("y", y)};
                 }});
  }
  // binary: every kind, broadcasting and strided operands
  for (int k = 0; k < kNumBinaryKinds; ++k) {
    const BinaryKind kind = (BinaryKind)k;
    c.push_back({"binary kind " + std::to_string(k) + " broadcast [4,1,67] x [63,67]^T", {"binary"}, t32, t64,
                 kBf16 + t32, [=](const Env& e) {
                   const bool pos = kind == BinaryKind::pow || kind == BinaryKind::div;
                   Tensor a = pos ? e.input({4, 1, 67}, 0.5, 2) : e.grid({4, 1, 67}, -3, 3, 0.5);
                   Tensor b = pos ? e.input({67, 63}, 0.5, 2) : e.grid({67, 63}, -3, 3, 0.5);
                   const Shape s{4, 63, 67};
                   Tensor y = e.output(s);
                   binary_kernel(e.device)(kind, a.expand(s), b.transpose(0, 1).unsqueeze(0).expand(s), y);
                   return Outputs{out("y", y)};
                 }});
  }
  c.push_back({"where: broadcast condition and scalar operand", {"where"}, kRound32, 0, 0, [](const Env& e) {
                 Tensor cond = e.grid({63, 1}, 0, 2, 1), a = e.input({63, 67}), b = e.input({1, 67});
                 Tensor y = e.output({63, 67});
                 where_kernel(e.device)(cond.expand({63, 67}), a, b.expand({63, 67}), y);
                 return Outputs{out("y", y)};
               }});

  // reductions over every dim, long rows and long columns (the split paths)
  for (int kind = 0; kind < 2; ++kind)
    c.push_back({std::string(kind ? "reduce max" : "reduce sum") + " over each dim of [5,67,63], long rows and columns",
                 {"reduce"}, t32, t64, kBf16 + t32, [=](const Env& e) {
                   const ReduceKind rk = kind ? ReduceKind::max : ReduceKind::sum;
                   Tensor x = e.input({5, 67, 63});
                   Outputs o;
                   for (int64_t d = 0; d < 3; ++d) {
                     Shape s = x.shape();
                     s[d] = 1;
                     Tensor y = e.output(s);
                     reduce_kernel(e.device)(rk, x, d, y);
                     o.push_back(out("dim " + std::to_string(d), y));
                   }
                   Tensor row = e.input({2, 100003}), yr = e.output({2, 1});
                   reduce_kernel(e.device)(rk, row, 1, yr);
                   Tensor col = e.input({70001, 3}), yc = e.output({1, 3});
                   reduce_kernel(e.device)(rk, col, 0, yc);
                   Tensor one = e.input({3000}), y1 = e.output({1});
                   reduce_kernel(e.device)(rk, one, 0, y1);
                   o.push_back(out("long rows", yr));
                   o.push_back(out("long columns", yc));
                   o.push_back(out("one row", y1));
                   return o;
                 }});

  c.push_back({"matmul: batched, broadcast batch, transposed operands", {"matmul"}, t32, t64, kBf16 + t32,
               [](const Env& e) {
                 Outputs o;
                 Tensor a = e.input({2, 3, 63, 67}), b = e.input({2, 3, 67, 65}), y = e.output({2, 3, 63, 65});
                 matmul_kernel(e.device)(a, b, y);
                 o.push_back(out("batched", y));
                 Tensor b1 = e.input({67, 65}), y2 = e.output({2, 3, 63, 65});
                 matmul_kernel(e.device)(a, b1.expand({2, 3, 67, 65}), y2);
                 o.push_back(out("broadcast b", y2));
                 Tensor at = e.input({3, 67, 63}), bt = e.input({3, 65, 67}), y3 = e.output({3, 63, 65});
                 matmul_kernel(e.device)(at.transpose(1, 2), bt.transpose(1, 2), y3);
                 o.push_back(out("transposed a and b", y3));
                 Tensor p = e.input({4, 2, 5, 7}), q = e.input({2, 4, 7, 3}), y4 = e.output({2, 4, 5, 3});
                 matmul_kernel(e.device)(p.permute({1, 0, 2, 3}), q, y4);  // batch dims that do not coalesce
                 o.push_back(out("permuted batch", y4));
                 Tensor y5 = e.stat_output({2, 3, 63, 65});  // bfloat16 operands, float32 result
                 matmul_kernel(e.device)(at.transpose(1, 2).unsqueeze(0).expand({2, 3, 63, 67}), b, y5);
                 o.push_back(out("float32 result", y5));
                 return o;
               }});

  // softmax, forward and backward, every variant. The backward reads a drawn y (its
  // formula holds for any y), so a bfloat16 run's backward is not measured through the
  // forward's rounding: each output is one rounding off its float32 value.
  for (int v = 0; v < 4; ++v) {
    const bool log = v & 1, causal = v & 2;
    c.push_back({std::string("softmax") + (log ? " log" : "") + (causal ? " causal [2,3,63,63]" : " [7,67]") +
                     " forward and backward",
                 {"softmax", "softmax_backward"}, 4e-6, t64, kBf16 + 4e-6, [=](const Env& e) {
                   const Shape s = causal ? Shape{2, 3, 63, 63} : Shape{7, 67};
                   Tensor x = e.input(s, -6, 6), y = e.output(s), gy = e.input(s), gx = e.output(s);
                   softmax_kernel(e.device)(x, y, log, causal);
                   Tensor yb = log ? e.input(s, -6, 0) : e.input(s, 0, 1);
                   softmax_bwd_kernel(e.device)(yb, gy, gx, log, causal);
                   return Outputs{out("y", y), out("gx", gx)};
                 }});
  }

  // norms, forward and backward (gx, gw, gbias)
  for (int v = 0; v < 3; ++v) {
    const bool layer = v > 0, affine = v < 2;
    c.push_back({std::string(layer ? "layer_norm" : "rms_norm") + (affine ? " affine" : " plain") +
                     " [3,67,129] forward and backward",
                 {"norm", "norm_backward"}, 4e-6, t64, kBf16 + 4e-6, [=](const Env& e) {
                   const Shape s{3, 67, 129};
                   Tensor x = e.input(s, -2, 3), w = affine ? e.input({129}, 0.5, 1.5) : Tensor();
                   Tensor b = affine && layer ? e.input({129}) : Tensor();
                   Tensor y = e.output(s), mean = e.stat_output({3, 67}), rstd = e.stat_output({3, 67});
                   norm_kernel(e.device)(layer, x, w, b, 1e-5, y, mean, rstd);
                   Tensor gy = e.input(s), gx = e.output(s), gw = e.output({129}), gb = e.output({129});
                   norm_bwd_kernel(e.device)(layer, x, w, mean, rstd, gy, gx, gw, layer ? gb : Tensor());
                   Outputs o{out("y", y), out("rstd", rstd), out("gx", gx), out("gw", gw)};
                   if (layer) o.push_back(out("mean", mean)), o.push_back(out("gb", gb));
                   return o;
                 }});
  }

  for (DType it : {DType::i32, DType::i64})
    c.push_back({std::string("embedding forward and backward, ") + dtype_name(it) + " ids with repeats",
                 {"embedding", "embedding_backward"}, t32, t64, kBf16 + t32, [=](const Env& e) {
                   Tensor w = e.input({67, 33}), idx = e.ints({5, 63}, 0, 67, it);
                   Tensor y = e.output({5, 63, 33}), g = e.input({5, 63, 33}), gw = e.output({67, 33});
                   embedding_kernel(e.device)(w, idx, y);
                   embedding_bwd_kernel(e.device)(g, idx, gw);
                   return Outputs{out("y", y), out("gw", gw)};
                 }});

  c.push_back({"cross_entropy forward and backward [63,257], zero weights", {"cross_entropy", "cross_entropy_backward"},
               4e-6, t64, kBf16 + 4e-6, [](const Env& e) {
                 Tensor logits = e.input({63, 257}, -8, 8), t = e.ints({63}, 0, 257);
                 Tensor loss = e.stat_output({63}), lse = e.stat_output({63});
                 cross_entropy_kernel(e.device)(logits, t, loss, lse);
                 Tensor scale = e.grid({63}, 0, 1, 0.25).to(e.acc()), g = e.output({63, 257});
                 cross_entropy_bwd_kernel(e.device)(logits, t, lse, scale, g);
                 return Outputs{out("loss", loss), out("lse", lse), out("glogits", g)};
               }});

  c.push_back({"random: uniform, normal, trunc_normal streams (odd sizes, offset counters)", {"random"}, 0, 0, 0,
               [](const Env& e) {
                 Outputs o;
                 const PhiloxState st{12345, 77};
                 for (RandomKind k : {RandomKind::uniform, RandomKind::normal, RandomKind::trunc_normal}) {
                   Tensor y = e.output({1003});
                   random_kernel(e.device)(k, y, st, k == RandomKind::trunc_normal ? 0.02 : -1.0, 2.0);
                   o.push_back(out("kind " + std::to_string((int)k), y));
                 }
                 return o;
               },
               true});

  c.push_back({"rope: heads split by a permuted view [2,7,3,10] -> [2,3,7,10], forward and inverse", {"rope"}, t32, t64,
               kBf16 + t32, [](const Env& e) {
                 Tensor x = e.input({2, 7, 3, 10}).permute({0, 2, 1, 3}), cs = e.input({7, 5}), sn = e.input({7, 5});
                 Tensor y = e.output({2, 3, 7, 10}), back = e.output({2, 3, 7, 10});
                 rope_kernel(e.device)(x, cs, sn, false, y);
                 rope_kernel(e.device)(y, cs, sn, true, back);
                 return Outputs{out("y", y), out("inverse", back)};
               }});

  c.push_back({"swiglu forward and backward [1001] (a vector tail) and [3,67]", {"swiglu", "swiglu_backward"}, t32, t64,
               kBf16 + t32, [](const Env& e) {
                 Outputs o;
                 for (const Shape& s : {Shape{1001}, Shape{3, 67}}) {
                   Tensor a = e.input(s, -6, 6), b = e.input(s), g = e.input(s);
                   Tensor y = e.output(s), ga = e.output(s), gb = e.output(s), gb_only = e.output(s);
                   swiglu_kernel(e.device)(a, b, y);
                   swiglu_bwd_kernel(e.device)(a, b, g, ga, gb);
                   swiglu_bwd_kernel(e.device)(a, b, g, Tensor(), gb_only);  // one gradient asked
                   for (auto& x : {out("y", y), out("ga", ga), out("gb", gb), out("gb alone", gb_only)}) o.push_back(x);
                 }
                 return o;
               }});

  c.push_back({"adamw: one step with decay", {"adamw"}, t32, t64, kBf16 + t32, [](const Env& e) {
                 Tensor p = e.input({1001}), g = e.input({1001}), m = e.input({1001}, -0.1, 0.1),
                        v = e.input({1001}, 0, 0.01);
                 adamw_kernel(e.device)(p, g, m, v, AdamWArgs{1e-3, 0.9, 0.95, 1e-8, 0.1, 0.271, 0.0975});
                 return Outputs{out("p", p), out("m", m), out("v", v)};
               }});

  // kq_conv: sizes and pads of the paper and odd ones, both shared-memory and direct paths
  struct Kq {
    int64_t B, H, T, cq, ck, p;
  };
  for (const Kq& k : std::vector<Kq>{{2, 3, 63, 2, 9, 4},
                                     {1, 2, 67, 6, 11, 5},
                                     {2, 2, 67, 3, 4, 3},   // left
                                     {1, 3, 63, 4, 5, 0},   // right
                                     {1, 2, 5, 8, 3, 1},    // c_q > T
                                     {1, 1, 7, 2, 13, 6},   // c_k > T
                                     {1, 2, 67, 20, 301, 150}}) {  // halo beyond shared memory: direct path
    const std::string name = "kq_conv B" + std::to_string(k.B) + " H" + std::to_string(k.H) + " T" +
                             std::to_string(k.T) + " " + std::to_string(k.cq) + "x" + std::to_string(k.ck) + " p" +
                             std::to_string(k.p) + " forward and backward";
    c.push_back({name, {"kq_conv", "kq_conv_backward"}, 4e-6, t64, kBf16 + 4e-6, [=](const Env& e) {
                   const Shape s{k.B, k.H, k.T, k.T};
                   Tensor x = e.input(s), K = e.input({k.H, k.cq, k.ck}), y = e.output(s);
                   kq_conv_kernel(e.device)(x, K, k.p, y);
                   Tensor go = e.input(s), gx = e.output(s), gk = e.output({k.H, k.cq, k.ck});
                   kq_conv_bwd_kernel(e.device)(x, K, k.p, go, gx, gk);
                   Tensor gx_only = e.output(s), gk_only = e.output({k.H, k.cq, k.ck});
                   kq_conv_bwd_kernel(e.device)(x, K, k.p, go, gx_only, Tensor());
                   kq_conv_bwd_kernel(e.device)(x, K, k.p, go, Tensor(), gk_only);
                   return Outputs{out("y", y), out("gx", gx), out("gkernel", gk), out("gx alone", gx_only),
                                  out("gkernel alone", gk_only)};
                 }});
  }
  struct Hm {
    int64_t B, H, T, ch;
  };
  for (const Hm& h : std::vector<Hm>{{2, 6, 63, 1}, {2, 6, 63, 2}, {1, 6, 67, 3}, {2, 6, 33, 6}, {1, 80, 5, 80}}) {
    const std::string name = "head_mix B" + std::to_string(h.B) + " H" + std::to_string(h.H) + " T" +
                             std::to_string(h.T) + " c_h " + std::to_string(h.ch) + " forward and backward";
    c.push_back({name, {"head_mix", "head_mix_backward"}, 4e-6, t64, kBf16 + 4e-6, [=](const Env& e) {
                   const Shape s{h.B, h.H, h.T, h.T};
                   Tensor x = e.input(s), M = e.input({h.H / h.ch, h.ch, h.ch}), y = e.output(s);
                   head_mix_kernel(e.device)(x, M, y);
                   Tensor go = e.input(s), gx = e.output(s), gm = e.output(M.shape());
                   head_mix_bwd_kernel(e.device)(x, M, go, gx, gm);
                   return Outputs{out("y", y), out("gx", gx), out("gmix", gm)};
                 }});
  }
  // fused attention: plain (FlashAttention) and every MTA component, odd sizes
  struct Att {
    const char* name;
    int64_t B, H, T, D, cq, ck, p, cq_post, ck_post, p_post, ch;
    bool mix_pre, mix_post;
    bool o_in_dtype = false;  // o and dout in the run's dtype (bfloat16 in the bfloat16 run), not float32
  };
  for (const Att& t : std::vector<Att>{{"plain softmax", 2, 3, 67, 16, 0, 0, 0, 0, 0, 0, 0, false, false},
                                       {"every component, c_h 4", 1, 4, 37, 8, 3, 5, 2, 2, 3, 1, 4, true, true},
                                       {"post conv left pad, mix post c_h 2", 2, 4, 33, 8, 0, 0, 0, 3, 4, 3, 2, false, true},
                                       {"c_q > T, c_k > T, mix pre c_h 1", 1, 2, 5, 4, 7, 9, 4, 0, 0, 0, 1, true, false},
                                       // bfloat16 on CUDA: the tensor-core FlashAttention-2 (D 32/64/128)
                                       {"plain softmax D32", 1, 2, 67, 32, 0, 0, 0, 0, 0, 0, 0, false, false},
                                       {"plain softmax D64", 1, 1, 67, 64, 0, 0, 0, 0, 0, 0, 0, false, false},
                                       {"plain softmax D128", 1, 1, 33, 128, 0, 0, 0, 0, 0, 0, 0, false, false},
                                       {"plain softmax D64, o and dout bfloat16", 1, 1, 67, 64, 0, 0, 0, 0, 0, 0, 0, false,
                                        false, true},
                                       // bfloat16 on CUDA: MTA fused on the tensor cores (cuda/attention_mta_tc.cuh),
                                       // the option sets above at D 32/64/128, every pad mode (p = 0, centred, c_k - 1)
                                       {"every component, c_h 4, D32", 1, 4, 67, 32, 3, 5, 2, 2, 3, 1, 4, true, true},
                                       {"post conv left pad, mix post c_h 2, D64", 1, 4, 33, 64, 0, 0, 0, 3, 4, 3, 2, false,
                                        true},
                                       {"c_q > T, c_k > T, mix pre c_h 1, D32", 2, 2, 5, 32, 7, 9, 4, 0, 0, 0, 1, true, false},
                                       {"pre conv right pad, both mixes c_h 2, D128", 1, 2, 33, 128, 3, 4, 0, 0, 0, 0, 2, true,
                                        true},
                                       {"every component, c_h 2, D64, o and dout bfloat16", 2, 4, 37, 64, 2, 3, 1, 3, 3, 2, 2,
                                        true, true, true}}) {
    const bool tensor_cores = t.D >= 32;  // plain: FlashAttention-2; MTA: the fused MTA kernels
    c.push_back({std::string("attention ") + t.name + " T" + std::to_string(t.T) + " forward and backward",
                 {"attention", "attention_backward"}, 4e-6, t64, tensor_cores ? kBf16TensorCoreAttention : kBf16 + 4e-6,
                 [=](const Env& e) {
                   const Shape s{t.B, t.H, t.T, t.D};
                   Tensor q = e.input(s), k = e.input(s), v = e.input(s);
                   AttentionParams a;
                   a.scale = 0.4;
                   // bfloat16 q, k, v with float32 component kernels, o and lse: the
                   // mixed-precision contract (autograd/kernels.h).
                   if (t.cq) a.kq_pre = e.acc_input({t.H, t.cq, t.ck}, -0.5, 0.5), a.p_pre = t.p;
                   if (t.cq_post) a.kq_post = e.acc_input({t.H, t.cq_post, t.ck_post}, -0.5, 0.5), a.p_post = t.p_post;
                   if (t.mix_pre) a.mix_pre = e.acc_input({t.H / t.ch, t.ch, t.ch}, -0.5, 0.5);
                   if (t.mix_post) a.mix_post = e.acc_input({t.H / t.ch, t.ch, t.ch}, -0.5, 0.5);
                   Tensor o = t.o_in_dtype ? e.output(s) : e.stat_output(s), lse = e.stat_output({t.B, t.H, t.T});
                   attention_kernel(e.device)(q, k, v, a, o, lse);
                   Tensor dout = t.o_in_dtype ? e.input(s) : e.acc_input(s);
                   auto like = [&](const Tensor& x) { return x.defined() ? e.output(x.shape(), x.dtype()) : Tensor(); };
                   AttentionGrads g{like(q), like(k), like(v), like(a.kq_pre), like(a.mix_pre), like(a.kq_post),
                                    like(a.mix_post)};
                   attention_bwd_kernel(e.device)(q, k, v, o, lse, dout, a, g);
                   Outputs r{out("o", o), out("lse", lse), out("dq", g.dq), out("dk", g.dk), out("dv", g.dv)};
                   for (const Tensor* x : {&g.dkq_pre, &g.dmix_pre, &g.dkq_post, &g.dmix_post})
                     if (x->defined()) r.push_back(out("component gradient", *x));
                   return r;
                 }});
  }
  return c;
}

void print_support_matrix() {
  std::printf("kernel family            cpu   cuda\n");
  for (const KernelSupport& s : kernel_support())
    std::printf("%-24s %-5s %s\n", s.name, s.cpu ? "yes" : "NO", s.cuda ? "yes" : "NO");
}

}  // namespace

TEST_CASE("backend ops: every family has a kernel on every backend (support matrix)") {
  print_support_matrix();
  std::set<std::string> covered;
  for (const Case& k : cases()) covered.insert(k.families.begin(), k.families.end());
  for (const KernelSupport& s : kernel_support()) {
    CAPTURE(s.name);
    CHECK(s.cpu);
    CHECK(s.cuda);
    CHECK_MESSAGE(covered.count(s.name), "no backend-test case exercises this family");
  }
}

TEST_CASE("backend ops: CPU float32 and CUDA float32/float64 against the CPU float64 reference") {
  for (const Case& k : cases()) {
    CAPTURE(k.name);
    const uint64_t seed = std::hash<std::string>{}(k.name);
    const Outputs ref = k.run(Env{kCPU, DType::f64, seed});
    const Outputs cpu32 = k.run(Env{kCPU, DType::f32, seed});
    const Outputs cuda32 = k.run(Env{kCuda, DType::f32, seed});
    const Outputs cuda64 = k.run(Env{kCuda, DType::f64, seed});
    const Outputs cuda32_again = k.run(Env{kCuda, DType::f32, seed});
    CHECK_MESSAGE(same_bits(cuda32, cuda32_again), "CUDA float32 differs between two identical runs");
    if (k.bitwise_across_devices) {
      CHECK_MESSAGE(same_bits(cuda32, cpu32), "CUDA float32 is not bitwise the CPU's");
      CHECK_MESSAGE(same_bits(cuda64, ref), "CUDA float64 is not bitwise the CPU's");
      continue;
    }
    REQUIRE(ref.size() == cuda32.size());
    double worst[3] = {0, 0, 0};
    for (size_t o = 0; o < ref.size(); ++o) {
      CAPTURE(ref[o].name);
      const double e_cpu32 = norm_error(cpu32[o].values, ref[o].values);
      const double e_cuda32 = norm_error(cuda32[o].values, ref[o].values);
      const double e_cuda64 = norm_error(cuda64[o].values, ref[o].values);
      CHECK_MESSAGE(e_cpu32 <= k.tol32, "cpu float32 error " << e_cpu32 << " > " << k.tol32);
      CHECK_MESSAGE(e_cuda32 <= k.tol32, "cuda float32 error " << e_cuda32 << " > " << k.tol32);
      CHECK_MESSAGE(e_cuda64 <= k.tol64, "cuda float64 error " << e_cuda64 << " > " << k.tol64);
      worst[0] = std::max(worst[0], e_cpu32), worst[1] = std::max(worst[1], e_cuda32);
      worst[2] = std::max(worst[2], e_cuda64);
    }
    std::printf("%-80s cpu32 %8.1e  cuda32 %8.1e  cuda64 %8.1e  (tol %.0e / %.0e)\n", k.name.c_str(), worst[0],
                worst[1], worst[2], k.tol32, k.tol64);
  }
}

TEST_CASE("backend ops: CPU and CUDA bfloat16 against a float64 reference on the same (bfloat16) values") {
  for (const Case& k : cases()) {
    CAPTURE(k.name);
    const uint64_t seed = std::hash<std::string>{}(k.name);
    const Outputs cpu16 = k.run(Env{kCPU, DType::bf16, seed, true});
    const Outputs cuda16 = k.run(Env{kCuda, DType::bf16, seed, true});
    CHECK_MESSAGE(same_bits(cuda16, k.run(Env{kCuda, DType::bf16, seed, true})),
                  "CUDA bfloat16 differs between two identical runs");
    if (k.bitwise_across_devices) {
      CHECK_MESSAGE(same_bits(cuda16, cpu16), "CUDA bfloat16 is not bitwise the CPU's");
      continue;
    }
    const Outputs ref = k.run(Env{kCPU, DType::f64, seed, true});
    REQUIRE(ref.size() == cuda16.size());
    double worst[2] = {0, 0};
    for (size_t o = 0; o < ref.size(); ++o) {
      CAPTURE(ref[o].name);
      const double e_cpu = norm_error(cpu16[o].values, ref[o].values);
      const double e_cuda = norm_error(cuda16[o].values, ref[o].values);
      CHECK_MESSAGE(e_cpu <= k.tol16, "cpu bfloat16 error " << e_cpu << " > " << k.tol16);
      CHECK_MESSAGE(e_cuda <= k.tol16, "cuda bfloat16 error " << e_cuda << " > " << k.tol16);
      worst[0] = std::max(worst[0], e_cpu), worst[1] = std::max(worst[1], e_cuda);
    }
    std::printf("%-80s cpu16 %8.1e  cuda16 %8.1e  (tol %.1e)\n", k.name.c_str(), worst[0], worst[1], k.tol16);
  }
}

namespace {
// bfloat16 bits nearest to f by the definition, not by bit tricks: the two bfloat16 values
// around f compared in double (the one above the largest finite counts as 2^128, where
// IEEE rounding overflows), ties to the even mantissa. NaN: the quiet NaN with f's sign
// and top payload bits.
uint16_t bf16_reference(float f) {
  uint32_t u;
  std::memcpy(&u, &f, 4);
  if (std::isnan(f)) return (uint16_t)((u >> 16) | 0x40);
  if (std::isinf(f)) return (uint16_t)(u >> 16);
  const uint16_t lo = (uint16_t)(u >> 16), hi = (uint16_t)(lo + 1);  // toward zero, and one step away from it
  auto value = [](uint16_t b) {
    if ((b & 0x7fff) == 0x7f80) return std::copysign(std::ldexp(1.0, 128), (b & 0x8000) ? -1.0 : 1.0);
    uint32_t w = (uint32_t)b << 16;
    float x;
    std::memcpy(&x, &w, 4);
    return (double)x;
  };
  const double dlo = std::abs((double)f - value(lo)), dhi = std::abs((double)f - value(hi));
  if (dlo != dhi) return dlo < dhi ? lo : hi;
  return (lo & 1) ? hi : lo;
}

std::vector<uint16_t> bits_of(const Tensor& t) {
  Tensor c = t.to(kCPU);
  std::vector<uint16_t> b(c.numel());
  std::memcpy(b.data(), c.raw(), b.size() * 2);
  return b;
}
}  // namespace

TEST_CASE("bfloat16: float32 -> bfloat16 rounds to nearest even, bitwise the same on the CPU and CUDA") {
  std::vector<uint32_t> patterns;
  for (uint32_t sign : {0u, 0x80000000u})
    for (uint32_t exp = 0; exp < 256; ++exp)  // subnormals (0), normals, inf/NaN (255)
      for (uint32_t man : {0x0u, 0x1u, 0x7fffu, 0x8000u, 0x8001u, 0xffffu, 0x10000u, 0x17fffu, 0x18000u, 0x18001u,
                           0x400000u, 0x7f8000u, 0x7fffffu})
        patterns.push_back(sign | exp << 23 | man);
  uint64_t state = 7;
  for (int i = 0; i < 20000; ++i) {
    state = state * 6364136223846793005ull + 1442695040888963407ull;
    patterns.push_back((uint32_t)(state >> 32));
  }
  std::vector<float> values(patterns.size());
  std::memcpy(values.data(), patterns.data(), patterns.size() * 4);
  const Shape s{(int64_t)values.size()};
  Tensor src = Tensor::empty(s, {DType::f32, kCPU});
  std::memcpy(src.raw(), values.data(), values.size() * 4);
  std::vector<uint16_t> expect(values.size());
  for (size_t i = 0; i < values.size(); ++i) expect[i] = bf16_reference(values[i]);
  for (const Device& d : {kCPU, kCuda}) {
    CAPTURE(d.str());
    Tensor dst = Tensor::empty(s, {DType::bf16, d});
    copy_kernel(d)(src.to(d), dst);
    const std::vector<uint16_t> got = bits_of(dst);
    size_t wrong = 0, first = 0;
    for (size_t i = 0; i < got.size(); ++i)
      if (got[i] != expect[i] && !wrong++) first = i;
    CHECK_MESSAGE(wrong == 0, wrong << " wrong, first: float bits 0x" << std::hex << patterns[first] << " -> 0x"
                                    << got[first] << ", expected 0x" << expect[first]);
  }
  // The classes by name: a tie rounds to even, a carry reaches inf, a NaN stays NaN.
  CHECK(bf16_bits_from_float(1.0f + 0x1p-8f) == 0x3f80);          // tie, even below
  CHECK(bf16_bits_from_float(1.0f + 3 * 0x1p-8f) == 0x3f82);      // tie, even above
  CHECK(bf16_bits_from_float(3.3895314e38f) == 0x7f7f);           // the largest bfloat16
  CHECK(bf16_bits_from_float(std::numeric_limits<float>::max()) == 0x7f80);  // overflow to inf
  CHECK(std::isnan((float)bfloat16::from_bits(bf16_bits_from_float(bits_float(0x7f800001u)))));  // payload in the low half
  CHECK(bf16_bits_from_float(0x1p-133f) == 0x0001);  // the smallest subnormal bfloat16
}

TEST_CASE("bfloat16: every bfloat16 widens to float32 exactly, on the CPU and CUDA, and converts to int and back") {
  std::vector<uint16_t> all(65536);
  for (uint32_t b = 0; b < 65536; ++b) all[b] = (uint16_t)b;
  Tensor src = Tensor::empty({65536}, {DType::bf16, kCPU});
  std::memcpy(src.raw(), all.data(), all.size() * 2);
  for (const Device& d : {kCPU, kCuda}) {
    CAPTURE(d.str());
    Tensor wide = Tensor::empty({65536}, {DType::f32, d});
    copy_kernel(d)(src.to(d), wide);
    Tensor w = wide.to(kCPU);
    const auto* f = static_cast<const uint32_t*>(w.raw());
    size_t wrong = 0;
    for (uint32_t b = 0; b < 65536; ++b) wrong += f[b] != b << 16;
    CHECK(wrong == 0);
    Tensor back = Tensor::empty({65536}, {DType::bf16, d});
    copy_kernel(d)(wide, back);
    std::vector<uint16_t> expect = all;  // a signalling NaN comes back quiet, its sign and payload kept
    for (auto& e : expect)
      if ((e & 0x7f80) == 0x7f80 && (e & 0x7f)) e |= 0x40;
    CHECK(bits_of(back) == expect);
  }
  Tensor ints = from_vector<int64_t>({-256, -3, 0, 1, 255, 256, 257, 1000}, {8}, {DType::i64});
  Tensor b16 = ints.to(DType::bf16);
  CHECK(b16.to(DType::i64).to_vector<int64_t>() == std::vector<int64_t>{-256, -3, 0, 1, 255, 256, 256, 1000});
}
