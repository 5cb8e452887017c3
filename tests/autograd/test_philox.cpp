// autograd/philox.h: the deterministic math against <cmath> (std::, and the long double
// overloads where the double ones are not accurate enough to judge 1e-16 errors), the
// Philox block against fixed outputs, and the block transform's distributions.
#include <doctest/doctest.h>

#include <cmath>
#include <cstdint>
#include <cstdio>
#include <initializer_list>
#include <string>
#include <vector>

#include "autograd/philox.h"

using namespace mtalab::philox;

namespace {

// The largest error seen over a set of points and where, for one CHECK per set.
struct Worst {
  double err = 0, at = 0;
  void add(double e, double x) {
    if (!(e <= err)) err = e, at = x;  // a NaN error counts as the worst
  }
  std::string str() const {
    char buf[96];
    std::snprintf(buf, sizeof buf, "max error %.3g at %.17g", err, at);
    return buf;
  }
};

double rel(double d, double ref) { return ref == 0 ? std::fabs(d) : std::fabs(d - ref) / std::fabs(ref); }

// Uniform points in [lo, hi] plus the ends: dense grids for the sweeps.
std::vector<double> grid(double lo, double hi, int n) {
  std::vector<double> v;
  for (int i = 0; i <= n; ++i) v.push_back(lo + (hi - lo) * i / n);
  return v;
}

// Deterministic pseudo-random doubles in [0, 1) (to scatter points off the grids).
struct Lcg {
  uint64_t s = 0x9E3779B97F4A7C15ull;
  double next() {
    s = s * 6364136223846793005ull + 1442695040888963407ull;
    return (double)(s >> 11) * 0x1p-53;
  }
};

const long double kPiL = 3.141592653589793238462643383279502884L;

// sin/cos(2 pi u) to ~1e-19: the same exact quadrant reduction, then sinl/cosl of (pi/2) r
// in long double. std::sin(2 * M_PI * u) itself is off by up to ~7e-16 absolute (2*M_PI*u
// is rounded), which is far from relative accuracy near the zeros.
void ref_sincos(double u, long double* s, long double* c) {
  const bool neg = u < 0;
  const double t = 4.0 * (neg ? -u : u);
  int64_t q = (int64_t)t;
  double r = t - (double)q;
  if (r > 0.5) r -= 1.0, q += 1;
  const long double th = kPiL / 2 * (long double)r, sr = std::sin(th), cr = std::cos(th);
  long double sv, cv;
  switch (q & 3) {
    case 0: sv = sr, cv = cr; break;
    case 1: sv = cr, cv = -sr; break;
    case 2: sv = -sr, cv = -cr; break;
    default: sv = -cr, cv = sr; break;
  }
  *s = neg ? -sv : sv;
  *c = cv;
}

// erfinv to long double accuracy: Newton steps on std::erf / std::erfc (long double);
// for |x| > 1/2 on erfc against 1 - |x|, which is exact, so the reference keeps its
// accuracy next to +-1.
long double ref_erfinv(double x) {
  const double ax = std::fabs(x);
  long double y = det_erfinv(ax);
  for (int i = 0; i < 4; ++i) {
    const long double d = 2 / std::sqrt(kPiL) * std::exp(-y * y);
    if (ax > 0.5)
      y += (std::erfc(y) - (long double)(1.0 - ax)) / d;
    else
      y -= (std::erf(y) - (long double)ax) / d;
  }
  return x < 0 ? -y : y;
}

// How far erfinv's own conditioning lets any double implementation be off at x: half an
// ulp of 1 (the spacing of x and of erf near +-1) times d erfinv / dx = (sqrt(pi)/2) e^(y^2).
double erfinv_cond(long double y) { return 0x1p-53 * std::sqrt(M_PI) / 2 * std::exp((double)(y * y)); }

// The erfinv random.cpp used before this header (Giles 2010 + two Newton steps on
// std::log / std::erf / std::exp): det_erfinv must be that function up to libm's last bits.
double erfinv_std(double x) {
  double w = -std::log((1.0 - x) * (1.0 + x)), p;
  if (w < 5.0) {
    w -= 2.5;
    p = 2.81022636e-08;
    p = 3.43273939e-07 + p * w; p = -3.5233877e-06 + p * w; p = -4.39150654e-06 + p * w;
    p = 0.00021858087 + p * w;  p = -0.00125372503 + p * w; p = -0.00417768164 + p * w;
    p = 0.246640727 + p * w;    p = 1.50140941 + p * w;
  } else {
    w = std::sqrt(w) - 3.0;
    p = -0.000200214257;
    p = 0.000100950558 + p * w; p = 0.00134934322 + p * w;  p = -0.00367342844 + p * w;
    p = 0.00573950773 + p * w;  p = -0.0076224613 + p * w;  p = 0.00943887047 + p * w;
    p = 1.00167406 + p * w;     p = 2.83297682 + p * w;
  }
  double y = p * x;
  for (int i = 0; i < 2; ++i) y -= (std::erf(y) - x) / (2.0 / std::sqrt(M_PI) * std::exp(-y * y));
  return y;
}

uint64_t bits(double x) { return detail::to_bits(x); }

}  // namespace

