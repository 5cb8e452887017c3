// CPU benchmark of identity 1 of ../shared/design/mta-as-attention.md (issue 16): MTA's
// pre-softmax key-query convolution Conv(Mask_0(S)) of one (batch, head) map, float32,
// computed two ways over all query blocks of the head:
//   (a) direct   as the CPU fused MTA kernel does it (autograd/cpu/attention.cpp,
//                mta_forward_block): per block of kMtaRows queries [i0, i1), the scores
//                S = scale q kᵀ of rows [i0 - (cq-1), i1) x columns [0, i1) by one sgemm,
//                then kq_conv_rows (autograd/cpu/kq_conv.cpp) over the block's rows;
//   (b) identity stacked queries Q̂_i = [q_i, q_{i-1}, .., q_{i-cq+1}] against convolved
//                keys K̂_j = [K̃_0[j], .., K̃_{cq-1}[j]], K̃_α[j] = Σ_c K[cq-1-α, c] k_{j-p+c}
//                (one sgemm of width cq·D per block, same OpenBLAS), minus the terms
//                Mask_0 removed: those whose key column lies right of their query row,
//                i.e. scores S[r, r+δ] with 1 <= δ <= cq-1 + ck-1-p (a band just above
//                the diagonal, computed once per head). Its timing includes building Q̂, K̂
//                and that band (shown on its own as "prep").
// Both ways produce rows of width i1 with zeros above the diagonal. The program first
// CHECKS that they agree on every entry of the map within a float32 rounding bound (see
// bound()), exits 1 if not, then times both (median of `repeats` after warm-up).
// Run with OMP_NUM_THREADS=1 OPENBLAS_NUM_THREADS=1 for single-core ratios.
// Usage: bench_mta_identity [repeats=5]
#include <cblas.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <vector>

#include "autograd/cpu/mta_rows.h"

namespace {

using mtalab::cpu::KqGeom;
constexpr int64_t kMtaRows = 32;  // query rows per unit, as in autograd/cpu/attention.cpp

struct Problem {
  int64_t T, D, cq, ck, p;
  float scale;
  std::vector<float> q, k, K;  // [T, D], [T, D], [cq * ck]
};

Problem make_problem(int64_t T, int64_t D, int64_t cq, int64_t ck) {
  Problem P{T, D, cq, ck, (ck - 1) / 2, 1.0f / std::sqrt((float)D), {}, {}, {}};  // pad both
  P.q.resize(T * D), P.k.resize(T * D), P.K.resize(cq * ck);
  for (int64_t i = 0; i < T * D; ++i) {
    P.q[i] = (float)std::sin(0.37 * (double)i + 0.1);
    P.k[i] = (float)std::sin(0.53 * (double)i + 1.3);
  }
  for (int64_t t = 0; t < cq * ck; ++t) P.K[t] = (float)(0.05 * std::sin(0.7 * (double)t + 0.2));
  P.K[(cq - 1) * ck + P.p] += 1.0f;  // identity kernel plus a perturbation, as layers/mta_init does
  return P;
}

void sgemm_nt(int64_t M, int64_t N, int64_t K, float alpha, const float* A, int64_t lda, const float* B, int64_t ldb,
              float* C, int64_t ldc) {
  if (M <= 0 || N <= 0) return;
  cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, M, N, K, alpha, A, lda, B, ldb, 0.0f, C, ldc);
}

// Receives each finished block: rows [i0, i1) of width W = i1, row i at rows + (i - i0) * W.
struct Sink {
  std::vector<float>* full = nullptr;  // [T, T] when checking, else null (timing)
  int64_t T = 0;
  void take(const float* rows, int64_t i0, int64_t i1) const {
    if (!full) return;
    for (int64_t i = i0; i < i1; ++i) std::copy(rows + (i - i0) * i1, rows + (i - i0 + 1) * i1, full->data() + i * T);
  }
};

// ---- (a) the fused kernel's structure: scores band, then the direct convolution --------
struct Direct {
  std::vector<float> s, out;
  void run(const Problem& P, const Sink& sink) {
    const int64_t T = P.T, D = P.D;
    for (int64_t i0 = 0; i0 < T; i0 += kMtaRows) {
      const int64_t i1 = std::min(T, i0 + kMtaRows), W = i1, s0 = std::max<int64_t>(0, i0 - (P.cq - 1));
      s.resize((W - s0) * W);
      out.resize((W - s0) * W);
      sgemm_nt(W - s0, W, D, P.scale, P.q.data() + s0 * D, D, P.k.data(), D, s.data(), W);
      const KqGeom g{W, P.cq, P.ck, P.p};  // maps addressed by absolute row, as Band::map
      mtalab::cpu::kq_conv_rows(s.data() - s0 * W, P.K.data(), out.data() - s0 * W, g, i0, i1);
      sink.take(out.data() + (i0 - s0) * W, i0, i1);
    }
  }
};

