// Bi-WKV scan primitives shared by the CPU and CUDA kernels.
//
// The operator (per batch b and channel c, tokens t in [0, T)):
//
//   y[t] = ( sum_{i != t} e^{-(|t-i|-1) w + k[i]} v[i] + e^{u + k[t]} v[t] )
//        / ( sum_{i != t} e^{-(|t-i|-1) w + k[i]}      + e^{u + k[t]}      )
//
// is split into a left sum (i < t), a right sum (i > t) and the token itself.
// Each one-sided sum obeys a first-order recurrence (S_{t+1} = e^{-w} S_t +
// e^{k_t} x_t), which we run in "log-sum-exp" form: a state holds mantissas and
// one exponent, value = mantissa * e^{m - n w} (see gap() below), the largest
// exponent of the terms summed so far, up to rounding. Every exp() we take
// therefore has an argument <= 0 (or a rounding above): no overflow for any
// k, w (|k| = 1e4 included).
//
// The backward pass also needs first moments, sum (dist) e^{-dist w + k} x,
// for dL/dw; Moments carries them with the same exponent.
#pragma once

#include <cmath>

#if defined(__CUDACC__) || defined(__HIPCC__)
#define BIWKV_HD __host__ __device__ __forceinline__
#else
#define BIWKV_HD inline
#endif

// Each CPU instruction-set variant of the kernels compiles this header inside
// its own inline namespace (BIWKV_ISA), so no inline function is shared, and
// possibly taken by the linker, between code built for different CPUs.
#ifndef BIWKV_ISA
#define BIWKV_ISA generic
#endif

