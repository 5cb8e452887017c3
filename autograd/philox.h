// Counter-based random streams shared by the CPU backend (g++) and the CUDA backend (nvcc,
// device code): Philox4x32-10 (Salmon et al. 2011, "Parallel random numbers: as easy as
// 1, 2, 3") and the transform of one block into uniform, normal or truncated-normal values.
//
// The point of this header is that a seeded draw gives BITWISE identical values on both
// devices. libm and CUDA's math library round log/exp/sin/cos/erf differently in the last
// bits, so the transcendental functions here are our own, built only from + - * /, sqrt
// (correctly rounded by IEEE 754 on x86-64 and on the GPU), integer and bit operations and
// comparisons; each expression then has exactly one legal result on either device.
// That holds only if no compiler fuses a*b+c into one FMA (one rounding instead of two):
//   - CPU: compile every file that includes this with -ffp-contract=off;
//   - CUDA: compile the including .cu with -fmad=false (nvcc fuses by default), plus
//     -Xcompiler -ffp-contract=off if its host code calls these functions;
//   - and never with -ffast-math / --use_fast_math or anything that reassociates.
// Subnormals must not be flushed (double never is on the GPU; keep it so on the CPU).
#pragma once
#include <cstdint>
#include <cstring>

#include "autograd/host_device.h"

