// Bi-WKV on the CPU: O(T) log-sum-exp scans per (batch, channel).
//
// Channels are contiguous in memory, so each task takes a block of up to kLanes
// neighbouring channels of one batch element and walks the tokens once per pass,
// updating kLanes independent states per token (the inner loops over lanes
// vectorise). Tasks run in parallel over batch x channel blocks. Per-token state
// needed by a later pass lives in a per-task scratch buffer of T * kLanes values.
#include <ATen/Parallel.h>
#include <ATen/OpMathType.h>
#include <ATen/Dispatch.h>
#include <torch/extension.h>

#include <algorithm>
#include <type_traits>
#include <vector>

#include "bi_wkv_scan.h"

namespace bi_wkv {
namespace {

constexpr int64_t kLanes = 16;

template <typename scalar_t>
struct Block {
  int64_t b, c0, nl;  // batch index, first channel, number of channels
  int64_t T, C;
  int64_t at(int64_t t) const { return (b * T + t) * C + c0; }
};

template <typename scalar_t, typename acc_t>
void forward_block(const Block<scalar_t>& blk, const acc_t* w, const acc_t* u,
                   const scalar_t* k, const scalar_t* v, scalar_t* y,
                   acc_t* scratch) {
  const int64_t T = blk.T, nl = blk.nl;
  acc_t* rnum = scratch;
  acc_t* rden = scratch + T * kLanes;
  acc_t* rm = scratch + 2 * T * kLanes;
  acc_t num[kLanes], den[kLanes], m[kLanes];

  // Right-to-left: the sum over i > t, stored for every t.
  for (int64_t l = 0; l < nl; ++l) num[l] = 0, den[l] = 0, m[l] = acc_t(kEmpty);
  for (int64_t t = T - 1; t >= 0; --t) {
    const int64_t o = blk.at(t), s = t * kLanes;
    for (int64_t l = 0; l < nl; ++l) {
      rnum[s + l] = num[l];
      rden[s + l] = den[l];
      rm[s + l] = m[l];
      Sum<acc_t> st{num[l], den[l], m[l]};
      step(st, w[l], acc_t(k[o + l]), acc_t(v[o + l]));
      num[l] = st.num, den[l] = st.den, m[l] = st.m;
    }
  }
  // Left-to-right: the sum over i < t, combined with the stored right sum.
  for (int64_t l = 0; l < nl; ++l) num[l] = 0, den[l] = 0, m[l] = acc_t(kEmpty);
  for (int64_t t = 0; t < T; ++t) {
    const int64_t o = blk.at(t), s = t * kLanes;
    for (int64_t l = 0; l < nl; ++l) {
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
void backward_block(const Block<scalar_t>& blk, const acc_t* w, const acc_t* u,
                    const scalar_t* k, const scalar_t* v, const scalar_t* gy,
                    scalar_t* gk, scalar_t* gv, acc_t* gw, acc_t* gu,
                    acc_t* scratch) {
  const int64_t T = blk.T, nl = blk.nl, TL = T * kLanes;
  acc_t* s0 = scratch;  // right sums, then a_t, then gv accumulator
  acc_t* s1 = scratch + TL;
  acc_t* s2 = scratch + 2 * TL;
  acc_t* s3 = scratch + 3 * TL;
  acc_t* s4 = scratch + 4 * TL;
  acc_t num[kLanes], den[kLanes], qnum[kLanes], qden[kLanes], m[kLanes];
  acc_t gw_acc[kLanes], gu_acc[kLanes];
  auto reset = [&]() {
    for (int64_t l = 0; l < nl; ++l)
      num[l] = 0, den[l] = 0, qnum[l] = 0, qden[l] = 0, m[l] = acc_t(kEmpty);
  };

  // Pass 1, right-to-left: right sums with moments, for every t.
  reset();
  for (int64_t t = T - 1; t >= 0; --t) {
    const int64_t o = blk.at(t), s = t * kLanes;
    for (int64_t l = 0; l < nl; ++l) {
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
  for (int64_t l = 0; l < nl; ++l) gw_acc[l] = 0, gu_acc[l] = 0;
  for (int64_t t = 0; t < T; ++t) {
    const int64_t o = blk.at(t), s = t * kLanes;
    for (int64_t l = 0; l < nl; ++l) {
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
  for (int64_t l = 0; l < nl; ++l) gw[l] = gw_acc[l], gu[l] = gu_acc[l];

  // Passes 3 and 4: sums over t > j, then t < j, of e^{-(|t-j|-1) w} a_t (1, y_t).
  // Pass 3 accumulates into s3/s4; pass 4 adds its share and writes gk/gv.
  auto alpha_scan = [&](auto last_pass) {
    constexpr bool kLast = decltype(last_pass)::value;
    for (int64_t l = 0; l < nl; ++l) num[l] = 0, den[l] = 0, m[l] = acc_t(kEmpty);
    for (int64_t i = 0; i < T; ++i) {
      const int64_t t = kLast ? i : T - 1 - i;
      const int64_t o = blk.at(t), s = t * kLanes;
      for (int64_t l = 0; l < nl; ++l) {
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

}  // namespace
}  // namespace bi_wkv

namespace bi_wkv {

// Runs fn(block, scratch) for every (batch, channel block), in parallel.
template <typename scalar_t, typename acc_t, typename Fn>
void for_each_block(int64_t B, int64_t T, int64_t C, int64_t scratch_rows,
                    const Fn& fn) {
  const int64_t nblocks = (C + kLanes - 1) / kLanes;
  at::parallel_for(0, B * nblocks, 1, [&](int64_t begin, int64_t end) {
    std::vector<acc_t> scratch(static_cast<size_t>(scratch_rows * T * kLanes));
    for (int64_t i = begin; i < end; ++i) {
      const int64_t b = i / nblocks, c0 = (i % nblocks) * kLanes;
      Block<scalar_t> blk{b, c0, std::min(kLanes, C - c0), T, C};
      fn(blk, scratch.data());
    }
  });
}

at::Tensor forward_cpu(const at::Tensor& w, const at::Tensor& u,
                       const at::Tensor& k, const at::Tensor& v) {
  const int64_t B = k.size(0), T = k.size(1), C = k.size(2);
  auto y = at::empty_like(k);
  AT_DISPATCH_FLOATING_TYPES_AND2(
      at::kHalf, at::kBFloat16, k.scalar_type(), "bi_wkv_forward_cpu", [&] {
        using acc_t = at::opmath_type<scalar_t>;
        const acc_t* pw = w.data_ptr<acc_t>();
        const acc_t* pu = u.data_ptr<acc_t>();
        const scalar_t* pk = k.data_ptr<scalar_t>();
        const scalar_t* pv = v.data_ptr<scalar_t>();
        scalar_t* py = y.data_ptr<scalar_t>();
        for_each_block<scalar_t, acc_t>(
            B, T, C, 3, [&](const Block<scalar_t>& blk, acc_t* scratch) {
              forward_block(blk, pw + blk.c0, pu + blk.c0, pk, pv, py, scratch);
            });
      });
  return y;
}

std::vector<at::Tensor> backward_cpu(const at::Tensor& w, const at::Tensor& u,
                                     const at::Tensor& k, const at::Tensor& v,
                                     const at::Tensor& gy) {
  const int64_t B = k.size(0), T = k.size(1), C = k.size(2);
  auto gk = at::empty_like(k);
  auto gv = at::empty_like(v);
  // Per-batch partial sums, reduced below in a fixed order: deterministic.
  auto gw_part = at::empty({B, C}, w.options());
  auto gu_part = at::empty({B, C}, u.options());
  AT_DISPATCH_FLOATING_TYPES_AND2(
      at::kHalf, at::kBFloat16, k.scalar_type(), "bi_wkv_backward_cpu", [&] {
        using acc_t = at::opmath_type<scalar_t>;
        const acc_t* pw = w.data_ptr<acc_t>();
        const acc_t* pu = u.data_ptr<acc_t>();
        const scalar_t* pk = k.data_ptr<scalar_t>();
        const scalar_t* pv = v.data_ptr<scalar_t>();
        const scalar_t* pg = gy.data_ptr<scalar_t>();
        scalar_t* pgk = gk.data_ptr<scalar_t>();
        scalar_t* pgv = gv.data_ptr<scalar_t>();
        acc_t* pgw = gw_part.data_ptr<acc_t>();
        acc_t* pgu = gu_part.data_ptr<acc_t>();
        for_each_block<scalar_t, acc_t>(
            B, T, C, 5, [&](const Block<scalar_t>& blk, acc_t* scratch) {
              const int64_t o = blk.b * C + blk.c0;
              backward_block(blk, pw + blk.c0, pu + blk.c0, pk, pv, pg, pgk,
                             pgv, pgw + o, pgu + o, scratch);
            });
      });
  return {gw_part.sum(0), gu_part.sum(0), gk, gv};
}

}  // namespace bi_wkv