TEST_CASE("philox4x32 matches the outputs of random.cpp's implementation") {
  // Regression fixture: these words were printed by a standalone copy of philox4x32 from
  // autograd/cpu/random.cpp (before it switched to this header); the header must keep the
  // stream. (0, 0) is also Random123's known answer for Philox4x32-10 with zero key/counter.
  struct Kat {
    uint64_t seed, counter;
    uint32_t out[4];
  };
  const Kat kats[] = {
      {0x0000000000000000ull, 0x0000000000000000ull, {0x6627E8D5u, 0xE169C58Du, 0xBC57AC4Cu, 0x9B00DBD8u}},
      {0x0000000000000000ull, 0x0000000000000001ull, {0xF8E4CCA4u, 0x5CB200DBu, 0xB1A574EBu, 0x097EFF67u}},
      {0x000000000000002Aull, 0x0000000000000000ull, {0x9CEAF053u, 0x77F5493Bu, 0x12BF50ADu, 0x5742B3D7u}},
      {0x000000000000002Aull, 0x0000000000000007ull, {0x5BBD83B1u, 0x68784C85u, 0x172067AAu, 0x2E6B75B7u}},
      {0x0123456789ABCDEFull, 0xFEDCBA9876543210ull, {0x2C03A599u, 0xD8A290FCu, 0x4339955Bu, 0x8784C033u}},
      {0xFFFFFFFFFFFFFFFFull, 0xFFFFFFFFFFFFFFFFull, {0x4D18D7D2u, 0x430AC65Au, 0xBD2FA22Au, 0x0AFAE10Du}},
      {0x00000000000004D2ull, 0x0000000100000000ull, {0x70C51B59u, 0x3FBEE9A5u, 0x3A338D15u, 0x56FB64A6u}},
  };
  for (const Kat& k : kats) {
    uint32_t o[4];
    philox4x32(k.seed, k.counter, o);
    CAPTURE(k.seed);
    CAPTURE(k.counter);
    for (int l = 0; l < 4; ++l) CHECK(o[l] == k.out[l]);
  }
}