namespace mtalab {
namespace philox {

// Philox4x32-10 (Salmon et al. 2011): counter (lo, hi, 0, 0), key (lo, hi) of the seed.
MTALAB_HD inline void philox4x32(uint64_t seed, uint64_t counter, uint32_t out[4]) {
  uint32_t c0 = (uint32_t)counter, c1 = (uint32_t)(counter >> 32), c2 = 0, c3 = 0;
  uint32_t k0 = (uint32_t)seed, k1 = (uint32_t)(seed >> 32);
  for (int r = 0; r < 10; ++r) {
    const uint64_t p0 = (uint64_t)0xD2511F53u * c0, p1 = (uint64_t)0xCD9E8D57u * c2;
    const uint32_t n0 = (uint32_t)(p1 >> 32) ^ c1 ^ k0, n2 = (uint32_t)(p0 >> 32) ^ c3 ^ k1;
    c1 = (uint32_t)p1;
    c3 = (uint32_t)p0;
    c0 = n0;
    c2 = n2;
    k0 += 0x9E3779B9u;
    k1 += 0xBB67AE85u;
  }
  out[0] = c0;
  out[1] = c1;
  out[2] = c2;
  out[3] = c3;
}

// Correctly rounded on both devices (IEEE 754 requires it), so it may be used freely.
MTALAB_HD inline double det_sqrt(double x) {
#ifdef __CUDA_ARCH__
  return ::sqrt(x);
#else
  return __builtin_sqrt(x);
#endif
}

namespace detail {

MTALAB_HD inline uint64_t to_bits(double x) {
  uint64_t u;
  memcpy(&u, &x, sizeof u);
  return u;
}
MTALAB_HD inline double from_bits(uint64_t u) {
  double x;
  memcpy(&x, &u, sizeof x);
  return x;
}
// 2^k for -1022 <= k <= 1023, built from bits so no rounding is involved.
MTALAB_HD inline double pow2(int k) { return from_bits((uint64_t)(k + 1023) << 52); }

// ln 2 = kLn2Hi + kLn2Lo, kLn2Hi with 32 significant bits so k * kLn2Hi is exact for the
// |k| <= 1100 that log and exp use.
constexpr double kLn2Hi = 0.6931471803691238;       // floor(ln2 * 2^32) / 2^32
constexpr double kLn2Lo = 1.9082149292705877e-10;   // ln2 - kLn2Hi
constexpr double kInvLn2 = 1.4426950408889634;      // 1 / ln2
constexpr double kPi = 3.141592653589793;           // the same double as M_PI
constexpr double kTwoOverSqrtPi = 1.1283791670955126;

}  // namespace detail

// Natural log for x > 0, subnormals included (log(0) = -inf, log(+inf) = +inf, NaN for
// x < 0). x = m * 2^e with m in [sqrt(1/2), sqrt(2)], log m = 2 atanh(z), z = (m-1)/(m+1),
// |z| <= 0.1716, by the series 2(z + z^3/3 + z^5/5 + ...) to z^23 (next term < 1e-19 rel).
MTALAB_HD inline double det_log(double x) {
  if (!(x > 0.0)) return detail::from_bits(x == 0.0 ? 0xFFF0000000000000ull : 0x7FF8000000000000ull);
  uint64_t u = detail::to_bits(x);
  if (u >= 0x7FF0000000000000ull) return x;  // +inf
  int e = 0;
  if (u < 0x0010000000000000ull) {  // subnormal: scale into the normal range, exactly
    x = x * 18014398509481984.0;    // 2^54
    u = detail::to_bits(x);
    e = -54;
  }
  e += (int)(u >> 52) - 1023;
  double m = detail::from_bits((u & 0x000FFFFFFFFFFFFFull) | 0x3FF0000000000000ull);  // [1, 2)
  if (m > 1.4142135623730951) {  // keep |z| small: m in [sqrt(1/2), sqrt(2)]
    m = m * 0.5;
    e += 1;
  }
  const double z = (m - 1.0) / (m + 1.0);  // m - 1 is exact (Sterbenz)
  const double z2 = z * z;
  double p = 0.08695652173913043;          // 2/23
  p = 0.09523809523809523 + p * z2;        // 2/21
  p = 0.10526315789473684 + p * z2;        // 2/19
  p = 0.11764705882352941 + p * z2;        // 2/17
  p = 0.13333333333333333 + p * z2;        // 2/15
  p = 0.15384615384615385 + p * z2;        // 2/13
  p = 0.18181818181818182 + p * z2;        // 2/11
  p = 0.2222222222222222 + p * z2;         // 2/9
  p = 0.2857142857142857 + p * z2;         // 2/7
  p = 0.4 + p * z2;                        // 2/5
  p = 0.6666666666666666 + p * z2;         // 2/3
  const double lm = z * (2.0 + z2 * p);
  const double ed = (double)e;
  return ed * detail::kLn2Hi + (lm + ed * detail::kLn2Lo);  // ed * kLn2Hi exact
}

// e^x for any x (0 below about -745.13, +inf above about 709.78). x = k ln2 + r with
// |r| <= ln2/2; e^r by its Taylor series to r^14/14! (next term < 1e-19 rel). The scaling
// by 2^k goes through 2^(k/2) (exact) and then 2^(k - k/2) (the only rounding, into the
// subnormals if need be), because 2^k itself is not a double for k > 1023 or k < -1022.
MTALAB_HD inline double det_exp(double x) {
  if (x != x) return x;
  if (x > 709.8) return detail::from_bits(0x7FF0000000000000ull);
  if (x < -746.0) return 0.0;
  const double t = x * detail::kInvLn2;
  const int k = (int)(t < 0.0 ? t - 0.5 : t + 0.5);  // any nearby k works; r absorbs it
  const double kd = (double)k;
  const double r = (x - kd * detail::kLn2Hi) - kd * detail::kLn2Lo;  // first difference exact
  double p = 1.1470745597729725e-11;  // 1/14!
  p = 1.6059043836821613e-10 + p * r;  // 1/13!
  p = 2.08767569878681e-09 + p * r;    // 1/12!
  p = 2.505210838544172e-08 + p * r;   // 1/11!
  p = 2.755731922398589e-07 + p * r;   // 1/10!
  p = 2.7557319223985893e-06 + p * r;  // 1/9!
  p = 2.48015873015873e-05 + p * r;    // 1/8!
  p = 0.0001984126984126984 + p * r;   // 1/7!
  p = 0.001388888888888889 + p * r;    // 1/6!
  p = 0.008333333333333333 + p * r;    // 1/5!
  p = 0.041666666666666664 + p * r;    // 1/4!
  p = 0.16666666666666666 + p * r;     // 1/3!
  p = 0.5 + p * r;                     // 1/2!
  p = 1.0 + p * r;
  p = 1.0 + p * r;
  const int k1 = k / 2;
  return (p * detail::pow2(k1)) * detail::pow2(k - k1);  // first product exact
}

// s = sin(2 pi u), c = cos(2 pi u), for |u| < 2^50 (the streams pass u in (0, 1)). The
// quadrant reduction is exact (t = 4u, r = t - nearest integer, both exact in binary), so
// no rounded 2*pi*u is ever formed; sin/cos(pi/2 r), |r| <= 1/2, by Taylor series with
// coefficients (pi/2)^n / n! to n = 17 for sin and 18 for cos (next terms < 1e-19 rel).
MTALAB_HD inline void det_sincos_2pi(double u, double* s, double* c) {
  const bool neg = u < 0.0;  // reduce |u|: sin is odd, cos even
  const double t = 4.0 * (neg ? -u : u);
  int64_t q = (int64_t)t;          // floor, t >= 0
  double r = t - (double)q;        // exact: Sterbenz for q >= 1
  if (r > 0.5) {
    r = r - 1.0;                   // exact: Sterbenz
    q += 1;
  }
  const double r2 = r * r;
  double sp = 6.0669357311061955e-12;  // (pi/2)^17 / 17!
  sp = -6.688035109811468e-10 + sp * r2;  // -(pi/2)^15 / 15!
  sp = 5.692172921967927e-08 + sp * r2;   // (pi/2)^13 / 13!
  sp = -3.598843235212085e-06 + sp * r2;  // -(pi/2)^11 / 11!
  sp = 0.00016044118478735983 + sp * r2;  // (pi/2)^9 / 9!
  sp = -0.004681754135318688 + sp * r2;   // -(pi/2)^7 / 7!
  sp = 0.07969262624616705 + sp * r2;     // (pi/2)^5 / 5!
  sp = -0.6459640975062463 + sp * r2;     // -(pi/2)^3 / 3!
  sp = 1.5707963267948966 + sp * r2;      // pi/2
  const double sr = r * sp;
  double cp = -5.294400200734623e-13;     // -(pi/2)^18 / 18!
  cp = 6.565963114979473e-11 + cp * r2;   // (pi/2)^16 / 16!
  cp = -6.386603083791852e-09 + cp * r2;  // -(pi/2)^14 / 14!
  cp = 4.710874778818172e-07 + cp * r2;   // (pi/2)^12 / 12!
  cp = -2.5202042373060607e-05 + cp * r2; // -(pi/2)^10 / 10!
  cp = 0.0009192602748394266 + cp * r2;   // (pi/2)^8 / 8!
  cp = -0.02086348076335296 + cp * r2;    // -(pi/2)^6 / 6!
  cp = 0.25366950790104803 + cp * r2;     // (pi/2)^4 / 4!
  cp = -1.2337005501361697 + cp * r2;     // -(pi/2)^2 / 2!
  const double cr = 1.0 + cp * r2;
  double sv, cv;  // 2 pi u = (pi/2)(q + r)
  switch ((int)(q & 3)) {
    case 0: sv = sr;  cv = cr;  break;
    case 1: sv = cr;  cv = -sr; break;
    case 2: sv = -sr; cv = -cr; break;
    default: sv = -cr; cv = sr; break;
  }
  *s = neg ? -sv : sv;
  *c = cv;
}

// erf for any x (NaN passes through). |x| < 1.5: the Maclaurin series
// (2/sqrt(pi)) sum (-1)^n x^(2n+1) / (n! (2n+1)) to n = 25 (next term < 1e-19; the
// alternating terms stay below 1.2, so cancellation costs under ~3 ulp). 1.5 <= |x| < 6:
// 1 - erfc, erfc from the even contraction of Laplace's continued fraction
//   erfc(x) = (2x/sqrt(pi)) e^(-x^2) / (2x^2+1 - 1*2/(2x^2+5 - 3*4/(2x^2+9 - ...))),
// evaluated backwards with a depth per interval that leaves erfc's truncation under 1e-17
// absolute; x^2 is formed exactly (Dekker) so e^(-x^2) loses nothing. |x| >= 6: erf
// rounds to +-1 (erfc(6) ~ 2e-17).
MTALAB_HD inline double det_erf(double x) {
  if (x != x) return x;
  const double ax = x < 0.0 ? -x : x;
  if (ax < 1.5) {
    const double x2 = x * x;
    double p = -1.4263930180784176e-27;  // c_n = (2/sqrt(pi)) (-1)^n / (n! (2n+1)), n = 25
    p = 3.71153285316323e-26 + p * x2;     // n = 24
    p = -9.28672901131906e-25 + p * x2;    // n = 23
    p = 2.2308786802746453e-23 + p * x2;   // n = 22
    p = -5.136209054585811e-22 + p * x2;   // n = 21
    p = 1.131218725924631e-20 + p * x2;    // n = 20
    p = -2.3784598852774293e-19 + p * x2;  // n = 19
    p = 4.763348040515068e-18 + p * x2;    // n = 18
    p = -9.063970842808673e-17 + p * x2;   // n = 17
    p = 1.6342614095367152e-15 + p * x2;   // n = 16
    p = -2.7835162072109215e-14 + p * x2;  // n = 15
    p = 4.4632242632864775e-13 + p * x2;   // n = 14
    p = -6.7113668551641105e-12 + p * x2;  // n = 13
    p = 9.422759064650411e-11 + p * x2;    // n = 12
    p = -1.2290555301717928e-09 + p * x2;  // n = 11
    p = 1.4807192815879218e-08 + p * x2;   // n = 10
    p = -1.6365844691234924e-07 + p * x2;  // n = 9
    p = 1.6462114365889248e-06 + p * x2;   // n = 8
    p = -1.492565035840625e-05 + p * x2;   // n = 7
    p = 0.00012055332981789664 + p * x2;   // n = 6
    p = -0.0008548327023450853 + p * x2;   // n = 5
    p = 0.005223977625442188 + p * x2;     // n = 4
    p = -0.026866170645131252 + p * x2;    // n = 3
    p = 0.11283791670955126 + p * x2;      // n = 2
    p = -0.37612638903183754 + p * x2;     // n = 1
    p = 1.1283791670955126 + p * x2;       // n = 0: 2/sqrt(pi)
    return x * p;
  }
  double v = 1.0;
  if (ax < 6.0) {
    // h + l = ax^2 exactly: Veltkamp split, then Dekker's product (no FMA needed).
    const double h = ax * ax;
    const double sp = 134217729.0 * ax;  // 2^27 + 1
    const double xh = sp - (sp - ax), xl = ax - xh;
    const double l = ((xh * xh - h) + (2.0 * xh) * xl) + xl * xl;
    const double h2 = 2.0 * h;
    const int n = ax < 2.0 ? 44 : ax < 3.0 ? 26 : ax < 4.0 ? 15 : 11;
    double f = h2 + (double)(4 * n + 1);
    for (int k = n; k >= 1; --k) f = (h2 + (double)(4 * k - 3)) - (double)((2 * k - 1) * (2 * k)) / f;
    const double em = det_exp(-h) * (1.0 - l);  // e^-(h+l); l^2 is far below an ulp
    v = 1.0 - ((ax * detail::kTwoOverSqrtPi) * em) / f;
  }
  return x < 0.0 ? -v : v;
}

// Inverse error function for x in (-1, 1): Giles 2010 ("Approximating the erfinv
// function", GPU Computing Gems) single-precision initial approximation, refined by two
// Newton steps to double precision; the same formula as before, only with det_* inside.
// Near +-1 the result is as ill-conditioned as erfinv itself: an ulp of x moves it by
// ~ulp * (sqrt(pi)/2) e^(y^2).
MTALAB_HD inline double det_erfinv(double x) {
  double w = -det_log((1.0 - x) * (1.0 + x)), p;
  if (w < 5.0) {
    w -= 2.5;
    p = 2.81022636e-08;
    p = 3.43273939e-07 + p * w; p = -3.5233877e-06 + p * w; p = -4.39150654e-06 + p * w;
    p = 0.00021858087 + p * w;  p = -0.00125372503 + p * w; p = -0.00417768164 + p * w;
    p = 0.246640727 + p * w;    p = 1.50140941 + p * w;
  } else {
    w = det_sqrt(w) - 3.0;
    p = -0.000200214257;
    p = 0.000100950558 + p * w; p = 0.00134934322 + p * w;  p = -0.00367342844 + p * w;
    p = 0.00573950773 + p * w;  p = -0.0076224613 + p * w;  p = 0.00943887047 + p * w;
    p = 1.00167406 + p * w;     p = 2.83297682 + p * w;
  }
  double y = p * x;
  for (int i = 0; i < 2; ++i) y -= (det_erf(y) - x) / (2.0 / det_sqrt(detail::kPi) * det_exp(-y * y));
  return y;
}

// A lane as a double strictly inside (0, 1): never 0, so Box-Muller's log stays finite.
MTALAB_HD inline double u01(uint32_t v) { return (v + 0.5) * (1.0 / 4294967296.0); }

// Same values as mtalab::RandomKind (autograd/kernels.h), so either casts to the other.
enum class Kind : int { uniform = 0, normal = 1, trunc_normal = 2 };

// erf(-b/sqrt2), erf(b/sqrt2) for trunc_normal's inverse CDF; computed here so the host
// and a device get the same bounds whichever of them computes them.
MTALAB_HD inline void trunc_bounds(double b, double* lo, double* hi) {
  *lo = det_erf(-b / det_sqrt(2.0));
  *hi = det_erf(b / det_sqrt(2.0));
}

// The four values of block `counter`: uniform on [a, b); normal with mean a, std b (Box-
// Muller on lane pairs); trunc_normal with std a, bound b (in stds) by the inverse CDF,
// lo/hi from trunc_bounds(b) (ignored by the other kinds). A draw takes element i from lane
// i%4 of block counter+i/4, so any split of the work over threads or devices agrees.
MTALAB_HD inline void block(Kind k, uint64_t seed, uint64_t counter, double a, double b, double lo,
                            double hi, double v[4]) {
  uint32_t r[4];
  philox4x32(seed, counter, r);
  if (k == Kind::uniform) {
    for (int l = 0; l < 4; ++l) v[l] = a + (b - a) * (r[l] * (1.0 / 4294967296.0));
  } else if (k == Kind::normal) {
    for (int l = 0; l < 4; l += 2) {
      const double rad = det_sqrt(-2.0 * det_log(u01(r[l])));
      double s, c;
      det_sincos_2pi(u01(r[l + 1]), &s, &c);
      v[l] = a + b * rad * c;
      v[l + 1] = a + b * rad * s;
    }
  } else {
    for (int l = 0; l < 4; ++l) v[l] = a * det_sqrt(2.0) * det_erfinv(lo + (hi - lo) * u01(r[l]));
  }
}

}  // namespace philox
}  // namespace mtalab
