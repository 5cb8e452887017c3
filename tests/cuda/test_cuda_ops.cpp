// Every differentiable op, and whole attention layers and models of every variant, run
// through autograd on the CPU and on CUDA from the same inputs: outputs and the gradient
// of every input must agree, float64 to 1e-12 (normalised), float32 to 2e-5. This checks
// the ops' use of the kernels on a device (views, broadcasting, saved tensors, the
// backward formulas) where tests/cuda/test_backend_ops.cpp checks the kernels alone.
#include <doctest/doctest.h>

#include <cmath>
#include <cstdio>
#include <functional>
#include <string>
#include <vector>

#include "autograd/attention_cost.h"
#include "autograd/autocast.h"
#include "autograd/ops.h"
#include "layers/attention.h"
#include "layers/transformer.h"

using namespace mtalab;

namespace {

const Device kCuda{DeviceKind::cuda, 0};

struct Input {
  Shape shape;
  double lo = -1, hi = 1;
};
struct OpCase {
  std::string name;
  std::vector<Input> inputs;
  std::function<Tensor(const TensorList&)> f;
  // Matrix products in sequence on the longest path from an input to the output, which
  // bf16 mode computes from bfloat16 operands (autograd/autocast.h); 0: all float32.
  int bf16_products = 0;
};

double norm_error(const std::vector<double>& a, const std::vector<double>& ref) {
  double d = 0, s = 0;
  for (size_t i = 0; i < a.size(); ++i) {
    if (std::isnan(a[i]) != std::isnan(ref[i])) return INFINITY;
    if (std::isnan(a[i])) continue;
    d = std::max(d, std::abs(a[i] - ref[i]));
    s = std::max(s, std::abs(ref[i]));
  }
  return d / std::max(s, 1e-300);
}

struct Result {
  std::vector<double> y;
  std::vector<std::vector<double>> grads;
};

// Forward, then backward of sum(y * R) with a fixed R, on `dev` in `dt` (in bf16 mode:
// float32 tensors, the forward inside AutocastGuard(bf16)).
Result run(const OpCase& c, Device dev, DType dt, uint64_t seed, bool bf16_mode = false) {
  TensorList in;
  for (size_t k = 0; k < c.inputs.size(); ++k) {
    Generator g(seed + k);
    Tensor x = uniform(c.inputs[k].shape, c.inputs[k].lo, c.inputs[k].hi, g, {DType::f64});
    in.push_back(x.to(dt).to(dev).set_requires_grad(true));
  }
  Tensor y;
  {
    AutocastGuard guard(bf16_mode ? DType::bf16 : DType::f32);
    y = c.f(in);
  }
  Generator gr(seed + 1000);
  Tensor R = uniform(y.shape(), 0.5, 1.5, gr, {DType::f64}).to(dt).to(dev);
  sum(mul(y, R)).backward();
  Result r;
  r.y = y.to_vector<double>();
  for (auto& x : in) r.grads.push_back(x.grad().defined() ? x.grad().to_vector<double>() : std::vector<double>());
  return r;
}

void compare(const OpCase& c) {
  CAPTURE(c.name);
  const uint64_t seed = std::hash<std::string>{}(c.name) % 100000;
  for (DType dt : {DType::f64, DType::f32}) {
    CAPTURE(dtype_name(dt));
    const double tol = dt == DType::f64 ? 1e-12 : 2e-5;
    const Result cpu = run(c, kCPU, dt, seed), gpu = run(c, kCuda, dt, seed);
    CHECK(norm_error(gpu.y, cpu.y) <= tol);
    for (size_t k = 0; k < cpu.grads.size(); ++k) {
      CAPTURE(k);
      REQUIRE(gpu.grads[k].size() == cpu.grads[k].size());
      CHECK(norm_error(gpu.grads[k], cpu.grads[k]) <= tol);
    }
  }
}

std::vector<OpCase> op_cases() {
  using L = const TensorList&;
  const Shape a{3, 5, 7}, row{1, 5, 7}, col{3, 1, 7};
  std::vector<OpCase> c = {
      {"add, sub, mul, div with broadcasting", {{a}, {row}, {col, 0.5, 2}},
       [](L x) { return div(sub(add(x[0], x[1]), mul(x[0], x[1])), x[2]); }},
      {"pow, maximum, scalar forms", {{a, 0.2, 2}, {a, 0.5, 1.5}, {a}},
       [](L x) { return add(maximum(pow(x[0], x[1]), x[2]), rdiv(2.0, add(x[0], 1.0))); }},
      {"unary chain", {{a, 0.1, 2}},
       [](L x) {
         return add(add(mul(exp(x[0]), log(x[0])), mul(sqrt(x[0]), rsqrt(x[0]))),
                    add(add(tanh(x[0]), sigmoid(x[0])), add(add(silu(neg(x[0])), gelu(x[0])), square(abs(x[0])))));
       }},
      {"relu and where, masked_fill", {{a}, {a}},
       [](L x) { return masked_fill(where(gt(x[0], x[1]), relu(x[0]), x[1]), lt(x[1], x[0]), 0.25); }},
      {"sum, mean, max over dims, logsumexp", {{a}},
       [](L x) {
         return add(add(sum(x[0], {0, 2}, true), mean(x[0], {1}, true)),
                    add(max(x[0], {2}, true), logsumexp(x[0], 2, true)));
       }},
      {"matmul with broadcast batch, linear with bias", {{{2, 3, 4, 6}}, {{6, 5}}, {{7, 5}}, {{7}}},
       [](L x) { return linear(matmul(x[0], x[1]), x[2], x[3]); }, 2},
      {"views: permute, transpose, slice, expand, concat, split, contiguous", {{{4, 3, 6}}},
       [](L x) {
         Tensor p = contiguous(permute(x[0], {2, 0, 1}));  // [6, 4, 3]
         TensorList parts = split(p, {2, 4}, 0);
         Tensor s = slice(transpose(parts[1], 0, 2), 1, 1, 3);  // [3, 2, 4]
         return concat({s, expand(slice(parts[0], 0, 0, 1).permute({0, 2, 1}), {3, 3, 4})}, 1);
       }},
      {"dtype casts", {{a}}, [](L x) { return to_dtype(mul(to_dtype(x[0], DType::f32), 3.0), x[0].dtype()); }},
      {"softmax, log_softmax, causal_softmax", {{{2, 3, 9, 9}, -3, 3}},
       [](L x) { return add(add(softmax(x[0]), log_softmax(x[0])), causal_softmax(x[0])); }},
      {"rms_norm, layer_norm", {{{4, 6, 33}}, {{33}, 0.5, 1.5}, {{33}}},
       [](L x) { return add(rms_norm(x[0], x[1], 1e-5), layer_norm(x[0], x[1], x[2], 1e-5)); }},
      {"kq_conv every pad, head_mix", {{{2, 4, 11, 11}}, {{4, 3, 5}}, {{2, 2, 2}}},
       [](L x) {
         Tensor k = kq_conv(x[0], x[1], KqPad::both);
         return add(add(head_mix(k, x[2]), kq_conv(x[0], x[1], KqPad::left)), kq_conv(x[0], x[1], KqPad::right));
       }},
      {"a whole MTA attention from q, k, v", {{{1, 4, 13, 4}}, {{1, 4, 13, 4}}, {{1, 4, 13, 4}}, {{4, 3, 5}},
                                             {{1, 4, 4}}, {{4, 2, 3}}, {{2, 2, 2}}},
       [](L x) {
         Tensor s = mul(matmul(x[0], transpose(x[1], -1, -2)), 0.5);
         Tensor p = causal_softmax(head_mix(kq_conv(s, x[3], KqPad::both), x[4]));
         return matmul(head_mix(kq_conv(p, x[5], KqPad::left), x[6]), x[2]);
       }, 2},
      {"fused attention, plain softmax", {{{2, 3, 21, 8}}, {{2, 3, 21, 8}}, {{2, 3, 21, 8}}},
       [](L x) { return fused_attention(x[0], x[1], x[2], 0.35); }, 2},
      // bf16 mode on CUDA: the tensor-core FlashAttention-2 (head dims 32, 64, 128), odd T
      {"fused attention, plain softmax, D 32", {{{1, 2, 37, 32}}, {{1, 2, 37, 32}}, {{1, 2, 37, 32}}},
       [](L x) { return fused_attention(x[0], x[1], x[2], 0.2); }, 2},
      {"fused attention, plain softmax, D 128", {{{1, 1, 19, 128}}, {{1, 1, 19, 128}}, {{1, 1, 19, 128}}},
       [](L x) { return fused_attention(x[0], x[1], x[2], 0.1); }, 2},
      {"fused attention, every MTA component", {{{1, 4, 19, 4}}, {{1, 4, 19, 4}}, {{1, 4, 19, 4}}, {{4, 3, 5}},
                                              {{1, 4, 4}}, {{4, 2, 3}}, {{1, 4, 4}}},
       [](L x) {
         MtaMaps m{x[3], x[4], x[5], x[6], KqPad::both};
         return fused_attention(x[0], x[1], x[2], 0.5, m);
       }, 2},
      // bf16 mode on CUDA: MTA fused on the tensor cores (cuda/attention_mta_tc.cuh)
      {"fused attention, every MTA component, D 32, right pad", {{{1, 4, 21, 32}}, {{1, 4, 21, 32}},
                                                                 {{1, 4, 21, 32}}, {{4, 3, 5}}, {{2, 2, 2}},
                                                                 {{4, 2, 3}}, {{2, 2, 2}}},
       [](L x) {
         MtaMaps m{x[3], x[4], x[5], x[6], KqPad::right};
         return fused_attention(x[0], x[1], x[2], 0.2, m);
       }, 2},
  };
  return c;
}

}  // namespace