TEST_CASE("det_log matches std::log to 1e-15 relative") {
  std::vector<double> xs;
  for (uint64_t v = 0; v < (1ull << 32); v += 4093) xs.push_back(u01((uint32_t)v));  // the stream's inputs
  xs.push_back(u01(0)), xs.push_back(u01(0xFFFFFFFFu));
  for (double t : grid(-1070, 1020, 200000)) xs.push_back(std::exp2(t));  // every binade
  for (int i = -2000; i <= 2000; ++i) xs.push_back(1.0 + i * 0x1p-40), xs.push_back(1.0 + i * 0x1p-52);
  for (double m : grid(0.70, 1.42, 20000)) xs.push_back(m), xs.push_back(std::ldexp(m, -1050));  // around the sqrt2 switch, subnormal too
  xs.push_back(std::sqrt(0.5)), xs.push_back(std::sqrt(2.0)), xs.push_back(std::nextafter(std::sqrt(2.0), 3.0));
  xs.push_back(1.0), xs.push_back(2.0), xs.push_back(0.5), xs.push_back(0x1p-1074), xs.push_back(0x1p-1022);
  xs.push_back(1.7976931348623157e308);
  Worst w;
  for (double x : xs) w.add(rel(det_log(x), std::log(x)), x);
  INFO(w.str());
  CHECK(w.err <= 1e-15);
  CHECK(det_log(1.0) == 0.0);
  CHECK(det_log(0.0) == -INFINITY);
  CHECK(det_log(INFINITY) == INFINITY);
  CHECK(std::isnan(det_log(-1.0)));
  CHECK(std::isnan(det_log(NAN)));
}

TEST_CASE("det_exp matches std::exp to 1e-15 relative, to one unit in subnormal results") {
  std::vector<double> xs = grid(-745.0, 709.78, 1000000);
  for (double x : grid(-1, 1, 200000)) xs.push_back(x);
  for (double x : grid(-40, 0, 200000)) xs.push_back(x);  // the e^(-y^2) of erf and erfinv
  const double ln2 = std::log(2.0);
  for (int k = -1074; k <= 1023; ++k)  // reduction boundaries (k +- 1/2) ln2 and exact k ln2
    for (double f : {-0.5, 0.0, 0.5}) xs.push_back((k + f) * ln2);
  xs.push_back(0.0), xs.push_back(-0.0), xs.push_back(1e-300), xs.push_back(-1e-300);
  xs.push_back(709.782712893384), xs.push_back(-708.3964185322641), xs.push_back(-744.44007192138122);
  Worst w, ws;
  for (double x : xs) {
    const double d = det_exp(x), s = std::exp(x);
    if (!std::isfinite(s) || s == 0) continue;
    if (s >= 0x1p-1022)
      w.add(rel(d, s), x);
    else
      ws.add(std::fabs(d - s) / 0x1p-1074, x);  // in units of the smallest subnormal
  }
  INFO(w.str());
  INFO("subnormal results: ", ws.str());
  CHECK(w.err <= 1e-15);
  CHECK(ws.err <= 1.0);
  CHECK(det_exp(0.0) == 1.0);
  CHECK(det_exp(710.0) == INFINITY);
  CHECK(det_exp(-746.0) == std::exp(-746.0));
  CHECK(det_exp(-800.0) == 0.0);
  CHECK(det_exp(-INFINITY) == 0.0);
  CHECK(det_exp(INFINITY) == INFINITY);
  CHECK(std::isnan(det_exp(NAN)));
}