// ---- (b) identity 1: stacked queries x convolved keys, minus the masked band -----------
struct Identity {
  std::vector<float> qs, ks, up, out;  // Q̂ [T, cq*D], K̂ [T, cq*D], S above diagonal [T, Δ], block
  int64_t delta = 0;
  void prepare(const Problem& P) {
    const int64_t T = P.T, D = P.D, cq = P.cq, ck = P.ck, E = cq * D;
    qs.assign(T * E, 0.0f);
    ks.assign(T * E, 0.0f);
    for (int64_t i = 0; i < T; ++i)
      for (int64_t a = 0; a < cq && a <= i; ++a) std::copy_n(P.q.data() + (i - a) * D, D, qs.data() + i * E + a * D);
    for (int64_t j = 0; j < T; ++j)
      for (int64_t a = 0; a < cq; ++a) {
        float* dst = ks.data() + j * E + a * D;
        const float* Ka = P.K.data() + (cq - 1 - a) * ck;  // α = a looks a rows back: kernel row cq-1-a
        for (int64_t c = 0; c < ck; ++c) {
          const int64_t col = j - P.p + c;
          if (col < 0 || col >= T) continue;
          const float w = Ka[c], *kr = P.k.data() + col * D;
          for (int64_t d = 0; d < D; ++d) dst[d] += w * kr[d];
        }
      }
    delta = cq - 1 + ck - 1 - P.p;  // widest reach of a masked term right of the diagonal
    up.assign(T * std::max<int64_t>(delta, 1), 0.0f);
    for (int64_t r = 0; r < T; ++r)
      for (int64_t dl = 1; dl <= delta && r + dl < T; ++dl) {
        const float *qr = P.q.data() + r * D, *kr = P.k.data() + (r + dl) * D;
        float s = 0;
        for (int64_t d = 0; d < D; ++d) s += qr[d] * kr[d];
        up[r * delta + dl - 1] = P.scale * s;
      }
  }
  // Row i (width W): subtract every term K[cq-1-α, c] S[i-α, j-p+c] with j-p+c > i-α.
  void correct(const Problem& P, float* row, int64_t i, int64_t W) const {
    for (int64_t a = 0; a < P.cq && a <= i; ++a) {
      const int64_t r = i - a;
      const float* Ka = P.K.data() + (P.cq - 1 - a) * P.ck;
      for (int64_t c = 0; c < P.ck; ++c) {
        // col = j - p + c in (r, T) and j <= i
        const int64_t jlo = std::max<int64_t>(0, r + P.p - c + 1), jhi = std::min(i, P.T - 1 + P.p - c);
        for (int64_t j = jlo; j <= jhi; ++j) row[j] -= Ka[c] * up[r * delta + (j - P.p + c - r) - 1];
      }
    }
    std::fill(row + i + 1, row + W, 0.0f);
  }
  void run(const Problem& P, const Sink& sink) {
    prepare(P);
    const int64_t T = P.T, E = P.cq * P.D;
    for (int64_t i0 = 0; i0 < T; i0 += kMtaRows) {
      const int64_t i1 = std::min(T, i0 + kMtaRows), W = i1;
      out.resize((i1 - i0) * W);
      sgemm_nt(i1 - i0, W, E, P.scale, qs.data() + i0 * E, E, ks.data(), E, out.data(), W);
      for (int64_t i = i0; i < i1; ++i) correct(P, out.data() + (i - i0) * W, i, W);
      sink.take(out.data(), i0, i1);
    }
  }
};

// Worst-case float32 rounding bound of |(a) - (b)| at one entry, from A = Σ|terms| over
// every term either way touches (masked ones included: (b) adds and subtracts them):
// (a) rounds a D-term dot product then a cq·ck-term convolution; (b) a ck-term K̃, a
// cq·D-term dot product and up to cq·ck corrections each from a D-term dot product.
// γ_n = n·u/(1 - n·u) <= 1.01·n·u here; 4 more roundings cover the scale products.
double bound_factor(const Problem& P) {
  const double u = std::ldexp(1.0, -24);
  const double n = (double)(P.D + P.cq * P.ck) + (double)(P.ck + P.cq * P.D + P.cq * P.ck + P.D) + 4;
  return 1.01 * n * u;
}

