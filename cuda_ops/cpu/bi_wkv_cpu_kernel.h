// Per-block Bi-WKV CPU kernels, compiled once per instruction set (see
// bi_wkv_cpu.cpp and bi_wkv_cpu_avx2.cpp). Channels are contiguous in memory,
// so a block is kLanes neighbouring channels of one batch element; loops over
// the lanes have a fixed trip count and restrict-qualified pointers so that
// they vectorise. Blocks narrower than kLanes are padded by the caller.
#pragma once

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <type_traits>

#include "bi_wkv_cpu_block.h"
#include "bi_wkv_cpu_vec.h"

namespace bi_wkv {
inline namespace BIWKV_ISA {

// Fast forward for the parameters real models have (every lane of the block
// with |w| <= kFastMaxDecay and |u| <= kFastMaxBonus; float accumulators).
// Inside a chunk, keys are scaled by the chunk's largest key K, so a token
// costs one exp and the scans are plain multiply-adds; over a chunk the decay
// moves a term by at most e^{16}, so the largest term never under- or
// overflows. The sums carried from chunk to chunk stay in log-sum-exp form
// and are merged with each chunk's own sum, so a sum that is negligible now
// but grows later (w < 0) is never lost. Outputs are formed in the scale S,
// the largest of K and the two carried sums: S is reached by a term that
// reaches every output of the chunk with a factor of at least e^{-20}, so
// terms too small to represent relative to S are far below float precision.
// The 1e-6 of the definition, which needs the per-token maximum, is left
// out: it moves y by at most 1e-6 relative.
// The per-token loops use explicit vectors (bi_wkv_cpu_vec.h): 1.4-2x faster
// than the same lane loops left to the auto-vectoriser. Pass 1 keeps each
// chunk's largest key for pass 2.
constexpr float kFastMaxDecay = 16.0f / kChunk;
constexpr float kFastMaxBonus = 20.0f;

inline bool fast_forward_ok(const float* w, const float* u) {
  bool ok = true;
  for (int64_t l = 0; l < kLanes; ++l)
    ok &= std::fabs(w[l]) <= kFastMaxDecay && std::fabs(u[l]) <= kFastMaxBonus;
  return ok;
}

// Carried sum (num, den) * e^{m} <- itself decayed over n tokens plus the
// chunk's own sum (inum, iden) * e^{im}.
inline void carry(float* __restrict__ num, float* __restrict__ den,
                  float* __restrict__ m, const float* __restrict__ inum,
                  const float* __restrict__ iden, const float* __restrict__ im,
                  const float* __restrict__ w, float n) {
  for (int64_t l = 0; l < kLanes; ++l) {
    Sum<float> s{num[l], den[l], m[l] - n * w[l]};
    merge(s, Sum<float>{inum[l], iden[l], im[l]});
    num[l] = s.num, den[l] = s.den, m[l] = s.m;
  }
}

template <typename scalar_t>
void forward_block_fast(const Block& blk, const float* __restrict__ w,
                        const float* __restrict__ u,
                        const scalar_t* __restrict__ k,
                        const scalar_t* __restrict__ v,
                        scalar_t* __restrict__ y, float* __restrict__ scratch) {
  const int64_t T = blk.T, nchunks = (T + kChunk - 1) / kChunk;
  constexpr int64_t CL = kChunk * kLanes;
  float* __restrict__ bnum = scratch;  // carried right sums at chunk ends
  float* __restrict__ bden = bnum + nchunks * kLanes;
  float* __restrict__ bm = bden + nchunks * kLanes;
  float* __restrict__ rnum = bm + nchunks * kLanes;  // a chunk's right sums
  float* __restrict__ rden = rnum + CL;
  float* __restrict__ ek = rden + CL;  // and its e^{k - K}
  float* __restrict__ bK = ek + CL;    // each chunk's largest key
  // Per-lane values used once per chunk stay arrays; the per-token loops
  // work on kVecs vectors of them (register-resident across tokens).
  float K[kLanes], kf[kLanes], cl[kLanes], rn[kLanes], rd[kLanes];
  float num[kLanes], den[kLanes], m[kLanes];  // carried sum
  float inum[kLanes], iden[kLanes];           // the chunk's own sum
  vfloat ew[kVecs], eu[kVecs];
  for (int64_t j = 0; j < kVecs; ++j) {
    for (int64_t i = 0; i < kVecWidth; ++i) {
      ew[j][i] = std::exp(-w[j * kVecWidth + i]);
      eu[j][i] = std::exp(u[j * kVecWidth + i]);
    }
  }
  auto max_key = [&](int64_t t0, int64_t t1) {
    vfloat mx[kVecs];
    for (int64_t j = 0; j < kVecs; ++j) mx[j] = splat(kEmpty);
    for (int64_t t = t0; t < t1; ++t) {
      const scalar_t* kt = k + blk.at(t);
      for (int64_t j = 0; j < kVecs; ++j)
        mx[j] = vmax(mx[j], vload(kt + j * kVecWidth));
    }
    for (int64_t j = 0; j < kVecs; ++j) vstore(K + j * kVecWidth, mx[j]);
  };
  // (sn, sd) <- (sn, sd) e^{-w} + e^{k - K} (v, 1) from t1 - 1 down to t0;
  // with keep, also stores e^{k - K} and the sums before each token.
  auto right_scan = [&](int64_t t0, int64_t t1, float* sn_, float* sd_,
                        const float* factor, bool keep) {
    vfloat sn[kVecs], sd[kVecs], Kv[kVecs], fv[kVecs];
    for (int64_t j = 0; j < kVecs; ++j) {
      sn[j] = vload(sn_ + j * kVecWidth), sd[j] = vload(sd_ + j * kVecWidth);
      Kv[j] = vload(K + j * kVecWidth), fv[j] = vload(factor + j * kVecWidth);
    }
    for (int64_t t = t1 - 1; t >= t0; --t) {
      const int64_t o = blk.at(t), s = (t - t0) * kLanes;
      for (int64_t j = 0; j < kVecs; ++j) {
        const int64_t q = j * kVecWidth;
        const vfloat e = vexp_nonpos(vload(k + o + q) - Kv[j]), es = e * fv[j];
        if (keep) {
          vstore(ek + s + q, e), vstore(rnum + s + q, sn[j]);
          vstore(rden + s + q, sd[j]);
        }
        sn[j] = sn[j] * ew[j] + es * vload(v + o + q);
        sd[j] = sd[j] * ew[j] + es;
      }
    }
    for (int64_t j = 0; j < kVecs; ++j)
      vstore(sn_ + j * kVecWidth, sn[j]), vstore(sd_ + j * kVecWidth, sd[j]);
  };
  float one[kLanes];
  for (int64_t l = 0; l < kLanes; ++l) one[l] = 1.0f;

  // Pass 1: right sums over i >= (c + 1) * kChunk, for every chunk c.
  for (int64_t l = 0; l < kLanes; ++l) num[l] = 0, den[l] = 0, m[l] = kEmpty;
  for (int64_t c = nchunks - 1; c >= 0; --c) {
    const int64_t b = c * kLanes;
    for (int64_t l = 0; l < kLanes; ++l)
      bnum[b + l] = num[l], bden[b + l] = den[l], bm[b + l] = m[l];
    if (c == 0) break;
    const int64_t t0 = c * kChunk, t1 = std::min(T, t0 + kChunk);
    max_key(t0, t1);
    for (int64_t l = 0; l < kLanes; ++l) inum[l] = 0, iden[l] = 0, bK[b + l] = K[l];
    right_scan(t0, t1, inum, iden, one, false);
    carry(num, den, m, inum, iden, K, w, float(t1 - t0));
  }
  // Pass 2, chunk by chunk, carrying the left sum.
  for (int64_t l = 0; l < kLanes; ++l) num[l] = 0, den[l] = 0, m[l] = kEmpty;
  for (int64_t c = 0; c < nchunks; ++c) {
    const int64_t t0 = c * kChunk, t1 = std::min(T, t0 + kChunk), b = c * kLanes;
    if (c == 0) {
      max_key(t0, t1);  // pass 1 did not visit chunk 0
    } else {
      for (int64_t l = 0; l < kLanes; ++l) K[l] = bK[b + l];
    }
    for (int64_t l = 0; l < kLanes; ++l) {
      float S = K[l] > m[l] ? K[l] : m[l];
      S = bm[b + l] > S ? bm[b + l] : S;
      kf[l] = exp_nonpos(K[l] - S);
      cl[l] = exp_nonpos(m[l] - S);
      const float cr = exp_nonpos(bm[b + l] - S);
      rn[l] = bnum[b + l] * cr, rd[l] = bden[b + l] * cr;
    }
    // Right sums in the scale S, and e^{k - K}.
    right_scan(t0, t1, rn, rd, kf, true);
    // Left to right: the chunk's own left sum in the scale K, the carried
    // one entering with the factor cl (scale S, decaying per token).
    vfloat ln[kVecs], ld[kVecs], cn[kVecs], cd[kVecs], kfv[kVecs];
    for (int64_t j = 0; j < kVecs; ++j) {
      const int64_t q = j * kVecWidth;
      const vfloat c0 = vload(cl + q);
      ln[j] = splat(0.0f), ld[j] = splat(0.0f), kfv[j] = vload(kf + q);
      cn[j] = vload(num + q) * c0, cd[j] = vload(den + q) * c0;
    }
    for (int64_t t = t0; t < t1; ++t) {
      const int64_t o = blk.at(t), s = (t - t0) * kLanes;
      for (int64_t j = 0; j < kVecs; ++j) {
        const int64_t q = j * kVecWidth;
        const vfloat e = vload(ek + s + q), vv = vload(v + o + q);
        const vfloat self = eu[j] * e;
        const vfloat yn = (ln[j] + self * vv) * kfv[j] + cn[j] + vload(rnum + s + q);
        const vfloat yd = (ld[j] + self) * kfv[j] + cd[j] + vload(rden + s + q);
        vstore(y + o + q, yn / yd);
        ln[j] = ln[j] * ew[j] + e * vv;
        ld[j] = ld[j] * ew[j] + e;
        cn[j] *= ew[j], cd[j] *= ew[j];
      }
    }
    for (int64_t j = 0; j < kVecs; ++j)
      vstore(inum + j * kVecWidth, ln[j]), vstore(iden + j * kVecWidth, ld[j]);
    carry(num, den, m, inum, iden, K, w, float(t1 - t0));
  }
}

// Forward in two passes, in log-sum-exp form (any w, u, k; also the double
// build). Pass 1 walks right to left and keeps only the right
// sum at each chunk boundary. Pass 2 walks the chunks left to right: it
// rebuilds the chunk's right sums from its boundary (k and v of the chunk are
// then still in cache), and combines them with the running left sum. Holding
// every right sum instead would move 3 accumulators per token through memory,
// twice the traffic of k, v and y together.
template <typename scalar_t, typename acc_t>
void forward_block(const Block& blk, const acc_t* __restrict__ w,
                   const acc_t* __restrict__ u, const scalar_t* __restrict__ k,
                   const scalar_t* __restrict__ v, scalar_t* __restrict__ y,
                   acc_t* __restrict__ scratch) {
  if constexpr (std::is_same_v<acc_t, float>) {
    if (fast_forward_ok(w, u)) return forward_block_fast(blk, w, u, k, v, y, scratch);
  }
  const int64_t T = blk.T, nchunks = (T + kChunk - 1) / kChunk;
  constexpr int64_t CL = kChunk * kLanes;
  acc_t* __restrict__ bnum = scratch;  // right sums at chunk ends
  acc_t* __restrict__ bden = bnum + nchunks * kLanes;
  acc_t* __restrict__ bm = bden + nchunks * kLanes;
  acc_t* __restrict__ rnum = bm + nchunks * kLanes;  // one chunk's right sums
  acc_t* __restrict__ rden = rnum + CL;
  acc_t* __restrict__ rm = rden + CL;
  acc_t num[kLanes], den[kLanes], m[kLanes];     // a right sum
  acc_t lnum[kLanes], lden[kLanes], lm[kLanes];  // the left sum

  // Pass 1: right sums over i >= (c + 1) * kChunk, for every chunk c.
  for (int64_t l = 0; l < kLanes; ++l) num[l] = 0, den[l] = 0, m[l] = acc_t(kEmpty);
  for (int64_t c = nchunks - 1; c >= 0; --c) {
    const int64_t b = c * kLanes;
    for (int64_t l = 0; l < kLanes; ++l)
      bnum[b + l] = num[l], bden[b + l] = den[l], bm[b + l] = m[l];
    const int64_t t0 = c > 0 ? c * kChunk : T;  // chunk 0 needs no scan
    for (int64_t t = std::min(T, t0 + kChunk) - 1; t >= t0; --t) {
      const int64_t o = blk.at(t);
      for (int64_t l = 0; l < kLanes; ++l) {
        Sum<acc_t> st{num[l], den[l], m[l]};
        step(st, w[l], acc_t(k[o + l]), acc_t(v[o + l]));
        num[l] = st.num, den[l] = st.den, m[l] = st.m;
      }
    }
  }
  // Pass 2, chunk by chunk.
  for (int64_t l = 0; l < kLanes; ++l) lnum[l] = 0, lden[l] = 0, lm[l] = acc_t(kEmpty);
  for (int64_t c = 0; c < nchunks; ++c) {
    const int64_t t0 = c * kChunk, t1 = std::min(T, t0 + kChunk), b = c * kLanes;
    for (int64_t l = 0; l < kLanes; ++l)
      num[l] = bnum[b + l], den[l] = bden[b + l], m[l] = bm[b + l];
    for (int64_t t = t1 - 1; t >= t0; --t) {
      const int64_t o = blk.at(t), s = (t - t0) * kLanes;
      for (int64_t l = 0; l < kLanes; ++l) {
        rnum[s + l] = num[l], rden[s + l] = den[l], rm[s + l] = m[l];
        Sum<acc_t> st{num[l], den[l], m[l]};
        step(st, w[l], acc_t(k[o + l]), acc_t(v[o + l]));
        num[l] = st.num, den[l] = st.den, m[l] = st.m;
      }
    }
    for (int64_t t = t0; t < t1; ++t) {
      const int64_t o = blk.at(t), s = (t - t0) * kLanes;
      for (int64_t l = 0; l < kLanes; ++l) {
        const acc_t kk = k[o + l], vv = v[o + l];
        const Combined<acc_t> cb = combine(lnum[l], lden[l], lm[l], rnum[s + l],
                                           rden[s + l], rm[s + l], u[l], kk, vv);
        y[o + l] = static_cast<scalar_t>(cb.y);
        Sum<acc_t> st{lnum[l], lden[l], lm[l]};
        step(st, w[l], kk, vv);
        lnum[l] = st.num, lden[l] = st.den, lm[l] = st.m;
      }
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