namespace bi_wkv {
inline namespace BIWKV_ISA {

// Exponent of an empty state: finite, so that -ffast-math style compilers and
// "m - w" stay well defined; exp(EMPTY - anything reasonable) == 0.
constexpr float kEmpty = -1e38f;
// Added to the max-normalised denominator, as the official kernels do.
constexpr float kEps = 1e-6f;

// The host float exp below computes 2^t with t = x*log2(e), split as
// t = n + f with n = round(t) and f in [-0.5, 0.5]. Adding 1.5 * 2^23 rounds t
// to the nearest integer and leaves n in the low mantissa bits of r, so
// (bits(r) + 127) << 23 is 2^n. The CPU kernels' vector form
// (cpu/bi_wkv_cpu_vec.h) uses the same constants and polynomial.
constexpr float kExpRound = 12582912.0f;
constexpr float kLog2e = 1.44269504088896341f;
constexpr float kExpMin = -87.0f;  // keeps 2^n a normal float

// Cephes exp2f polynomial: 2^f for f in [-0.5, 0.5], relative error ~2e-7.
// F is float or a float vector type.
template <typename F>
BIWKV_HD F exp2_fraction(F f) {
  F p = f * 1.535336188319500e-4f + 1.339887440266574e-3f;
  p = p * f + 9.618437357674640e-3f;
  p = p * f + 5.550332471162809e-2f;
  p = p * f + 2.402264791363012e-1f;
  p = p * f + 6.931472028550421e-1f;
  return p * f + 1.0f;
}

// exp(x) for x <= 0, and for the small x > 0 that lazy anchors (x <= 8) and
// rounding give. On the host, float uses a branch-free polynomial so that
// loops over channel lanes vectorise without libm; double uses std::exp
// (double is only used by tests and gradcheck).
BIWKV_HD float exp_nonpos(float x) {
#if defined(__CUDA_ARCH__) || defined(__HIP_DEVICE_COMPILE__)
  return __expf(x);
#else
  x = x < kExpMin ? kExpMin : x;
  const float r = x * kLog2e + kExpRound;
  const float p = exp2_fraction(x * kLog2e - (r - kExpRound));
  union {
    float f;
    unsigned int i;
  } bits;
  bits.f = r;
  bits.i = (bits.i + 127u) << 23;
  return p * bits.f;
#endif
}

BIWKV_HD double exp_nonpos(double x) { return exp(x); }

// x + y = s + r exactly, s = fl(x + y) (Knuth's TwoSum; needs
// round-to-nearest and no reassociation: no -ffast-math).
template <typename T>
BIWKV_HD void two_sum(T x, T y, T& s, T& r) {
  s = x + y;
  const T yv = s - x;
  r = (x - (s - yv)) + (y - yv);
}

// sum + x, compensated (Kahan): sum - c is the sum to about one rounding
// instead of sqrt(additions) roundings.
template <typename T>
BIWKV_HD void kahan_add(T& sum, T& c, T x) {
  const T y = x - c;
  const T t = sum + y;
  c = (t - sum) - y;
  sum = t;
}

// s <- s a + x, compensated: (s, c) as in kahan_add; the mantissas of Sum
// accumulate this way (a is 1, except when the anchor moves).
template <typename T>
BIWKV_HD void scale_add(T& s, T& c, T a, T x) {
  s *= a, c *= a;
  kahan_add(s, c, x);
}

// e^{r} for the tiny r left over by two_sum: |r| <= half an ulp of an
// exponent, 6e-5 for exponents below 1024 (then 1 + r is off by 2e-9). An
// empty state's r can be large, but its mantissas are 0, and 1 + r stays
// finite.
template <typename T>
BIWKV_HD T exp_small(T r) {
  return T(1) + r;
}

// Exponents are kept as m - n w: m an anchor (a key, or a stored exponent)
// and n the integer number of decay steps taken since (exact in float for
// n < 2^24 tokens). The decay is never accumulated into a rounded running
// exponent: subtracting w from a float m ~ 100 at every token rounds w away
// when w < ulp(m) and drifts by up to ulp(m) / 2 per token otherwise (1e-4
// relative at T = 8192). Two exponents are compared through
// gap() = (m1 - m2) - (n1 - n2) w: m1 - m2 is exact when the terms are
// within a factor two (Sterbenz), and (n1 - n2) w is one rounded product of
// the decay between them, as in the direct formula.
template <typename T>
BIWKV_HD T gap(T m1, T n1, T m2, T n2, T w) {
  return (m1 - m2) - (n1 - n2) * w;
}

// Weights of two terms e^{x} and e^{y} relative to the larger one, from
// d = x - y: a = e^{x - max}, b = e^{y - max}. The larger side gets exactly
// 1, so this costs a single exp (of -|d|).
template <typename T>
BIWKV_HD void rescale(T d, T& a, T& b) {
  const T e = exp_nonpos(d < -d ? d : -d);
  const T dn = d < T(0) ? d : T(0), dp = d > T(0) ? d : T(0);
  // e^z >= 1 + z: the larger side gets max(e, 1) = 1, the other e. (Only
  // min/max here: gcc vectorises the lane loops of the CPU kernels, which it
  // does not always do with true selects.)
  a = e > T(1) + dn ? e : T(1) + dn;
  b = e > T(1) - dp ? e : T(1) - dp;
}

// Value = (num, den) * e^{m - n w}. The mantissas are compensated sums
// (num - cnum is the sum): a plain float sum over T tokens is off by up to
// sqrt(T) roundings, 5e-6 in y at T = 16384. (Not in the backward's
// Moments and lazy sums: there it would cost the CPU backward 15-20% for
// gradients within 1e-6 instead of 1e-5 of float64.)
template <typename T>
struct Sum {
  T num, den, m, n, cnum, cden;
  BIWKV_HD T total_num() const { return num - cnum; }
  BIWKV_HD T total_den() const { return den - cden; }
};

// First-moment sums: (qnum, qden) = sum dist * e^{...} (x, 1), same exponent.
// They add the running sums (num, den) at every token, and dL/dw takes the
// small difference qnum - y qden of two such sums: they are compensated
// (qnum - cqnum is the sum; without, dL/dw is off by 1e-4 of its scale at
// T = 2048 for keys of scale 10). num and den are plain sums.
template <typename T>
struct Moments {
  T num, den, qnum, qden, m, n, cqnum, cqden;
  BIWKV_HD T total_num() const { return num; }
  BIWKV_HD T total_den() const { return den; }
  BIWKV_HD T total_qnum() const { return qnum - cqnum; }
  BIWKV_HD T total_qden() const { return qden - cqden; }
};

template <typename T>
BIWKV_HD Sum<T> empty_sum() {
  return {T(0), T(0), T(kEmpty), T(0), T(0), T(0)};
}

template <typename T>
BIWKV_HD Moments<T> empty_moments() {
  return {T(0), T(0), T(0), T(0), T(kEmpty), T(0), T(0), T(0)};
}

// s <- e^{-w} s + e^{k} (xnum, xden): one step of a one-sided scan.
template <typename T>
BIWKV_HD void step(Sum<T>& s, T w, T k, T xnum, T xden) {
  s.n += T(1);
  const T d = gap(s.m, s.n, k, T(0), w);
  T a, b;
  rescale(d, a, b);
  s.m = d < T(0) ? k : s.m;  // a larger new term becomes the anchor
  s.n = d < T(0) ? T(0) : s.n;
  scale_add(s.num, s.cnum, a, b * xnum);
  scale_add(s.den, s.cden, a, b * xden);
}

// s <- e^{-w} s + e^{k} (x, 1).
template <typename T>
BIWKV_HD void step(Sum<T>& s, T w, T k, T x) {
  step(s, w, k, x, T(1));
}

// Same step with moments: every earlier term moves one token further away.
template <typename T>
BIWKV_HD void step(Moments<T>& s, T w, T k, T x) {
  s.n += T(1);
  const T d = gap(s.m, s.n, k, T(0), w);
  T a, b;
  rescale(d, a, b);
  s.m = d < T(0) ? k : s.m;
  s.n = d < T(0) ? T(0) : s.n;
  kahan_add(s.qnum, s.cqnum, s.num);
  kahan_add(s.qden, s.cqden, s.den);
  s.qnum *= a, s.cqnum *= a;
  s.qden *= a, s.cqden *= a;
  s.num = s.num * a + b * x;
  s.den = s.den * a + b;
}

// The same step for sums whose terms' exponents drift steadily, as the
// backward's sources a_t = g_t / D_t, of exponent -X_t: a lazy anchor moves
// only when the new term exceeds the state's exponent by more than
// kLazyAnchor. Moving it whenever a term is larger rescales the whole sum at
// every token by a rounded e^{d}, d ~ 2w, the same rounding each time: up to
// 3e-8 relative per token, 5e-4 over 16384 tokens. Terms may then exceed
// the anchor by e^{kLazyAnchor}; the state's exponent stays that of one of
// its terms, but not necessarily the largest one (so these states are not
// for combine(), whose 1e-6 is relative to the largest). Plain sums: the
// compensations a merge may have left (~1e-7 of the sum) stay as they are.
constexpr float kLazyAnchor = 8.0f;

template <typename T>
BIWKV_HD void step_lazy(Sum<T>& s, T w, T k, T xnum, T xden) {
  s.n += T(1);
  const T d = gap(s.m, s.n, k, T(0), w);
  const bool move = d < T(-kLazyAnchor);
  const T e = exp_nonpos(move ? d : -d);  // -d <= kLazyAnchor
  const T a = move ? e : T(1), b = move ? T(1) : e;
  s.m = move ? k : s.m;
  s.n = move ? T(0) : s.n;
  s.num = s.num * a + b * xnum;
  s.den = s.den * a + b * xden;
}

template <typename T>
BIWKV_HD void add_lazy(Sum<T>& s, T w, T k, T n, T xnum, T xden) {
  const T d = gap(s.m, s.n, k, n, w);
  const bool move = d < T(-kLazyAnchor);
  const T e = exp_nonpos(move ? d : -d);
  const T a = move ? e : T(1), b = move ? T(1) : e;
  s.m = move ? k : s.m;
  s.n = move ? n : s.n;
  s.num = s.num * a + b * xnum;
  s.den = s.den * a + b * xden;
}

// s <- s + e^{k - n w} (xnum, xden): adds one term without decay (used to
// summarise a chunk of tokens in the CUDA kernel).
template <typename T>
BIWKV_HD void add(Sum<T>& s, T w, T k, T n, T xnum, T xden) {
  const T d = gap(s.m, s.n, k, n, w);
  T a, b;
  rescale(d, a, b);
  s.m = d < T(0) ? k : s.m;
  s.n = d < T(0) ? n : s.n;
  scale_add(s.num, s.cnum, a, b * xnum);
  scale_add(s.den, s.cden, a, b * xden);
}

// Same with moment weight dist, for (x, 1).
template <typename T>
BIWKV_HD void add(Moments<T>& s, T w, T k, T n, T x, T dist) {
  const T d = gap(s.m, s.n, k, n, w);
  T a, b;
  rescale(d, a, b);
  s.m = d < T(0) ? k : s.m;
  s.n = d < T(0) ? n : s.n;
  s.num = s.num * a + b * x;
  s.den = s.den * a + b;
  scale_add(s.qnum, s.cqnum, a, dist * b * x);
  scale_add(s.qden, s.cqden, a, dist * b);
}

// Move every term of s n tokens further away: multiply by e^{-n w}.
template <typename T>
BIWKV_HD void decay(Sum<T>& s, T n) {
  s.n += n;
}

template <typename T>
BIWKV_HD void decay(Moments<T>& s, T n) {
  kahan_add(s.qnum, s.cqnum, n * s.num);
  kahan_add(s.qden, s.cqden, n * s.den);
  s.n += n;
}

// s <- s + o.
template <typename T>
BIWKV_HD void merge(Sum<T>& s, const Sum<T>& o, T w) {
  const T d = gap(s.m, s.n, o.m, o.n, w);
  T a, b;
  rescale(d, a, b);
  s.m = d < T(0) ? o.m : s.m;
  s.n = d < T(0) ? o.n : s.n;
  scale_add(s.num, s.cnum, a, o.total_num() * b);
  scale_add(s.den, s.cden, a, o.total_den() * b);
}

template <typename T>
BIWKV_HD void merge(Moments<T>& s, const Moments<T>& o, T w) {
  const T d = gap(s.m, s.n, o.m, o.n, w);
  T a, b;
  rescale(d, a, b);
  s.m = d < T(0) ? o.m : s.m;
  s.n = d < T(0) ? o.n : s.n;
  s.num = s.num * a + o.num * b;
  s.den = s.den * a + o.den * b;
  scale_add(s.qnum, s.cqnum, a, o.total_qnum() * b);
  scale_add(s.qden, s.cqden, a, o.total_qden() * b);
}

// The exponent m - n w as a float e plus the factor e^{(m - n w) - e} ~ 1
// (the rounding of the subtraction; the product n w is rounded once).
template <typename T>
BIWKV_HD T fold_exponent(T m, T n, T w, T& factor) {
  T e, r;
  two_sum(m, -(n * w), e, r);
  factor = exp_small(r);
  return e;
}

// The same state with n = 0, i.e. with one float exponent, for storing it
// as (num, den, m) (loaded back, n is 0): the rounding of the exponent goes
// into the mantissas, where it costs one rounding instead of an error of
// up to ulp(m) / 2 in every term. The compensations go in too.
template <typename T>
BIWKV_HD Sum<T> fold(const Sum<T>& s, T w) {
  T f;
  const T m = fold_exponent(s.m, s.n, w, f);
  return {s.total_num() * f, s.total_den() * f, m, T(0), T(0), T(0)};
}

template <typename T>
BIWKV_HD Moments<T> fold(const Moments<T>& s, T w) {
  T f;
  const T m = fold_exponent(s.m, s.n, w, f);
  return {s.num * f, s.den * f, s.total_qnum() * f, s.total_qden() * f, m, T(0),
          T(0),      T(0)};
}

// Result of combining the left sum, the right sum and the token itself,
// whose exponents are lx = lm - ln w, rx = rm - rn w and u + k; X is the
// largest of the three.
template <typename T>
struct Combined {
  T y;       // the output
  T inv;     // 1 / normalised denominator; dL/dN = g * inv * e^{-X}
  T m, ia;   // X as a float m, and inv * e^{m - X}: dL/dN = g * ia * e^{-m}
  T el, er;  // e^{lx - X}, e^{rx - X}
  T es;      // e^{u + k - X}
};

template <typename T>
BIWKV_HD Combined<T> combine(T lnum, T lden, T lm, T ln, T rnum, T rden, T rm,
                             T rn, T w, T u, T k, T v) {
  Combined<T> c;
  // Two single-exp rescales: left with right, then with the token itself.
  T el, er, c_lr;
  const T dlr = gap(lm, ln, rm, rn, w);
  rescale(dlr, el, er);
  const T xm = dlr < T(0) ? rm : lm, xn = dlr < T(0) ? rn : ln;
  const T ds = gap(xm, xn, k, T(0), w) - u;
  rescale(ds, c_lr, c.es);
  c.el = el * c_lr;
  c.er = er * c_lr;
  c.inv = T(1) / (lden * c.el + rden * c.er + c.es + T(kEps));
  c.y = (lnum * c.el + rnum * c.er + c.es * v) * c.inv;
  // X = xm - xn w or u + k, as the float m plus the residual r.
  T r;
  two_sum(ds < T(0) ? k : xm, ds < T(0) ? u : -(xn * w), c.m, r);
  c.ia = c.inv * exp_small(-r);
  return c;
}

}  // namespace BIWKV_ISA
}  // namespace bi_wkv
