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
// one exponent m, value = mantissa * e^{m}, and m is the exact maximum exponent
// of the terms summed so far. Every exp() we take therefore has an argument
// <= 0: no overflow for any k, w (|k| = 1e4 included).
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

// exp(x) for x <= 0. On the host, float uses a branch-free polynomial so that
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

// Rescales two terms e^{x} and e^{y} to their common maximum exponent mx:
// a = e^{x - mx}, b = e^{y - mx}. The larger side gets exactly 1, so this
// costs a single exp (of -|y - x|).
template <typename T>
BIWKV_HD void rescale(T x, T y, T& a, T& b, T& mx) {
  mx = x > y ? x : y;
  const T lo = x > y ? y : x;
  const T e = exp_nonpos(lo - mx);
  // e^z >= 1 + z: the larger side gets max(e, 1) = 1, the other e.
  a = e > x - mx + T(1) ? e : x - mx + T(1);
  b = e > y - mx + T(1) ? e : y - mx + T(1);
}

// Value = (num, den) * e^{m}.
template <typename T>
struct Sum {
  T num, den, m;
};

// First-moment sums: (qnum, qden) = sum dist * e^{...} (x, 1), same exponent.
template <typename T>
struct Moments {
  T num, den, qnum, qden, m;
};

template <typename T>
BIWKV_HD Sum<T> empty_sum() {
  return {T(0), T(0), T(kEmpty)};
}

template <typename T>
BIWKV_HD Moments<T> empty_moments() {
  return {T(0), T(0), T(0), T(0), T(kEmpty)};
}

// s <- e^{-w} s + e^{k} (xnum, xden): one step of a one-sided scan.
template <typename T>
BIWKV_HD void step(Sum<T>& s, T w, T k, T xnum, T xden) {
  T a, b;
  rescale(s.m - w, k, a, b, s.m);
  s.num = s.num * a + b * xnum;
  s.den = s.den * a + b * xden;
}

// s <- e^{-w} s + e^{k} (x, 1).
template <typename T>
BIWKV_HD void step(Sum<T>& s, T w, T k, T x) {
  step(s, w, k, x, T(1));
}

// Same step with moments: every earlier term moves one token further away.
template <typename T>
BIWKV_HD void step(Moments<T>& s, T w, T k, T x) {
  T a, b;
  rescale(s.m - w, k, a, b, s.m);
  s.qnum = (s.qnum + s.num) * a;
  s.qden = (s.qden + s.den) * a;
  s.num = s.num * a + b * x;
  s.den = s.den * a + b;
}

// s <- s + e^{e} (xnum, xden): adds one term without decay (used to summarise
// a chunk of tokens in the CUDA kernel).
template <typename T>
BIWKV_HD void add(Sum<T>& s, T e, T xnum, T xden) {
  T a, b;
  rescale(s.m, e, a, b, s.m);
  s.num = s.num * a + b * xnum;
  s.den = s.den * a + b * xden;
}

// Same with moment weight dist, for (x, 1).

template <typename T>
BIWKV_HD void add(Moments<T>& s, T e, T x, T dist) {
  T a, b;
  rescale(s.m, e, a, b, s.m);
  s.num = s.num * a + b * x;
  s.den = s.den * a + b;
  s.qnum = s.qnum * a + dist * b * x;
  s.qden = s.qden * a + dist * b;
}

// Move every term of s n tokens further away: multiply by e^{-n w}.
template <typename T>
BIWKV_HD void decay(Sum<T>& s, T w, T n) {
  s.m -= n * w;
}

template <typename T>
BIWKV_HD void decay(Moments<T>& s, T w, T n) {
  s.qnum += n * s.num;
  s.qden += n * s.den;
  s.m -= n * w;
}

// s <- s + o.
template <typename T>
BIWKV_HD void merge(Sum<T>& s, const Sum<T>& o) {
  T a, b;
  rescale(s.m, o.m, a, b, s.m);
  s.num = s.num * a + o.num * b;
  s.den = s.den * a + o.den * b;
}

template <typename T>
BIWKV_HD void merge(Moments<T>& s, const Moments<T>& o) {
  T a, b;
  rescale(s.m, o.m, a, b, s.m);
  s.num = s.num * a + o.num * b;
  s.den = s.den * a + o.den * b;
  s.qnum = s.qnum * a + o.qnum * b;
  s.qden = s.qden * a + o.qden * b;
}

// Result of combining the left sum, the right sum and the token itself.
template <typename T>
struct Combined {
  T y;       // the output
  T inv;     // 1 / normalised denominator; dL/dN = g * inv * e^{-m}
  T m;       // normalising exponent (max over all terms)
  T el, er;  // e^{m_left - m}, e^{m_right - m}
  T es;      // e^{u + k - m}
};

template <typename T>
BIWKV_HD Combined<T> combine(T lnum, T lden, T lm, T rnum, T rden, T rm, T u,
                             T k, T v) {
  Combined<T> c;
  // Two single-exp rescales: left with right, then with the token itself.
  T lr, c_lr;
  rescale(lm, rm, c.el, c.er, lr);
  rescale(lr, u + k, c_lr, c.es, c.m);
  c.el *= c_lr;
  c.er *= c_lr;
  c.inv = T(1) / (lden * c.el + rden * c.er + c.es + T(kEps));
  c.y = (lnum * c.el + rnum * c.er + c.es * v) * c.inv;
  return c;
}

}  // inline namespace BIWKV_ISA
}  // namespace bi_wkv