TEST_CASE("cuda ops: every differentiable op agrees with the CPU, values and gradients") {
  for (const OpCase& c : op_cases()) compare(c);
}

// bf16 mode against float64, on both devices. An op outside autocast's list runs in
// float32: the float32 tolerance. A matrix product from bfloat16 operands moves each term
// a_k b_k by at most 2u (u = 2^-8, each operand rounded once); the gradient's products
// round the incoming gradient too, so a path of n products sees n + 1 roundings of up
// to 2u each: an entry moves by at most 2u (n + 1) sum_k |a_k b_k|. Normalised by the
// largest entry, that is 2u (n + 1) times the ratio of sum|a_k b_k| to the largest
// |sum a_k b_k|; these inputs are uniform with both signs and the sums short (K <= 19),
// and the tolerance allows the ratio 2: 4u (n + 1). (Measured: about u, the roundings'
// errors having random signs.)
TEST_CASE("cuda ops: every differentiable op in bf16 mode against float64, on the CPU and CUDA") {
  constexpr double u = 0x1p-8;
  for (const OpCase& c : op_cases()) {
    CAPTURE(c.name);
    const uint64_t seed = std::hash<std::string>{}(c.name) % 100000;
    const double tol = c.bf16_products ? 4 * u * (c.bf16_products + 1) : 2e-5;
    const Result ref = run(c, kCPU, DType::f64, seed);
    double worst = 0;
    for (Device dev : {kCPU, kCuda}) {
      CAPTURE(dev.str());
      const Result r = run(c, dev, DType::f32, seed, true);
      const double ey = norm_error(r.y, ref.y);
      CHECK(ey <= tol);
      worst = std::max(worst, ey);
      for (size_t k = 0; k < ref.grads.size(); ++k) {
        CAPTURE(k);
        REQUIRE(r.grads[k].size() == ref.grads[k].size());
        const double eg = norm_error(r.grads[k], ref.grads[k]);
        CHECK(eg <= tol);
        worst = std::max(worst, eg);
      }
    }
    std::printf("bf16 mode: %-70s worst %.2e (tol %.2e)\n", c.name.c_str(), worst, tol);
  }
}