TEST_CASE("det_sincos_2pi: 1e-15 relative to exact-reduction sinl/cosl, 2e-15 absolute to std::sin/cos(2*M_PI*u)") {
  // (relative where the result is a normal number; one subnormal unit below that)
  std::vector<double> us = grid(0, 1, 1000000);
  Lcg g;
  for (int i = 0; i < 200000; ++i) us.push_back(g.next());
  for (int k = 0; k <= 8; ++k) {  // quadrant boundaries k/4 and octant boundaries (r = +-1/2) k/8
    const double b = k / 8.0;
    for (int j = 1; j <= 64; ++j)
      for (double d : {std::ldexp(1.0, -j), j * 0x1p-53}) us.push_back(b + d), us.push_back(b - d);
    us.push_back(b), us.push_back(std::nextafter(b, 0.0)), us.push_back(std::nextafter(b, 1.0));
  }
  for (int j = 0; j <= 1074; ++j) us.push_back(std::ldexp(1.0, -j));  // u -> 0
  us.push_back(u01(0)), us.push_back(u01(0xFFFFFFFFu)), us.push_back(1.0 - 0x1p-53);
  Worst rs, rc, as, ac, pyth, sub;
  for (double u : us) {
    if (!(u > -1.0 && u < 2.0)) continue;
    double s, c;
    det_sincos_2pi(u, &s, &c);
    long double ls, lc;
    ref_sincos(u, &ls, &lc);
    if (std::fabs(ls) >= 0x1p-1022)
      rs.add((double)(std::fabs(s - ls) / std::fabs(ls)), u);
    else  // a subnormal result holds no relative accuracy: in units of the smallest subnormal
      sub.add((double)(std::fabs(s - ls) / 0x1p-1074L), u);
    if (lc != 0) rc.add((double)(std::fabs(c - lc) / std::fabs(lc)), u);
    as.add(std::fabs(s - std::sin(2 * M_PI * u)), u);
    ac.add(std::fabs(c - std::cos(2 * M_PI * u)), u);
    pyth.add(std::fabs(s * s + c * c - 1.0), u);
  }
  INFO("sin rel: ", rs.str());
  INFO("cos rel: ", rc.str());
  INFO("sin abs vs std: ", as.str());
  INFO("cos abs vs std: ", ac.str());
  INFO("s^2 + c^2 - 1: ", pyth.str());
  INFO("subnormal sin, in units of 2^-1074: ", sub.str());
  CHECK(rs.err <= 1e-15);
  CHECK(rc.err <= 1e-15);
  CHECK(as.err <= 2e-15);
  CHECK(ac.err <= 2e-15);
  CHECK(pyth.err <= 1e-15);
  CHECK(sub.err <= 1.0);
  double s, c;
  det_sincos_2pi(0.25, &s, &c);  // the quadrant points are exact
  CHECK(s == 1.0);
  CHECK(c == 0.0);
  det_sincos_2pi(0.5, &s, &c);
  CHECK(s == 0.0);
  CHECK(c == -1.0);
  det_sincos_2pi(-0.125, &s, &c);  // odd/even for negative u
  CHECK(s == doctest::Approx(-std::sqrt(0.5)).epsilon(1e-15));
  CHECK(c == doctest::Approx(std::sqrt(0.5)).epsilon(1e-15));
}

TEST_CASE("det_erf matches std::erf to 1e-15 absolute and relative") {
  std::vector<double> xs = grid(-6.5, 6.5, 1000000);
  for (double x : grid(-1.6, 1.6, 200000)) xs.push_back(x);
  for (double b : {1.5, 2.0, 3.0, 4.0, 6.0})  // where the method or the fraction's depth changes
    for (double x : {b, std::nextafter(b, 0.0), std::nextafter(b, 10.0)}) xs.push_back(x), xs.push_back(-x);
  for (int j = 1; j <= 1074; ++j) xs.push_back(std::ldexp(1.0, -j)), xs.push_back(-std::ldexp(1.0, -j));  // relative near 0
  xs.push_back(0.0), xs.push_back(10.0), xs.push_back(-27.0), xs.push_back(1e300), xs.push_back(-1e300);
  Worst wa, wr, sub;
  for (double x : xs) {
    const double d = det_erf(x), s = std::erf(x);
    wa.add(std::fabs(d - s), x);
    if (std::fabs(s) >= 0x1p-1022)
      wr.add(rel(d, s), x);
    else  // subnormal results: in units of the smallest subnormal
      sub.add(std::fabs(d - s) / 0x1p-1074, x);
  }
  INFO("abs: ", wa.str());
  INFO("rel: ", wr.str());
  INFO("subnormal results, in units of 2^-1074: ", sub.str());
  CHECK(wa.err <= 1e-15);
  CHECK(wr.err <= 1e-15);
  CHECK(sub.err <= 1.0);
  CHECK(det_erf(0.0) == 0.0);
  CHECK(det_erf(INFINITY) == 1.0);
  CHECK(det_erf(-INFINITY) == -1.0);
  CHECK(std::isnan(det_erf(NAN)));
  double lo, hi;
  trunc_bounds(2.0, &lo, &hi);
  CHECK(lo == -hi);
  CHECK(std::fabs(hi - std::erf(2.0 / std::sqrt(2.0))) <= 1e-15);
}

