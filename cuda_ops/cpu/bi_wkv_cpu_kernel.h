// Per-block Bi-WKV CPU kernels, compiled once per instruction set (see
// bi_wkv_cpu.cpp and bi_wkv_cpu_avx2.cpp). Channels are contiguous in memory,
// so a block is kLanes neighbouring channels of one batch element; loops over
// the lanes have a fixed trip count and restrict-qualified pointers so that
// they vectorise. Blocks narrower than kLanes are padded by the caller.
#pragma once

#include <cstdint>

#include "bi_wkv_cpu_block.h"
#include "bi_wkv_scan.h"

namespace bi_wkv {
inline namespace BIWKV_ISA {

template <typename scalar_t, typename acc_t>
void forward_block(const Block& blk, const acc_t* __restrict__ w,
                   const acc_t* __restrict__ u, const scalar_t* __restrict__ k,
                   const scalar_t* __restrict__ v, scalar_t* __restrict__ y,
                   acc_t* __restrict__ scratch) {
  const int64_t T = blk.T;
  acc_t* __restrict__ rnum = scratch;
  acc_t* __restrict__ rden = scratch + T * kLanes;
  acc_t* __restrict__ rm = scratch + 2 * T * kLanes;
  acc_t num[kLanes], den[kLanes], m[kLanes];

  // Right-to-left: the sum over i > t, stored for every t.
  for (int64_t l = 0; l < kLanes; ++l) num[l] = 0, den[l] = 0, m[l] = acc_t(kEmpty);
  for (int64_t t = T - 1; t >= 0; --t) {
    const int64_t o = blk.at(t), s = t * kLanes;
    for (int64_t l = 0; l < kLanes; ++l) {
      rnum[s + l] = num[l];
      rden[s + l] = den[l];
      rm[s + l] = m[l];
      Sum<acc_t> st{num[l], den[l], m[l]};
      step(st, w[l], acc_t(k[o + l]), acc_t(v[o + l]));
      num[l] = st.num, den[l] = st.den, m[l] = st.m;
    }
  }
  // Left-to-right: the sum over i < t, combined with the stored right sum.
  for (int64_t l = 0; l < kLanes; ++l) num[l] = 0, den[l] = 0, m[l] = acc_t(kEmpty);
  for (int64_t t = 0; t < T; ++t) {
    const int64_t o = blk.at(t), s = t * kLanes;
    for (int64_t l = 0; l < kLanes; ++l) {
      const acc_t kk = k[o + l], vv = v[o + l];
      const Combined<acc_t> c = combine(num[l], den[l], m[l], rnum[s + l],
                                        rden[s + l], rm[s + l], u[l], kk, vv);
      y[o + l] = static_cast<scalar_t>(c.y);
      Sum<acc_t> st{num[l], den[l], m[l]};
      step(st, w[l], kk, vv);
      num[l] = st.num, den[l] = st.den, m[l] = st.m;
    }
  }
}

// Gradients. With D_t the (true) denominator and a_t = g_t / D_t:
//   gv_j = e^{k_j} (e^u a_j + sum_{t != j} e^{-(|t-j|-1) w} a_t)
//   gk_j = e^{k_j} (e^u a_j (v_j - y_j) + sum_{t != j} e^{-(|t-j|-1) w} a_t (v_j - y_t))
//   gu   = sum_t a_t e^{u + k_t} (v_t - y_t)
//   gw   = -sum_t a_t sum_{i != t} (|t-i|-1) e^{-(|t-i|-1) w + k_i} (v_i - y_t)
// a_t is kept as mantissa * e^{-m_t}, so the two sums over t are again
// one-sided scans in log-sum-exp form, whose exponents never exceed -k_j.
template <typename scalar_t, typename acc_t>
void backward_block(const Block& blk, const acc_t* __restrict__ w,
                    const acc_t* __restrict__ u,
                    const scalar_t* __restrict__ k,
                    const scalar_t* __restrict__ v,
                    const scalar_t* __restrict__ gy,
                    scalar_t* __restrict__ gk, scalar_t* __restrict__ gv,
                    acc_t* __restrict__ gw, acc_t* __restrict__ gu,
                    acc_t* __restrict__ scratch) {
  const int64_t T = blk.T, TL = T * kLanes;
  acc_t* __restrict__ s0 = scratch;  // right sums, then a_t, then gv accumulator
  acc_t* __restrict__ s1 = scratch + TL;
  acc_t* __restrict__ s2 = scratch + 2 * TL;
  acc_t* __restrict__ s3 = scratch + 3 * TL;
  acc_t* __restrict__ s4 = scratch + 4 * TL;
  acc_t num[kLanes], den[kLanes], qnum[kLanes], qden[kLanes], m[kLanes];
  acc_t gw_acc[kLanes], gu_acc[kLanes];
  auto reset = [&]() {
    for (int64_t l = 0; l < kLanes; ++l)
      num[l] = 0, den[l] = 0, qnum[l] = 0, qden[l] = 0, m[l] = acc_t(kEmpty);
  };

  // Pass 1, right-to-left: right sums with moments, for every t.
  reset();
  for (int64_t t = T - 1; t >= 0; --t) {
    const int64_t o = blk.at(t), s = t * kLanes;
    for (int64_t l = 0; l < kLanes; ++l) {
      s0[s + l] = num[l], s1[s + l] = den[l], s2[s + l] = qnum[l];
      s3[s + l] = qden[l], s4[s + l] = m[l];
      Moments<acc_t> st{num[l], den[l], qnum[l], qden[l], m[l]};
      step(st, w[l], acc_t(k[o + l]), acc_t(v[o + l]));
      num[l] = st.num, den[l] = st.den, qnum[l] = st.qnum, qden[l] = st.qden, m[l] = st.m;
    }
  }
  // Pass 2, left-to-right: outputs, a_t, gw, gu and the token's own share of
  // gk/gv. Leaves s0 = a mantissa, s1 = -m_t (its exponent), s2 = y_t,
  // s3 = gv, s4 = gk (accumulators, linear scale).
  reset();
  for (int64_t l = 0; l < kLanes; ++l) gw_acc[l] = 0, gu_acc[l] = 0;
  for (int64_t t = 0; t < T; ++t) {
    const int64_t o = blk.at(t), s = t * kLanes;
    for (int64_t l = 0; l < kLanes; ++l) {
      const acc_t kk = k[o + l], vv = v[o + l], g = gy[o + l];
      const acc_t rq_num = s2[s + l], rq_den = s3[s + l];
      const Combined<acc_t> c = combine(num[l], den[l], m[l], s0[s + l],
                                        s1[s + l], s4[s + l], u[l], kk, vv);
      const acc_t a = g * c.inv;
      gu_acc[l] += a * c.es * (vv - c.y);
      gw_acc[l] -= a * (c.el * (qnum[l] - c.y * qden[l]) +
                        c.er * (rq_num - c.y * rq_den));
      s0[s + l] = a, s1[s + l] = -c.m, s2[s + l] = c.y;
      s3[s + l] = a * c.es, s4[s + l] = a * c.es * (vv - c.y);
      Moments<acc_t> st{num[l], den[l], qnum[l], qden[l], m[l]};
      step(st, w[l], kk, vv);
      num[l] = st.num, den[l] = st.den, qnum[l] = st.qnum, qden[l] = st.qden, m[l] = st.m;
    }
  }
  for (int64_t l = 0; l < kLanes; ++l) gw[l] = gw_acc[l], gu[l] = gu_acc[l];

  // Passes 3 and 4: sums over t > j, then t < j, of e^{-(|t-j|-1) w} a_t (1, y_t).
  // Pass 3 accumulates into s3/s4; pass 4 adds its share and writes gk/gv.
  auto alpha_scan = [&](auto last_pass) {
    constexpr bool kLast = decltype(last_pass)::value;
    for (int64_t l = 0; l < kLanes; ++l) num[l] = 0, den[l] = 0, m[l] = acc_t(kEmpty);
    for (int64_t i = 0; i < T; ++i) {
      const int64_t t = kLast ? i : T - 1 - i;
      const int64_t o = blk.at(t), s = t * kLanes;
      for (int64_t l = 0; l < kLanes; ++l) {
        const acc_t kk = k[o + l], vv = v[o + l];
        const acc_t e = exp_nonpos(kk + m[l]);  // <= 1, see above
        const acc_t gvj = s3[s + l] + den[l] * e;
        const acc_t gkj = s4[s + l] + (vv * den[l] - num[l]) * e;
        if constexpr (kLast) {
          gv[o + l] = static_cast<scalar_t>(gvj);
          gk[o + l] = static_cast<scalar_t>(gkj);
        } else {
          s3[s + l] = gvj, s4[s + l] = gkj;
        }
        // Source term a_t = s0 * e^{s1}, carried as (a_t y_t, a_t).
        Sum<acc_t> st{num[l], den[l], m[l]};
        step(st, w[l], s1[s + l], s0[s + l] * s2[s + l], s0[s + l]);
        num[l] = st.num, den[l] = st.den, m[l] = st.m;
      }
    }
  };
  alpha_scan(std::false_type{});
  alpha_scan(std::true_type{});
}

// Instantiates the kernels for every dtype in the current ISA namespace.
#define BIWKV_INSTANTIATE_CPU_KERNELS(scalar_t, acc_t)                        \
  template void forward_block<scalar_t, acc_t>(                               \
      const Block&, const acc_t*, const acc_t*, const scalar_t*,              \
      const scalar_t*, scalar_t*, acc_t*);                                    \
  template void backward_block<scalar_t, acc_t>(                              \
      const Block&, const acc_t*, const acc_t*, const scalar_t*,              \
      const scalar_t*, const scalar_t*, scalar_t*, scalar_t*, acc_t*, acc_t*, \
      acc_t*);

}  // inline namespace BIWKV_ISA
}  // namespace bi_wkv