TEST_CASE("cuda ops: embedding, cross-entropy with a mask, dropout") {
  for (DType dt : {DType::f64, DType::f32}) {
    CAPTURE(dtype_name(dt));
    const double tol = dt == DType::f64 ? 1e-12 : 2e-5;
    auto go = [&](Device dev) {
      Generator g(5);
      Tensor w = uniform({23, 8}, -1, 1, g, {DType::f64}).to(dt).to(dev).set_requires_grad(true);
      Tensor idx = from_vector<int32_t>({1, 5, 5, 22, 0, 5, 3, 1, 7, 7, 2, 9}, {3, 4}, {DType::i32, dev});
      Tensor tgt = from_vector<int32_t>({4, 0, 2, 1, 3, 3, 7, 0, 5, 6, 1, 2}, {3, 4}, {DType::i32, dev});
      Tensor mask = from_vector<double>({1, 1, 0, 1, 0, 1, 1, 1, 0, 0, 1, 1}, {3, 4}, {dt, dev});
      Generator dg(11);
      Tensor h = dropout(embedding(w, idx), 0.3, dg, true);
      Tensor loss = cross_entropy(h, tgt, mask);
      loss.backward();
      return std::make_pair(loss.item(), w.grad().to_vector<double>());
    };
    const auto cpu = go(kCPU), gpu = go(kCuda);
    CHECK(std::abs(gpu.first - cpu.first) <= tol * std::abs(cpu.first));
    CHECK(norm_error(gpu.second, cpu.second) <= tol);
  }
}