TEST_CASE("det_erfinv: 1e-14 absolute and 1e-13 relative for |x| <= 0.99, conditioning-bound up to 1-|x| = 1e-9") {
  std::vector<double> xs = grid(-0.99, 0.99, 400000);
  for (int j = 1; j <= 1074; ++j) xs.push_back(std::ldexp(1.0, -j)), xs.push_back(-std::ldexp(1.0, -j));
  // Near +-1 the result can be no closer than erfinv's conditioning allows (erfinv_cond).
  // The algorithm (Giles' single-precision start, two Newton steps) converges down to
  // 1 - |x| ~ 1e-9; closer to +-1 it would need more steps. trunc_normal reaches
  // 1 - |x| = 1e-9 only for a bound of 6.1 stds.
  std::vector<double> edge = grid(0.99, 1.0 - 1e-9, 200000);
  for (int j = 7; j <= 29; ++j)
    for (double f : {1.0, 0.7, 0.3}) edge.push_back(1.0 - f * std::ldexp(1.0, -j));
  for (double x : {0.95449973610364158, 0.99730020393673979, 0.9999366575163338})  // erf(b/sqrt2), b = 2, 3, 4
    edge.push_back(x);
  Worst wa, wr, wc, wstd, sub;
  for (double x : xs) {
    const double d = det_erfinv(x);
    const long double r = ref_erfinv(x);
    wa.add((double)std::fabs(d - r), x);
    if (std::fabs(r) >= 0x1p-1022L)
      wr.add((double)(std::fabs(d - r) / std::fabs(r)), x);
    else  // subnormal results: in units of the smallest subnormal
      sub.add((double)(std::fabs(d - r) / 0x1p-1074L), x);
    wstd.add(std::fabs(d - erfinv_std(x)) / erfinv_cond(r), x);
  }
  for (double e : edge)
    for (double x : {e, -e}) {
      const double d = det_erfinv(x);
      const long double r = ref_erfinv(x);
      wc.add((double)std::fabs(d - r) / (1e-14 + erfinv_cond(r)), x);
      wstd.add(std::fabs(d - erfinv_std(x)) / erfinv_cond(r), x);
    }
  INFO("abs, |x| <= 0.99: ", wa.str());
  INFO("rel, |x| <= 0.99: ", wr.str());
  INFO("error / (1e-14 + conditioning), 0.99 < |x| <= 1 - 1e-9: ", wc.str());
  INFO("distance to the std:: version / conditioning: ", wstd.str());
  INFO("subnormal results, in units of 2^-1074: ", sub.str());
  CHECK(wa.err <= 1e-14);
  CHECK(wr.err <= 1e-13);
  CHECK(wc.err <= 1.0);
  CHECK(wstd.err <= 8.0);
  CHECK(sub.err <= 2.0);
  CHECK(det_erfinv(0.0) == 0.0);
}