// A[i, j] = Σ_{α,c} |K[cq-1-α, c]| Σ_d |q_{i-α, d}| |k_{j-p+c, d}| · scale, by the identity
// in absolute values (|Q̂| against K̂ built from |K| and |k|), in double.
std::vector<double> abs_terms(const Problem& P) {
  Problem A = P;
  for (auto& x : A.q) x = std::fabs(x);
  for (auto& x : A.k) x = std::fabs(x);
  for (auto& x : A.K) x = std::fabs(x);
  Identity id;
  id.prepare(A);
  const int64_t T = P.T, E = P.cq * P.D;
  std::vector<double> out(T * T, 0.0);
  for (int64_t i = 0; i < T; ++i)
    for (int64_t j = 0; j <= i; ++j) {
      const float *a = id.qs.data() + i * E, *b = id.ks.data() + j * E;
      double s = 0;
      for (int64_t e = 0; e < E; ++e) s += (double)a[e] * b[e];
      out[i * T + j] = s * P.scale;
    }
  return out;
}

// Compares (a) and (b) on the whole map; returns false (after printing) if beyond the bound.
bool check(const Problem& P, double* max_diff, double* max_ratio) {
  std::vector<float> fa(P.T * P.T, 0.0f), fb(P.T * P.T, 0.0f);
  Direct da;
  Identity ib;
  da.run(P, Sink{&fa, P.T});
  ib.run(P, Sink{&fb, P.T});
  const std::vector<double> A = abs_terms(P);
  const double f = bound_factor(P);
  *max_diff = 0, *max_ratio = 0;
  bool ok = true;
  for (int64_t i = 0; i < P.T; ++i)
    for (int64_t j = 0; j < P.T; ++j) {
      const double d = std::fabs((double)fa[i * P.T + j] - (double)fb[i * P.T + j]);
      const double lim = j <= i ? f * A[i * P.T + j] : 0.0;  // above the diagonal both must be exactly 0
      *max_diff = std::max(*max_diff, d);
      if (lim > 0) *max_ratio = std::max(*max_ratio, d / lim);
      if (!(d <= lim) && ok) {
        std::fprintf(stderr, "MISMATCH T=%ld D=%ld %ldx%ld at [%ld,%ld]: direct %.9g identity %.9g, |diff| %.3g > bound %.3g\n",
                     (long)P.T, (long)P.D, (long)P.cq, (long)P.ck, (long)i, (long)j, fa[i * P.T + j], fb[i * P.T + j], d,
                     lim);
        ok = false;
      }
    }
  return ok;
}

template <typename F>
double median_ms(int repeats, const F& f) {
  for (int w = 0; w < 2; ++w) f();  // warm-up: page faults, buffer growth
  std::vector<double> ms;
  for (int r = 0; r < repeats; ++r) {
    const auto t0 = std::chrono::steady_clock::now();
    f();
    ms.push_back(std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count());
  }
  std::sort(ms.begin(), ms.end());
  return ms[ms.size() / 2];
}

}  // namespace

int main(int argc, char** argv) {
  const int repeats = argc > 1 ? std::atoi(argv[1]) : 5;
  if (repeats < 1) {
    std::fprintf(stderr, "bench_mta_identity: repeats must be >= 1, got '%s'\n", argv[1]);
    return 2;
  }
  std::printf("%-6s %-4s %-6s %12s %12s %12s %12s %10s %10s\n", "T", "D", "kernel", "direct_ms", "identity_ms",
              "(of it prep)", "ratio(a/b)", "max|diff|", "diff/bound");
  bool ok = true;
  const int64_t kernels[2][2] = {{6, 11}, {2, 9}};
  for (const auto& kc : kernels)
    for (int64_t D : {64, 128})
      for (int64_t T : {512, 1024, 2048}) {
        const Problem P = make_problem(T, D, kc[0], kc[1]);
        double md = 0, mr = 0;
        ok = check(P, &md, &mr) && ok;
        Direct da;
        Identity ib;
        const double ta = median_ms(repeats, [&] { da.run(P, Sink{}); });
        const double tb = median_ms(repeats, [&] { ib.run(P, Sink{}); });
        const double tp = median_ms(repeats, [&] { ib.prepare(P); });
        std::printf("%-6ld %-4ld %2ldx%-3ld %12.3f %12.3f %12.3f %12.2f %10.2e %10.2e\n", (long)T, (long)D,
                    (long)kc[0], (long)kc[1], ta, tb, tp, ta / tb, md, mr);
        std::fflush(stdout);
      }
  if (!ok) {
    std::fprintf(stderr, "bench_mta_identity: the two computations disagree beyond the float32 bound\n");
    return 1;
  }
  return 0;
}
