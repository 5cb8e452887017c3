// CUDA kernel benchmark (a GPU machine only; scripts/gpu_check.sh runs it): every kernel
// family of the CUDA backend timed on the device, side by side with a peer where one
// exists in the same run — cuBLAS's sgemm for matmul, cuDNN's softmax for softmax, and a
// cuDNN grouped convolution over the Mask_0'ed maps for the key-query convolution (whose
// lower triangle is also compared with ours, a cross-check of values). Families without a
// peer report time and effective bandwidth. A training step of a small model is timed
// on the GPU and on the CPU.
//
//   bench_cuda [--repeats N]       prints one table; ratio = peer_ms / mtalab_ms (> 1: ours faster)
#include <cublas_v2.h>
#include <cuda_runtime.h>
#include <cudnn.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <functional>
#include <string>
#include <vector>

#include "autograd/attention_cost.h"
#include "autograd/autocast.h"
#include "autograd/kernels.h"
#include "autograd/ops.h"
#include "experiments/train/optimizer.h"
#include "layers/attention.h"
#include "layers/transformer.h"

using namespace mtalab;

namespace {

const Device kGpu{DeviceKind::cuda, 0};
int g_repeats = 20;

#define CK(call)                                                                   \
  do {                                                                             \
    const auto s_ = (call);                                                        \
    if ((int)s_ != 0) {                                                            \
      std::fprintf(stderr, "%s failed (%d) at %s:%d\n", #call, (int)s_, __FILE__, __LINE__); \
      std::exit(1);                                                                \
    }                                                                              \
  } while (0)

// Median milliseconds of f over g_repeats timed calls (after 3 warm-up calls), the device
// synchronised around each call.
double time_ms(const std::function<void()>& f) {
  for (int i = 0; i < 3; ++i) f();
  cuda_synchronize();
  std::vector<double> t;
  for (int i = 0; i < g_repeats; ++i) {
    const auto t0 = std::chrono::steady_clock::now();
    f();
    cuda_synchronize();
    t.push_back(std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count());
  }
  std::sort(t.begin(), t.end());
  return t[t.size() / 2];
}

void row(const std::string& name, double ms, double peer_ms, double bytes, const std::string& note = "") {
  std::printf("%-44s %10.3f %10s %7s %9.1f  %s\n", name.c_str(), ms,
              peer_ms > 0 ? std::to_string(peer_ms).substr(0, 8).c_str() : "-",
              peer_ms > 0 ? std::to_string(peer_ms / ms).substr(0, 5).c_str() : "-", bytes / (ms * 1e6), note.c_str());
  std::fflush(stdout);
}

Tensor rnd(const Shape& s, uint64_t seed, double lo = -1, double hi = 1) {
  Generator g(seed);
  return uniform(s, lo, hi, g, {DType::f32, kGpu});
}

void bench_matmul(cublasHandle_t blas) {
  for (int64_t n : {1024, 4096}) {
    Tensor a = rnd({n, n}, 1), b = rnd({n, n}, 2), c = Tensor::empty({n, n}, {DType::f32, kGpu});
    const double ours = time_ms([&] { matmul_kernel(kGpu)(a, b, c); });
    const float one = 1, zero = 0;
    const double peer = time_ms([&] {
      CK(cublasSgemm(blas, CUBLAS_OP_N, CUBLAS_OP_N, (int)n, (int)n, (int)n, &one, (const float*)b.raw(), (int)n,
                     (const float*)a.raw(), (int)n, &zero, (float*)c.raw(), (int)n));
    });
    row("matmul " + std::to_string(n) + "^3 (vs cublasSgemm)", ours, peer, 3.0 * n * n * 4,
        std::to_string((int)(2.0 * n * n * n / (ours * 1e9))) + " GFLOP/s");
  }
}

// bfloat16 products at the 124M model's shapes (d = 768, 8 x 1024 tokens): the kernel
// (bf16 operands, float32 result through cublasGemmStridedBatchedEx) and the mixed-precision
// op (its float32 -> bfloat16 casts included) against cublasGemmEx called directly, in
// TFLOP/s. Target (issue 15): the kernel at >= 90% of cuBLAS.
void bench_matmul_bf16(cublasHandle_t blas) {
  const int64_t N = 8 * 1024, d = 768, h = 2048;
  struct G {
    const char* what;
    int64_t m, k, n;
  };
  for (const G& g : {G{"bf16 gemm qkv/out 8192x768x768", N, d, d}, G{"bf16 gemm ffn in 8192x768x2048", N, d, h},
                     G{"bf16 gemm ffn out 8192x2048x768", N, h, d}, G{"bf16 gemm lm head 8192x768x256", N, d, 256}}) {
    Tensor a32 = rnd({g.m, g.k}, 1), b32 = rnd({g.k, g.n}, 2);
    Tensor a = a32.to(DType::bf16), b = b32.to(DType::bf16), c = Tensor::empty({g.m, g.n}, {DType::f32, kGpu});
    const double ours = time_ms([&] { matmul_kernel(kGpu)(a, b, c); });
    const double op = time_ms([&] {
      AutocastGuard mixed(DType::bf16);
      (void)matmul(a32, b32);
    });
    const float one = 1, zero = 0;
    const double peer = time_ms([&] {
      CK(cublasGemmEx(blas, CUBLAS_OP_N, CUBLAS_OP_N, (int)g.n, (int)g.m, (int)g.k, &one, b.raw(), CUDA_R_16BF, (int)g.n,
                      a.raw(), CUDA_R_16BF, (int)g.k, &zero, c.raw(), CUDA_R_32F, (int)g.n, CUBLAS_COMPUTE_32F,
                      CUBLAS_GEMM_DEFAULT));
    });
    const double tf = 2.0 * g.m * g.k * g.n / 1e12;
    row(g.what, ours, peer, 2.0 * (g.m * g.k + g.k * g.n) + 4.0 * g.m * g.n,
        "kernel " + std::to_string(tf / (ours / 1e3)).substr(0, 6) + " TFLOP/s, cuBLAS " +
            std::to_string(tf / (peer / 1e3)).substr(0, 6) + ", op with casts " + std::to_string(tf / (op / 1e3)).substr(0, 6));
  }
}

// One attention shape on the tensor cores (bf16 q, k, v, float32 o as the mixed-precision op
// asks), forward and backward, beside the float32 band path of cuda/attention.cu in the same
// run (T <= 2048: cuBLAS over bands of full rows), in TFLOP/s by FlashAttention's count
// (autograd/attention_cost.h) and % of the device's dense bf16 peak. `mta` adds the paper's
// language-model components: kq_pre c_q 6 x c_k 11 (keys centred, p 5), mix_post c_h 2.
void bench_attention_shape(const char* label, bool mta, int64_t B, int64_t H, int64_t T, int64_t D) {
  const double peak = bf16_peak_tflops(cuda_device_name(0));
  const Shape s{B, H, T, D};
  Tensor q32 = rnd(s, 1), k32 = rnd(s, 2), v32 = rnd(s, 3), dout = rnd(s, 4);
  Tensor q = q32.to(DType::bf16), k = k32.to(DType::bf16), v = v32.to(DType::bf16);
  auto f32 = [&](const Shape& sh) { return Tensor::empty(sh, {DType::f32, kGpu}); };
  Tensor o = f32(s), lse = f32({B, H, T}), o_ref = f32(s), lse_ref = f32({B, H, T});
  AttentionParams a;
  a.scale = 1.0 / std::sqrt((double)D);
  if (mta) a.kq_pre = rnd({H, 6, 11}, 5, -0.1, 0.1), a.p_pre = 5, a.mix_post = rnd({H / 2, 2, 2}, 6, -0.5, 0.5);
  auto like = [&](const Tensor& t) { return t.defined() ? f32(t.shape()) : Tensor(); };
  auto grads = [&] { return AttentionGrads{f32(s), f32(s), f32(s), like(a.kq_pre), Tensor(), Tensor(), like(a.mix_post)}; };
  AttentionGrads g = grads(), g_ref = grads();
  const double fwd = time_ms([&] { attention_kernel(kGpu)(q, k, v, a, o, lse); });
  const double bwd = time_ms([&] { attention_bwd_kernel(kGpu)(q, k, v, o, lse, dout, a, g); });
  double fwd_ref = 0, bwd_ref = 0;
  if (T <= 2048) {
    fwd_ref = time_ms([&] { attention_kernel(kGpu)(q32, k32, v32, a, o_ref, lse_ref); });
    bwd_ref = time_ms([&] { attention_bwd_kernel(kGpu)(q32, k32, v32, o_ref, lse_ref, dout, a, g_ref); });
  }
  for (bool backward : {false, true}) {
    const AttentionCost c = attention_cost(B, H, T, D, backward);
    const double ms = backward ? bwd : fwd, tf = c.flops / (ms * 1e9);
    char name[96], note[128];
    std::snprintf(name, sizeof name, "attention %s bf16 tc %s T%lld D%lld B%lld H%lld (vs f32 band)", label,
                  backward ? "bwd" : "fwd", (long long)T, (long long)D, (long long)B, (long long)H);
    std::snprintf(note, sizeof note, "%.1f TFLOP/s%s", tf,
                  peak > 0 ? (", " + std::to_string(100 * tf / peak).substr(0, 5) + "% of bf16 peak").c_str() : "");
    row(name, ms, backward ? bwd_ref : fwd_ref, c.bytes, note);
  }
}

// Softmax (cuda/attention_flash.cuh) at FlashAttention-2's benchmark shapes (B T = 16K tokens,
// H D = 2048); MTA fused (cuda/attention_mta_tc.cuh) at B T = 8K, H D = 1024, its TFLOP/s the
// softmax-equivalent count (MTA's halos and extra passes are work the count leaves out).
void bench_attention_tc() {
  for (int64_t D : {64, 128})
    for (int64_t T : {1024, 2048, 4096, 8192, 16384}) bench_attention_shape("softmax", false, 16384 / T, 2048 / D, T, D);
  for (int64_t D : {64, 128})
    for (int64_t T : {1024, 2048, 4096}) bench_attention_shape("MTA", true, 8192 / T, 1024 / D, T, D);
}

void bench_softmax(cudnnHandle_t dnn) {
  const int64_t rows = 4 * 16 * 2048, T = 2048;
  Tensor x = rnd({rows, T}, 3), y = Tensor::empty({rows, T}, {DType::f32, kGpu});
  const double ours = time_ms([&] { softmax_kernel(kGpu)(x, y, false, false); });
  cudnnTensorDescriptor_t d;
  CK(cudnnCreateTensorDescriptor(&d));
  CK(cudnnSetTensor4dDescriptor(d, CUDNN_TENSOR_NCHW, CUDNN_DATA_FLOAT, (int)rows, (int)T, 1, 1));
  const float one = 1, zero = 0;
  const double peer = time_ms([&] {
    CK(cudnnSoftmaxForward(dnn, CUDNN_SOFTMAX_ACCURATE, CUDNN_SOFTMAX_MODE_INSTANCE, &one, d, x.raw(), &zero, d,
                           y.raw()));
  });
  row("softmax [131072, 2048] (vs cudnnSoftmaxForward)", ours, peer, 2.0 * rows * T * 4);
  Tensor maps = rnd({4, 16, T, T}, 4), p = Tensor::empty(maps.shape(), maps.options());
  row("causal softmax [4,16,2048,2048]", time_ms([&] { softmax_kernel(kGpu)(maps, p, false, true); }), 0,
      2.0 * maps.numel() * 4 / 2);
  cudnnDestroyTensorDescriptor(d);
}

// kq_conv with 'both' padding equals a grouped cross-correlation of Mask_0(x) padded by
// (c_q - 1, p), whose first T rows are ours on and below the diagonal.
void bench_kq_conv(cudnnHandle_t dnn) {
  const int B = 2, H = 16, T = 1024, cq = 6, ck = 11, p = 5;
  Tensor x = rnd({B, H, T, T}, 5), K = rnd({H, cq, ck}, 6), y = Tensor::empty(x.shape(), x.options());
  const double ours = time_ms([&] { kq_conv_kernel(kGpu)(x, K, p, y); });
  Tensor gx = Tensor::empty(x.shape(), x.options()), gk = Tensor::empty(K.shape(), K.options());
  const double ours_bwd = time_ms([&] { kq_conv_bwd_kernel(kGpu)(x, K, p, x, gx, gk); });
  Tensor xm = causal_softmax(x);  // any map that is 0 above the diagonal would do: Mask_0 holds
  kq_conv_kernel(kGpu)(xm, K, p, y);
  cudnnTensorDescriptor_t in, out;
  cudnnFilterDescriptor_t f;
  cudnnConvolutionDescriptor_t conv;
  CK(cudnnCreateTensorDescriptor(&in));
  CK(cudnnCreateTensorDescriptor(&out));
  CK(cudnnCreateFilterDescriptor(&f));
  CK(cudnnCreateConvolutionDescriptor(&conv));
  CK(cudnnSetTensor4dDescriptor(in, CUDNN_TENSOR_NCHW, CUDNN_DATA_FLOAT, B, H, T, T));
  CK(cudnnSetFilter4dDescriptor(f, CUDNN_DATA_FLOAT, CUDNN_TENSOR_NCHW, H, 1, cq, ck));
  CK(cudnnSetConvolution2dDescriptor(conv, cq - 1, p, 1, 1, 1, 1, CUDNN_CROSS_CORRELATION, CUDNN_DATA_FLOAT));
  CK(cudnnSetConvolutionGroupCount(conv, H));
  int on, oc, oh, ow;
  CK(cudnnGetConvolution2dForwardOutputDim(conv, in, f, &on, &oc, &oh, &ow));
  CK(cudnnSetTensor4dDescriptor(out, CUDNN_TENSOR_NCHW, CUDNN_DATA_FLOAT, on, oc, oh, ow));
  cudnnConvolutionFwdAlgoPerf_t perf[8];
  int found = 0;
  CK(cudnnGetConvolutionForwardAlgorithm_v7(dnn, in, f, conv, out, 8, &found, perf));
  size_t ws_bytes = 0;
  CK(cudnnGetConvolutionForwardWorkspaceSize(dnn, in, f, conv, out, perf[0].algo, &ws_bytes));
  Tensor ws = Tensor::empty({(int64_t)(ws_bytes / 4 + 1)}, {DType::f32, kGpu});
  Tensor yc = Tensor::empty({on, oc, oh, ow}, x.options());
  const float one = 1, zero = 0;
  const double peer = time_ms([&] {
    CK(cudnnConvolutionForward(dnn, &one, in, xm.raw(), f, K.raw(), conv, perf[0].algo, ws.raw(), ws_bytes, &zero, out,
                               yc.raw()));
  });
  // values: the first T rows of cuDNN's output, on and below the diagonal
  const std::vector<float> a = y.to_vector<float>(), b = yc.to_vector<float>();
  double diff = 0, scale = 0;
  for (int64_t m = 0; m < B * H; ++m)
    for (int64_t i = 0; i < T; i += 7)
      for (int64_t j = 0; j <= i; j += 3) {
        const double u = a[(m * T + i) * T + j], v = b[(m * oh + i) * ow + j];
        diff = std::max(diff, std::abs(u - v));
        scale = std::max(scale, std::abs(v));
      }
  row("kq_conv [2,16,1024,1024] 6x11 (vs cuDNN conv)", ours, peer, 2.0 * x.numel() * 4 / 2,
      "max rel diff " + std::to_string(diff / scale));
  row("kq_conv backward (input + kernel)", ours_bwd, 0, 3.0 * x.numel() * 4 / 2);
  cudnnDestroyTensorDescriptor(in);
  cudnnDestroyTensorDescriptor(out);
  cudnnDestroyFilterDescriptor(f);
  cudnnDestroyConvolutionDescriptor(conv);
}

void bench_rest() {
  const int64_t n = 1 << 24;
  Tensor a = rnd({n}, 7), b = rnd({n}, 8), c = Tensor::empty({n}, a.options());
  row("unary exp 16M", time_ms([&] { unary_kernel(kGpu)(UnaryKind::exp, a, c, 0); }), 0, 2.0 * n * 4);
  row("binary add 16M", time_ms([&] { binary_kernel(kGpu)(BinaryKind::add, a, b, c); }), 0, 3.0 * n * 4);
  Tensor s = Tensor::empty({1}, a.options());
  row("reduce sum 16M", time_ms([&] { reduce_kernel(kGpu)(ReduceKind::sum, a, 0, s); }), 0, 1.0 * n * 4);
  Tensor m = rnd({4096, 4096}, 9), mt = Tensor::empty({4096, 4096}, m.options());
  row("copy transpose 4096^2", time_ms([&] { copy_kernel(kGpu)(m.transpose(0, 1), mt); }), 0, 2.0 * m.numel() * 4);
  Tensor x = rnd({16384, 1024}, 10), w = rnd({1024}, 11), y = Tensor::empty(x.shape(), x.options());
  Tensor mean = Tensor::empty({16384}, x.options()), rstd = Tensor::empty({16384}, x.options());
  row("rms_norm [16384, 1024]", time_ms([&] { norm_kernel(kGpu)(false, x, w, Tensor(), 1e-5, y, mean, rstd); }), 0,
      2.0 * x.numel() * 4);
  Tensor gx = Tensor::empty(x.shape(), x.options()), gw = Tensor::empty({1024}, x.options());
  row("rms_norm backward", time_ms([&] { norm_bwd_kernel(kGpu)(false, x, w, mean, rstd, x, gx, gw, Tensor()); }), 0,
      3.0 * x.numel() * 4);
  Tensor maps = rnd({4, 16, 1024, 1024}, 12), mix = rnd({1, 16, 16}, 13), mo = Tensor::empty(maps.shape(), maps.options());
  row("head_mix [4,16,1024,1024] c_h 16", time_ms([&] { head_mix_kernel(kGpu)(maps, mix, mo); }), 0,
      2.0 * maps.numel() * 4 / 2);
  Tensor gm = Tensor::empty(mix.shape(), mix.options()), gmaps = Tensor::empty(maps.shape(), maps.options());
  row("head_mix backward", time_ms([&] { head_mix_bwd_kernel(kGpu)(maps, mix, maps, gmaps, gm); }), 0,
      3.0 * maps.numel() * 4 / 2);
  Tensor table = rnd({256, 1024}, 14);
  std::vector<int32_t> ids(32768);
  for (size_t i = 0; i < ids.size(); ++i) ids[i] = (int32_t)((i * 131) % 256);
  Tensor idx = from_vector<int32_t>(ids, {32768}, {DType::i32, kGpu}), e = Tensor::empty({32768, 1024}, table.options());
  row("embedding [32768 ids, 1024]", time_ms([&] { embedding_kernel(kGpu)(table, idx, e); }), 0, 2.0 * e.numel() * 4);
  Tensor gt = Tensor::empty(table.shape(), table.options());
  row("embedding backward (sorted, deterministic)", time_ms([&] { embedding_bwd_kernel(kGpu)(e, idx, gt); }), 0,
      1.0 * e.numel() * 4);
  Tensor logits = rnd({32768, 256}, 15), loss = Tensor::empty({32768}, logits.options()), lse = loss.clone();
  row("cross_entropy [32768, 256]", time_ms([&] { cross_entropy_kernel(kGpu)(logits, idx, loss, lse); }), 0,
      1.0 * logits.numel() * 4);
  Tensor pm = rnd({n}, 16), pg = rnd({n}, 17), p1 = rnd({n}, 18, 0, 0.1), p2 = rnd({n}, 19, 0, 0.1);
  row("adamw 16M", time_ms([&] { adamw_kernel(kGpu)(pm, pg, p1, p2, AdamWArgs{1e-3, 0.9, 0.95, 1e-8, 0.1, 0.5, 0.5}); }),
      0, 7.0 * n * 4);
  Tensor r = Tensor::empty({n}, a.options());
  row("random normal 16M", time_ms([&] { random_kernel(kGpu)(RandomKind::normal, r, PhiloxState{1, 0}, 0, 1); }), 0,
      1.0 * n * 4);
}

// One optimizer step of a 4-layer, d = 256 model at T = 256, batch 16, on a device.
double train_step_ms(Device dev, const std::string& attention, int repeats) {
  ModelConfig mc;
  mc.d_model = 256;
  mc.n_layers = 4;
  mc.n_heads = 4;
  mc.max_seq_len = 256;
  mc.attention = attention;
  mc.attention_options = AttentionRegistry::options_for(attention);
  Transformer model(mc);
  model.to(dev);
  NamedParams params = model.named_parameters();
  Optimizer opt(params, OptimizerConfig{});
  std::vector<int32_t> toks(16 * 256);
  for (size_t i = 0; i < toks.size(); ++i) toks[i] = (int32_t)((i * 7919) % 256);
  Tensor t = from_vector<int32_t>(toks, {16, 256}, {DType::i32, dev});
  Generator g(0);
  auto step = [&] {
    model.zero_grad();
    Tensor loss = cross_entropy(model.forward(t, g), t);
    loss.backward();
    clip_grad_norm(params, 1.0);
    opt.step(1e-3);
    (void)loss.item();
  };
  step();
  std::vector<double> ms;
  for (int i = 0; i < repeats; ++i) {
    const auto t0 = std::chrono::steady_clock::now();
    step();
    ms.push_back(std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count());
  }
  std::sort(ms.begin(), ms.end());
  return ms[ms.size() / 2];
}

}  // namespace

int main(int argc, char** argv) {
  for (int i = 1; i + 1 < argc; ++i)
    if (std::string(argv[i]) == "--repeats") g_repeats = std::max(1, std::atoi(argv[i + 1]));
  if (!cuda_backend_available()) {
    std::printf("bench_cuda: %s\n", cuda_backend_unavailable_reason().c_str());
    return 77;
  }
  std::printf("# mtalab CUDA kernels, float32, on %s (%s); median of %d timed calls\n", cuda_device_name(0).c_str(),
              cuda_backend_kind(), g_repeats);
  std::printf("%-44s %10s %10s %7s %9s\n", "case", "mtalab_ms", "peer_ms", "ratio", "GB/s");
  cublasHandle_t blas;
  cudnnHandle_t dnn;
  CK(cublasCreate(&blas));
  CK(cudnnCreate(&dnn));
  bench_matmul(blas);
  bench_matmul_bf16(blas);
  bench_attention_tc();
  bench_softmax(dnn);
  bench_kq_conv(dnn);
  bench_rest();
  for (const char* attention : {"softmax", "mta"}) {
    const double gpu = train_step_ms(kGpu, attention, 10), cpu = train_step_ms(kCPU, attention, 2);
    std::printf("train step %-8s d256 L4 H4 T256 B16: gpu %.1f ms, cpu %.1f ms (%.1fx)\n", attention, gpu, cpu,
                cpu / gpu);
  }
  cudnnDestroy(dnn);
  cublasDestroy(blas);
  return 0;
}