TEST_CASE("det_erfinv(det_erf(y)) returns y up to erf's rounding over erfinv's slope") {
  // erf(y) carries ~4e-16 absolute error (its own and its rounding); erfinv multiplies
  // that by 1/erf'(y) = (sqrt(pi)/2) e^(y^2). |y| <= 4.2 keeps 1 - erf(y) above 1e-9.
  Worst w;
  for (double y : grid(-4.2, 4.2, 200000)) {
    const double back = det_erfinv(det_erf(y));
    const double tol = 1e-15 + 4e-16 * std::sqrt(M_PI) / 2 * std::exp(y * y);
    w.add(std::fabs(back - y) / tol, y);
  }
  INFO("error / tolerance: ", w.str());
  CHECK(w.err <= 1.0);
  Worst wa;
  for (double y : grid(-1.0, 1.0, 100000)) wa.add(std::fabs(det_erfinv(det_erf(y)) - y), y);
  INFO("abs, |y| <= 1: ", wa.str());
  CHECK(wa.err <= 1e-14);
}

TEST_CASE("block() is random.cpp's loop body with the det_ functions") {
  const uint64_t seed = 0xC0FFEEull;
  double lo, hi;
  trunc_bounds(2.5, &lo, &hi);
  for (uint64_t ctr = 0; ctr < 1000; ++ctr) {
    uint32_t r[4];
    philox4x32(seed, ctr, r);
    double vu[4], vn[4], vt[4];
    block(Kind::uniform, seed, ctr, -1.0, 4.0, 0, 0, vu);
    block(Kind::normal, seed, ctr, 0.5, 2.0, 0, 0, vn);
    block(Kind::trunc_normal, seed, ctr, 0.02, 2.5, lo, hi, vt);
    for (int l = 0; l < 4; ++l) {
      CHECK(bits(vu[l]) == bits(-1.0 + (4.0 - -1.0) * (r[l] * (1.0 / 4294967296.0))));
      CHECK(bits(vt[l]) == bits(0.02 * std::sqrt(2.0) * det_erfinv(lo + (hi - lo) * u01(r[l]))));
    }
    for (int l = 0; l < 4; l += 2) {
      double s, c;
      det_sincos_2pi(u01(r[l + 1]), &s, &c);
      const double rad = std::sqrt(-2.0 * det_log(u01(r[l])));
      CHECK(bits(vn[l]) == bits(0.5 + 2.0 * rad * c));
      CHECK(bits(vn[l + 1]) == bits(0.5 + 2.0 * rad * s));
    }
  }
}

TEST_CASE("block() values are fixed bit for bit") {
  // Regression fixture: bits this header produced on x86-64 (g++ -O2 -ffp-contract=off).
  // A device test can assert the same bits; a change here means the streams changed, or
  // that this file was built with FMA contraction (see the top of philox.h).
  struct Gold {
    Kind k;
    uint64_t seed, counter;
    double a, b;
    uint64_t v[4];
  };
  const Gold golds[] = {
      {Kind::uniform, 42, 0, -2.0, 3.0,
       {0x3FF1096B19F00000ull, 0x3FD5F29B89C00000ull, 0xBFFA2436C9F00000ull, 0xBFD2EC9F33400000ull}},
      {Kind::normal, 42, 1, 0.0, 1.0,
       {0xBFB2BC05F9721449ull, 0x3FC1CF41EA22A41Dull, 0xBFF1B4E66440E067ull, 0x3FD4E85FA52D9414ull}},
      {Kind::normal, 0x0123456789ABCDEFull, 99, 1.5, 0.25,
       {0x3FF8F5603D341554ull, 0x3FF7A4000FB8EFFCull, 0x3FF894C499E269B1ull, 0x3FFA62D91CBF3AC7ull}},
      {Kind::trunc_normal, 42, 2, 1.0, 2.0,
       {0x3FEC372B45DAA9C2ull, 0x3FD8DA4FF27800B3ull, 0x3FCFCA0219C0D802ull, 0x3FE6B804A9911DEDull}},
      {Kind::trunc_normal, 7, 1ull << 40, 0.02, 3.0,
       {0x3F9B18EBB313E2A1ull, 0xBF8381ACCF7FAC3Aull, 0x3F800967E7B89C50ull, 0x3F8D46A97BC5665Aull}},
  };
  for (const Gold& g : golds) {
    double lo = 0, hi = 0;
    if (g.k == Kind::trunc_normal) trunc_bounds(g.b, &lo, &hi);
    double v[4];
    block(g.k, g.seed, g.counter, g.a, g.b, lo, hi, v);
    CAPTURE((int)g.k);
    CAPTURE(g.counter);
    for (int l = 0; l < 4; ++l) CHECK(bits(v[l]) == g.v[l]);
  }
}