TEST_CASE("cuda ops: a model of every attention variant, forward and every parameter gradient") {
  for (const AttentionVariant* v : AttentionRegistry::list()) {
    if (v->name.rfind("test_", 0) == 0) continue;
    CAPTURE(v->name);
    ModelConfig mc;
    mc.d_model = 16;
    mc.n_layers = 2;
    mc.n_heads = 4;
    mc.max_seq_len = 12;
    mc.dtype = DType::f64;
    mc.attention = v->name;
    mc.attention_options = AttentionRegistry::options_for(v->name);
    if (v->name == "mta") mc.attention_options.set("kq_layers", "all");
    auto go = [&](Device dev) {
      Transformer m(mc);
      m.to(dev);
      std::vector<int32_t> toks(2 * 12);
      for (size_t i = 0; i < toks.size(); ++i) toks[i] = (int32_t)((i * 37 + 11) % 256);
      Tensor t = from_vector<int32_t>(toks, {2, 12}, {DType::i32, dev});
      Generator g(1);
      Tensor logits = m.forward(t, g);
      cross_entropy(logits, t).backward();
      std::vector<std::vector<double>> out{logits.to_vector<double>()};
      for (auto& [n, p] : m.named_parameters()) out.push_back(p.grad().to_vector<double>());
      return out;
    };
    const auto cpu = go(kCPU), gpu = go(kCuda);
    REQUIRE(cpu.size() == gpu.size());
    for (size_t k = 0; k < cpu.size(); ++k) {
      CAPTURE(k);
      CHECK(norm_error(gpu[k], cpu[k]) <= 1e-11);
    }
  }
}

TEST_CASE("cuda ops: Module::to moves parameters in place, and initial values do not depend on the device") {
  ModelConfig mc;
  mc.d_model = 16;
  mc.n_layers = 1;
  mc.n_heads = 2;
  mc.max_seq_len = 8;
  mc.attention = "mta";
  mc.attention_options = AttentionRegistry::options_for("mta");
  Transformer m(mc);
  const auto before = m.named_parameters();
  std::vector<std::vector<float>> host;
  for (auto& [n, p] : before) host.push_back(p.to_vector<float>());
  m.to(kCuda);
  const auto after = m.named_parameters();
  REQUIRE(after.size() == before.size());
  for (size_t i = 0; i < after.size(); ++i) {
    CAPTURE(after[i].first);
    CHECK(after[i].second.same(before[i].second));  // the same parameter object
    CHECK(after[i].second.device() == kCuda);
    CHECK(after[i].second.to_vector<float>() == host[i]);
  }
  // Random draws are bitwise the same on either device: a model could equally be built there.
  Generator g1(42), g2(42);
  CHECK(trunc_normal({1000}, 0.02, 3.0, g1, {DType::f32, kCuda}).to_vector<float>() ==
        trunc_normal({1000}, 0.02, 3.0, g2, {DType::f32}).to_vector<float>());
}

TEST_CASE("cuda ops: the caching allocator reuses freed blocks, and ops stay right with it") {
  const bool was = cuda_set_caching(true);
  cuda_empty_cache();
  {
    Tensor a = full({1000}, 1.0, {DType::f32, kCuda});
    (void)a;
  }
  const size_t cached = cuda_cached_bytes();
  CHECK(cached >= 4000);
  Tensor b = Tensor::empty({1000}, {DType::f32, kCuda});  // the same size class: the block comes back
  CHECK(cuda_cached_bytes() == cached - 4096);
  if (std::string(cuda_backend_kind()) == "emulated") {
    // The emulator poisons reused blocks too, so an unwritten entry still reads NaN.
    const std::vector<float> v = b.to_vector<float>();
    CHECK(std::isnan(v[0]));
    CHECK(std::isnan(v[999]));
  }
  compare(op_cases().back());  // a whole MTA attention with caching on
  cuda_set_caching(was);
  cuda_empty_cache();
  CHECK(cuda_cached_bytes() == 0);
}

TEST_CASE("cuda ops: the attention cost model counts FlashAttention's FLOPs and the tiled kernels' bytes") {
  // 4 B H T^2 D, halved for causal; the backward 2.5 times the forward.
  CHECK(attention_flops(1, 1, 4, 2, false, false) == 128);
  CHECK(attention_flops(1, 1, 4, 2, true, false) == 64);
  CHECK(attention_flops(2, 3, 4, 2, true, true) == 2.5 * 6 * 64);
  // T = 67, D = 32: query tiles [0, 64) and [64, 67) read 1 and 2 key tiles of 64 rows;
  // bytes: Q 67 rows + K, V 3 * 64 rows each (64 B a bf16 row), O float32, lse.
  const AttentionCost f = attention_cost(1, 1, 67, 32, false);
  CHECK(f.flops == 0.5 * 4 * 67 * 67 * 32);
  CHECK(f.bytes == 67 * 64 + 2 * 192 * 64 + 67 * 32 * 4 + 67 * 4);
  // The backward moves at least every tensor it reads or writes once.
  const AttentionCost b = attention_cost(2, 2, 67, 128, true);
  CHECK(b.flops == 2.5 * 4 * 0.5 * 4 * 67 * 67 * 128);
  CHECK(b.bytes >= 4.0 * (67 * 128 * 2 * 3 + 67 * 128 * 4 * 5));
  CHECK(bf16_peak_tflops("NVIDIA H100 80GB HBM3") == 989.4);
  CHECK(bf16_peak_tflops("emulated (CPU fibers)") == 0);
}