TEST_CASE("block() distributions: uniform, normal, truncated normal") {
  const int64_t n = 200000, blocks = n / 4;
  const uint64_t seed = 20240611ull, base = 1ull << 33;
  auto moments = [&](Kind k, double a, double b, double lo, double hi, double* mn, double* mx) {
    double s = 0, s2 = 0;
    *mn = INFINITY, *mx = -INFINITY;
    for (int64_t i = 0; i < blocks; ++i) {
      double v[4];
      block(k, seed, base + i, a, b, lo, hi, v);
      for (double x : v) s += x, s2 += x * x, *mn = std::fmin(*mn, x), *mx = std::fmax(*mx, x);
    }
    const double mean = s / n;
    return std::vector<double>{mean, s2 / n - mean * mean};
  };
  double mn, mx;
  SUBCASE("normal: mean and variance within 0.01 of (0, 1)") {
    auto m = moments(Kind::normal, 0.0, 1.0, 0, 0, &mn, &mx);
    CHECK(std::fabs(m[0]) <= 0.01);
    CHECK(std::fabs(m[1] - 1.0) <= 0.01);
    const double rad_max = std::sqrt(-2 * std::log(u01(0)));  // 6.76 bounds every value
    CHECK(mx <= rad_max);
    CHECK(mn >= -rad_max);
    auto m2 = moments(Kind::normal, 3.0, 0.5, 0, 0, &mn, &mx);  // mean a, std b
    CHECK(std::fabs(m2[0] - 3.0) <= 0.01);
    CHECK(std::fabs(m2[1] - 0.25) <= 0.01);
  }
  SUBCASE("trunc_normal, bound 2: inside [-2 std, 2 std], variance of the truncated normal") {
    const double b = 2.0;
    // Var of N(0,1) truncated to [-b, b]: 1 - 2 b phi(b) / (Phi(b) - Phi(-b)) = 0.7737413...
    const double phi = std::exp(-b * b / 2) / std::sqrt(2 * M_PI), mass = std::erf(b / std::sqrt(2.0));
    const double var = 1 - 2 * b * phi / mass;
    CHECK(var == doctest::Approx(0.7737413).epsilon(1e-6));
    double lo, hi;
    trunc_bounds(b, &lo, &hi);
    for (double sd : {1.0, 0.02}) {
      CAPTURE(sd);
      auto m = moments(Kind::trunc_normal, sd, b, lo, hi, &mn, &mx);
      CHECK(mn >= -b * sd * (1 + 1e-12));  // the bound itself up to the last bits of erfinv(erf(b/sqrt2))
      CHECK(mx <= b * sd * (1 + 1e-12));
      CHECK(mx > 0.999 * b * sd);  // and the tails are reached
      CHECK(std::fabs(m[0]) <= 0.01 * sd);
      CHECK(std::fabs(m[1] / (sd * sd) - var) <= 0.01);
    }
  }
  SUBCASE("uniform on [a, b)") {
    const double a = -2.0, b = 3.0;
    auto m = moments(Kind::uniform, a, b, 0, 0, &mn, &mx);
    CHECK(mn >= a);
    CHECK(mx < b);
    CHECK(std::fabs(m[0] - 0.5) <= 0.02);
    CHECK(std::fabs(m[1] - 25.0 / 12) <= 0.02);
    CHECK(a + (b - a) * (0xFFFFFFFFu * (1.0 / 4294967296.0)) < b);  // the largest lane value stays below b
  }
}
