// Per-block Bi-WKV CPU kernels, compiled once per instruction set (see
// bi_wkv_cpu.cpp, bi_wkv_cpu_avx2.cpp and bi_wkv_cpu_avx512.cpp). Channels
// are contiguous in memory, so a block is kLanes neighbouring channels of one
// batch element; loops over the lanes have a fixed trip count and
// restrict-qualified pointers so that they vectorise. Blocks narrower than
// kLanes are padded by the caller.
#pragma once

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <type_traits>

#include "bi_wkv_cpu_block.h"
#include "bi_wkv_cpu_vec.h"

// On the per-token lane loops: iterations touch only their own lane, so no
// run-time alias checks are needed. Without it, gcc gives up vectorising the
// backward's loops (more pointers than its limit of alias checks).
#if defined(__GNUC__) && !defined(__clang__)
#define BIWKV_LANES _Pragma("GCC ivdep")
#else
#define BIWKV_LANES
#endif

// On forward_chunks and the chunk functions passed to it. gcc leaves them
// out of line; the per-token loops then reach every captured variable
// through the closure and reload it after each store: the fast forward ran
// 1.3-1.7x slower.
#if defined(__GNUC__)
#define BIWKV_INLINE __attribute__((always_inline))
#else
#define BIWKV_INLINE
#endif

namespace bi_wkv {
inline namespace BIWKV_ISA {

// The scan states of a block's kLanes lanes, field by field (so that lane
// loops vectorise); get/set move one lane's state in and out. Without
// kCompensated, the compensations are not kept (0: for the lazy sums).
template <typename acc_t, bool kCompensated = true>
struct SumLanes {
  acc_t num[kLanes], den[kLanes], m[kLanes], n[kLanes], cnum[kLanes],
      cden[kLanes];
  void reset() {
    for (int64_t l = 0; l < kLanes; ++l) set(l, empty_sum<acc_t>());
  }
  Sum<acc_t> get(int64_t l) const {
    if constexpr (kCompensated)
      return {num[l], den[l], m[l], n[l], cnum[l], cden[l]};
    return {num[l], den[l], m[l], n[l], acc_t(0), acc_t(0)};
  }
  void set(int64_t l, const Sum<acc_t>& s) {
    num[l] = s.num, den[l] = s.den, m[l] = s.m, n[l] = s.n;
    if constexpr (kCompensated) cnum[l] = s.cnum, cden[l] = s.cden;
  }
};

template <typename acc_t>
struct MomentLanes {
  acc_t num[kLanes], den[kLanes], qnum[kLanes], qden[kLanes], m[kLanes],
      n[kLanes], cqnum[kLanes], cqden[kLanes];
  void reset() {
    for (int64_t l = 0; l < kLanes; ++l) set(l, empty_moments<acc_t>());
  }
  Moments<acc_t> get(int64_t l) const {
    return {num[l], den[l], qnum[l], qden[l], m[l], n[l], cqnum[l], cqden[l]};
  }
  void set(int64_t l, const Moments<acc_t>& s) {
    num[l] = s.num, den[l] = s.den, qnum[l] = s.qnum, qden[l] = s.qden;
    m[l] = s.m, n[l] = s.n, cqnum[l] = s.cqnum, cqden[l] = s.cqden;
  }
};

// The forward in two passes over chunks of kChunk tokens, written once for
// both ways of computing a chunk (forward_block_fast, forward_block). Pass 1
// walks right to left and keeps only the right sum at each chunk boundary.
// Pass 2 walks the chunks left to right: it rebuilds the chunk's right sums
// from its boundary (k and v of the chunk are then still in cache), and
// combines them with the running left sum. Holding every right sum instead
// would move 3 accumulators per token through memory, twice the traffic of
// k, v and y together.
//
// The boundary sums (num, den, m, n: value (num, den) * e^{m - n w}) take the
// first 4 * nchunks * kLanes accumulators of scratch; the chunk functions
// use the rest. With Lanes = SumLanes<acc_t, kCompensated>:
//   right(t0, t1, Lanes& r): r <- r decayed over the chunk's tokens t0 .. t1
//     - 1 plus their terms. For the first chunk (t0 == 0) r is not needed
//     again: only what pass 2 needs from pass 1 is done.
//   left(t0, t1, const SumLanes<acc_t, false>& rb, Lanes& l): writes y over
//     the chunk from rb, the right sum over i >= t1, and l, the left sum over
//     i < t0; then adds the chunk to l as right() does to r.
inline int64_t num_chunks(int64_t T) { return (T + kChunk - 1) / kChunk; }

template <typename acc_t, bool kCompensated, typename Right, typename Left>
BIWKV_INLINE inline void forward_chunks(int64_t T, acc_t* __restrict__ scratch,
                                        Right&& right, Left&& left) {
  const int64_t nchunks = num_chunks(T), NL = nchunks * kLanes;
  acc_t* __restrict__ bnum = scratch;  // right sums at chunk ends
  acc_t* __restrict__ bden = bnum + NL;
  acc_t* __restrict__ bm = bden + NL;
  acc_t* __restrict__ bn = bm + NL;
  SumLanes<acc_t, kCompensated> s;  // the right sum, then the left sum
  SumLanes<acc_t, false> rb;        // a chunk's boundary

  // Pass 1: right sums over i >= (c + 1) * kChunk, for every chunk c.
  s.reset();
  for (int64_t c = nchunks - 1; c >= 0; --c) {
    const int64_t t0 = c * kChunk, b = c * kLanes;
    BIWKV_LANES
    for (int64_t l = 0; l < kLanes; ++l) {
      const Sum<acc_t> st = s.get(l);
      bnum[b + l] = st.total_num(), bden[b + l] = st.total_den();
      bm[b + l] = st.m, bn[b + l] = st.n;
    }
    right(t0, std::min(T, t0 + kChunk), s);
  }
  // Pass 2, chunk by chunk, carrying the left sum.
  s.reset();
  for (int64_t c = 0; c < nchunks; ++c) {
    const int64_t t0 = c * kChunk, b = c * kLanes;
    BIWKV_LANES
    for (int64_t l = 0; l < kLanes; ++l)
      rb.set(l, {bnum[b + l], bden[b + l], bm[b + l], bn[b + l], 0, 0});
    left(t0, std::min(T, t0 + kChunk), rb, s);
  }
}

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
// chunk's largest key K and every token's e^{k - K} for pass 2.
constexpr float kFastMaxDecay = 16.0f / kChunk;
constexpr float kFastMaxBonus = 20.0f;

inline bool fast_forward_ok(const float* w, const float* u) {
  bool ok = true;
  for (int64_t l = 0; l < kLanes; ++l)
    ok &= std::fabs(w[l]) <= kFastMaxDecay && std::fabs(u[l]) <= kFastMaxBonus;
  return ok;
}

// Carried sum s <- itself decayed over steps tokens plus the chunk's own sum
// (inum, iden) * e^{im}, kept uncompensated (the compensation folded in).
inline void carry(SumLanes<float, false>& s, const float* __restrict__ inum,
                  const float* __restrict__ iden, const float* __restrict__ im,
                  const float* __restrict__ w, float steps) {
  BIWKV_LANES
  for (int64_t l = 0; l < kLanes; ++l) {
    Sum<float> x = s.get(l);
    decay(x, steps);
    merge(x, Sum<float>{inum[l], iden[l], im[l], 0.0f, 0.0f, 0.0f}, w[l]);
    s.set(l, {x.total_num(), x.total_den(), x.m, x.n, 0.0f, 0.0f});
  }
}

template <typename scalar_t>
void forward_block_fast(const Block& blk, const float* __restrict__ w,
                        const float* __restrict__ u,
                        const scalar_t* __restrict__ k,
                        const scalar_t* __restrict__ v,
                        scalar_t* __restrict__ y, float* __restrict__ scratch) {
  const int64_t T = blk.T, NL = num_chunks(T) * kLanes;
  constexpr int64_t CL = kChunk * kLanes;
  float* __restrict__ rnum = scratch + 4 * NL;  // a chunk's right sums
  float* __restrict__ rden = rnum + CL;
  float* __restrict__ pw = rden + CL;  // e^{-j w}, j = 0 .. kChunk - 1
  float* __restrict__ bK = pw + CL;    // each chunk's largest key
  float* __restrict__ ek = bK + NL;    // every token's e^{k - K}
  // Per-lane values used once per chunk stay arrays; the per-token loops
  // work on kVecs vectors of them (register-resident across tokens).
  float K[kLanes], kf[kLanes], cl[kLanes], rn[kLanes], rd[kLanes];
  float inum[kLanes], iden[kLanes];  // the chunk's own sum
  // e^{-w} in double (|w| <= 1/4: 13 Taylor terms, 1e-17; vectorises where
  // std::exp would be 16 calls), for ew and the table below.
  double ewd[kLanes], p[kLanes];
  constexpr double kInvFact[14] = {1.0,
                                   1.0,
                                   1.0 / 2,
                                   1.0 / 6,
                                   1.0 / 24,
                                   1.0 / 120,
                                   1.0 / 720,
                                   1.0 / 5040,
                                   1.0 / 40320,
                                   1.0 / 362880,
                                   1.0 / 3628800,
                                   1.0 / 39916800,
                                   1.0 / 479001600,
                                   1.0 / 6227020800.0};
  for (int64_t l = 0; l < kLanes; ++l) {
    const double x = -double(w[l]);
    double e = kInvFact[13];
    for (int64_t i = 12; i >= 0; --i) e = e * x + kInvFact[i];
    ewd[l] = e;
  }
  vfloat ew[kVecs], eu[kVecs];
  for (int64_t j = 0; j < kVecs; ++j) {
    for (int64_t i = 0; i < kVecWidth; ++i) {
      ew[j][i] = float(ewd[j * kVecWidth + i]);
      eu[j][i] = std::exp(u[j * kVecWidth + i]);
    }
  }
  // The sums carried into a chunk decay by e^{-j w} from a table: multiplied
  // by e^{-w} at every token, they would drift by a rounding per token that
  // is the same each time (for w ~ 1e-6: up to 1/3 of the change, an ulp of
  // about 1e-7), up to 64 times in a chunk, 2e-6 in y. Inside a chunk, the
  // scans' own terms still do; cheaper than compensating, and below 1e-6.
  // e^{-j w} = e^{-8 b w} e^{-i w}, j = 8 b + i: two short product chains.
  static_assert(kChunk == 64, "the table below is 8 x 8");
  double e1[8][kLanes], e8[8][kLanes];
  for (int64_t l = 0; l < kLanes; ++l) e1[0][l] = e8[0][l] = 1.0;
  for (int64_t i = 1; i < 8; ++i)
    for (int64_t l = 0; l < kLanes; ++l) e1[i][l] = e1[i - 1][l] * ewd[l];
  for (int64_t l = 0; l < kLanes; ++l) p[l] = e1[7][l] * ewd[l];
  for (int64_t i = 1; i < 8; ++i)
    for (int64_t l = 0; l < kLanes; ++l) e8[i][l] = e8[i - 1][l] * p[l];
  for (int64_t b = 0; b < 8; ++b)
    for (int64_t i = 0; i < 8; ++i)
      for (int64_t l = 0; l < kLanes; ++l)
        pw[(8 * b + i) * kLanes + l] = float(e8[b][l] * e1[i][l]);
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
  // (sn, sd) <- (sn, sd) e^{-w} + e^{k - K} f (v, 1) from t1 - 1 down to t0,
  // starting from 0, into (sn_, sd_). Without keep (pass 1), f = 1 and it
  // stores e^{k - K}; with keep (pass 2), it reads e^{k - K} back and stores,
  // before each token, (sn, sd) plus the carried sum (cn_, cd_) decayed from
  // t1 - 1.
  auto right_scan = [&](int64_t t0, int64_t t1, float* sn_, float* sd_,
                        auto keep, const float* factor = nullptr,
                        const float* cn_ = nullptr,
                        const float* cd_ = nullptr) {
    constexpr bool kKeep = decltype(keep)::value;
    vfloat sn[kVecs], sd[kVecs], cn[kVecs], cd[kVecs], Kv[kVecs], fv[kVecs];
    for (int64_t j = 0; j < kVecs; ++j) {
      const int64_t q = j * kVecWidth;
      sn[j] = splat(0.0f), sd[j] = splat(0.0f), Kv[j] = vload(K + q);
      if constexpr (kKeep) {
        cn[j] = vload(cn_ + q), cd[j] = vload(cd_ + q);
        fv[j] = vload(factor + q);
      }
    }
    for (int64_t t = t1 - 1; t >= t0; --t) {
      const int64_t o = blk.at(t), s = (t - t0) * kLanes;
      for (int64_t j = 0; j < kVecs; ++j) {
        const int64_t q = j * kVecWidth;
        vfloat e, es;
        if constexpr (kKeep) {
          e = vload(ek + t * kLanes + q);
          const vfloat p = vload(pw + (t1 - 1 - t) * kLanes + q);
          vstore(rnum + s + q, sn[j] + cn[j] * p);
          vstore(rden + s + q, sd[j] + cd[j] * p);
          es = e * fv[j];
        } else {
          e = vexp_nonpos(vload(k + o + q) - Kv[j]), es = e;
          vstore(ek + t * kLanes + q, e);
        }
        sn[j] = sn[j] * ew[j] + es * vload(v + o + q);
        sd[j] = sd[j] * ew[j] + es;
      }
    }
    for (int64_t j = 0; j < kVecs; ++j)
      vstore(sn_ + j * kVecWidth, sn[j]), vstore(sd_ + j * kVecWidth, sd[j]);
  };

  // Pass 1: the chunk's largest key and e^{k - K}, and (but for the first
  // chunk) the chunk's sum in the scale K, carried into r.
  auto right = [&](int64_t t0, int64_t t1,
                   SumLanes<float, false>& r) BIWKV_INLINE {
    const int64_t b = t0 / kChunk * kLanes;
    max_key(t0, t1);
    for (int64_t l = 0; l < kLanes; ++l) bK[b + l] = K[l];
    if (t0 == 0) {  // only e^{k - K}
      for (int64_t t = t0; t < t1; ++t)
        for (int64_t j = 0; j < kVecs; ++j)
          vstore(ek + t * kLanes + j * kVecWidth,
                 vexp_nonpos(vload(k + blk.at(t) + j * kVecWidth) -
                             vload(K + j * kVecWidth)));
      return;
    }
    right_scan(t0, t1, inum, iden, std::false_type{});
    carry(r, inum, iden, K, w, float(t1 - t0));
  };
  // Pass 2.
  auto left = [&](int64_t t0, int64_t t1, const SumLanes<float, false>& rb,
                  SumLanes<float, false>& lt) BIWKV_INLINE {
    const int64_t b = t0 / kChunk * kLanes;
    for (int64_t l = 0; l < kLanes; ++l) K[l] = bK[b + l];
    for (int64_t l = 0; l < kLanes; ++l) {
      // S: any float near the largest exponent; the factors are taken from
      // the exact differences (gap), so S's rounding cancels out.
      const float xl = lt.m[l] - lt.n[l] * w[l];
      const float xr = rb.m[l] - rb.n[l] * w[l];
      float S = K[l] > xl ? K[l] : xl;
      S = xr > S ? xr : S;
      kf[l] = exp_nonpos(K[l] - S);
      cl[l] = exp_nonpos(gap(lt.m[l], lt.n[l], S, 0.0f, w[l]));
      const float cr = exp_nonpos(gap(rb.m[l], rb.n[l], S, 0.0f, w[l]));
      rn[l] = rb.num[l] * cr, rd[l] = rb.den[l] * cr;
    }
    // Right sums in the scale S, and e^{k - K}.
    right_scan(t0, t1, inum, iden, std::true_type{}, kf, rn, rd);
    // Left to right: the chunk's own left sum in the scale K, the carried
    // one entering with the factor cl (scale S, decayed by the table).
    vfloat ln[kVecs], ld[kVecs], cn[kVecs], cd[kVecs], kfv[kVecs];
    for (int64_t j = 0; j < kVecs; ++j) {
      const int64_t q = j * kVecWidth;
      const vfloat c0 = vload(cl + q);
      ln[j] = splat(0.0f), ld[j] = splat(0.0f), kfv[j] = vload(kf + q);
      cn[j] = vload(lt.num + q) * c0, cd[j] = vload(lt.den + q) * c0;
    }
    for (int64_t t = t0; t < t1; ++t) {
      const int64_t o = blk.at(t), s = (t - t0) * kLanes;
      for (int64_t j = 0; j < kVecs; ++j) {
        const int64_t q = j * kVecWidth;
        const vfloat e = vload(ek + t * kLanes + q), vv = vload(v + o + q);
        const vfloat self = eu[j] * e, p = vload(pw + s + q);
        const vfloat yn =
            (ln[j] + self * vv) * kfv[j] + cn[j] * p + vload(rnum + s + q);
        const vfloat yd =
            (ld[j] + self) * kfv[j] + cd[j] * p + vload(rden + s + q);
        vstore(y + o + q, yn / yd);
        ln[j] = ln[j] * ew[j] + e * vv;
        ld[j] = ld[j] * ew[j] + e;
      }
    }
    for (int64_t j = 0; j < kVecs; ++j)
      vstore(inum + j * kVecWidth, ln[j]), vstore(iden + j * kVecWidth, ld[j]);
    carry(lt, inum, iden, K, w, float(t1 - t0));
  };
  forward_chunks<float, false>(T, scratch, right, left);
}

// The forward in log-sum-exp form, token by token (any w, u, k; also the
// double build), on forward_chunks' skeleton.
template <typename scalar_t, typename acc_t>
void forward_block(const Block& blk, const acc_t* __restrict__ w,
                   const acc_t* __restrict__ u, const scalar_t* __restrict__ k,
                   const scalar_t* __restrict__ v, scalar_t* __restrict__ y,
                   acc_t* __restrict__ scratch) {
  if constexpr (std::is_same_v<acc_t, float>) {
    if (fast_forward_ok(w, u))
      return forward_block_fast(blk, w, u, k, v, y, scratch);
  }
  const int64_t T = blk.T;
  constexpr int64_t CL = kChunk * kLanes;
  // One chunk's right sums.
  acc_t* __restrict__ rnum = scratch + 4 * num_chunks(T) * kLanes;
  acc_t* __restrict__ rden = rnum + CL;
  acc_t* __restrict__ rm = rden + CL;
  acc_t* __restrict__ rn = rm + CL;
  SumLanes<acc_t> r;  // the right sum inside a chunk (pass 2)

  // s <- e^{-w} s + e^{k} (v, 1) over tokens t1 - 1 down to t0; with keep,
  // each token's s before the step into (rnum, rden, rm, rn).
  auto right_scan = [&](int64_t t0, int64_t t1, SumLanes<acc_t>& s,
                        auto keep) BIWKV_INLINE {
    constexpr bool kKeep = decltype(keep)::value;
    for (int64_t t = t1 - 1; t >= t0; --t) {
      const int64_t o = blk.at(t), q = (t - t0) * kLanes;
      BIWKV_LANES
      for (int64_t l = 0; l < kLanes; ++l) {
        Sum<acc_t> st = s.get(l);
        if constexpr (kKeep) {
          rnum[q + l] = st.total_num(), rden[q + l] = st.total_den();
          rm[q + l] = st.m, rn[q + l] = st.n;
        }
        step(st, w[l], acc_t(k[o + l]), acc_t(v[o + l]));
        s.set(l, st);
      }
    }
  };
  // Pass 1; the first chunk needs no scan.
  auto right = [&](int64_t t0, int64_t t1, SumLanes<acc_t>& s) BIWKV_INLINE {
    if (t0 > 0) right_scan(t0, t1, s, std::false_type{});
  };
  // Pass 2.
  auto left = [&](int64_t t0, int64_t t1, const SumLanes<acc_t, false>& rb,
                  SumLanes<acc_t>& lt) BIWKV_INLINE {
    BIWKV_LANES
    for (int64_t l = 0; l < kLanes; ++l) r.set(l, rb.get(l));
    right_scan(t0, t1, r, std::true_type{});
    for (int64_t t = t0; t < t1; ++t) {
      const int64_t o = blk.at(t), s = (t - t0) * kLanes;
      BIWKV_LANES
      for (int64_t l = 0; l < kLanes; ++l) {
        const acc_t kk = k[o + l], vv = v[o + l];
        Sum<acc_t> st = lt.get(l);
        const Combined<acc_t> cb =
            combine(st.total_num(), st.total_den(), st.m, st.n, rnum[s + l],
                    rden[s + l], rm[s + l], rn[s + l], w[l], u[l], kk, vv);
        y[o + l] = static_cast<scalar_t>(cb.y);
        step(st, w[l], kk, vv);
        lt.set(l, st);
      }
    }
  };
  forward_chunks<acc_t, true>(T, scratch, right, left);
}

// Gradients. With D_t the (true) denominator and a_t = g_t / D_t:
//   gv_j = e^{k_j} (e^u a_j + sum_{t != j} e^{-(|t-j|-1) w} a_t)
//   gk_j = e^{k_j} (e^u a_j (v_j - y_j) + sum_{t != j} e^{-(|t-j|-1) w} a_t
//   (v_j - y_t)) gu   = sum_t a_t e^{u + k_t} (v_t - y_t) gw   = -sum_t a_t
//   sum_{i != t} (|t-i|-1) e^{-(|t-i|-1) w + k_i} (v_i - y_t)
// a_t is kept as mantissa * e^{-m_t}, so the two sums over t are again
// one-sided scans in log-sum-exp form, whose exponents never exceed -k_j.
template <typename scalar_t, typename acc_t>
void backward_block(const Block& blk, const acc_t* __restrict__ w,
                    const acc_t* __restrict__ u, const scalar_t* __restrict__ k,
                    const scalar_t* __restrict__ v,
                    const scalar_t* __restrict__ gy, scalar_t* __restrict__ gk,
                    scalar_t* __restrict__ gv, acc_t* __restrict__ gw,
                    acc_t* __restrict__ gu, acc_t* __restrict__ scratch) {
  const int64_t T = blk.T, TL = T * kLanes;
  acc_t* __restrict__ s0 =
      scratch;  // right sums, then a_t, then gv accumulator
  acc_t* __restrict__ s1 = scratch + TL;
  acc_t* __restrict__ s2 = scratch + 2 * TL;
  acc_t* __restrict__ s3 = scratch + 3 * TL;
  acc_t* __restrict__ s4 = scratch + 4 * TL;
  acc_t* __restrict__ s5 = scratch + 5 * TL;
  MomentLanes<acc_t> st;
  // dL/dw, dL/du: sums over all T tokens, compensated (c*) as the moments.
  acc_t gw_acc[kLanes], gu_acc[kLanes], cgw[kLanes], cgu[kLanes];

  // Pass 1, right-to-left: right sums with moments, for every t.
  st.reset();
  for (int64_t t = T - 1; t >= 0; --t) {
    const int64_t o = blk.at(t), s = t * kLanes;
    BIWKV_LANES
    for (int64_t l = 0; l < kLanes; ++l) {
      Moments<acc_t> r = st.get(l);
      s0[s + l] = r.total_num(), s1[s + l] = r.total_den();
      s2[s + l] = r.total_qnum(), s3[s + l] = r.total_qden();
      s4[s + l] = r.m, s5[s + l] = r.n;
      step(r, w[l], acc_t(k[o + l]), acc_t(v[o + l]));
      st.set(l, r);
    }
  }
  // Pass 2, left-to-right: outputs, a_t, gw, gu and the token's own share of
  // gk/gv. Leaves s0 = a mantissa, s1 = -m_t (its float exponent), s2 = y_t,
  // s3 = gv, s4 = gk (accumulators, linear scale).
  st.reset();
  for (int64_t l = 0; l < kLanes; ++l)
    gw_acc[l] = gu_acc[l] = cgw[l] = cgu[l] = 0;
  for (int64_t t = 0; t < T; ++t) {
    const int64_t o = blk.at(t), s = t * kLanes;
    BIWKV_LANES
    for (int64_t l = 0; l < kLanes; ++l) {
      const acc_t kk = k[o + l], vv = v[o + l], g = gy[o + l];
      const acc_t rq_num = s2[s + l], rq_den = s3[s + l];
      Moments<acc_t> lt = st.get(l);
      const Combined<acc_t> c =
          combine(lt.total_num(), lt.total_den(), lt.m, lt.n, s0[s + l],
                  s1[s + l], s4[s + l], s5[s + l], w[l], u[l], kk, vv);
      const acc_t a = g * c.inv;
      const acc_t lq_num = lt.total_qnum(), lq_den = lt.total_qden();
      kahan_add(gu_acc[l], cgu[l], a * c.es * (vv - c.y));
      kahan_add(gw_acc[l], cgw[l],
                -a * (c.el * (lq_num - c.y * lq_den) +
                      c.er * (rq_num - c.y * rq_den)));
      s0[s + l] = g * c.ia, s1[s + l] = -c.m, s2[s + l] = c.y;
      s3[s + l] = a * c.es, s4[s + l] = a * c.es * (vv - c.y);
      step(lt, w[l], kk, vv);
      st.set(l, lt);
    }
  }
  for (int64_t l = 0; l < kLanes; ++l)
    gw[l] = gw_acc[l] - cgw[l], gu[l] = gu_acc[l] - cgu[l];

  // Passes 3 and 4: sums over t > j, then t < j, of e^{-(|t-j|-1) w} a_t (1,
  // y_t). Pass 3 accumulates into s3/s4; pass 4 adds its share and writes
  // gk/gv.
  SumLanes<acc_t, false> as;  // lazy sums: plain
  auto alpha_scan = [&](auto last_pass) {
    constexpr bool kLast = decltype(last_pass)::value;
    as.reset();
    for (int64_t i = 0; i < T; ++i) {
      const int64_t t = kLast ? i : T - 1 - i;
      const int64_t o = blk.at(t), s = t * kLanes;
      BIWKV_LANES
      for (int64_t l = 0; l < kLanes; ++l) {
        const acc_t kk = k[o + l], vv = v[o + l];
        Sum<acc_t> a = as.get(l);
        const acc_t num = a.total_num(), den = a.total_den();
        // e^{k_j} times the exponent of the sum: <= 1, see above.
        const acc_t e = exp_nonpos(gap(kk, a.n, -a.m, acc_t(0), w[l]));
        const acc_t gvj = s3[s + l] + den * e;
        const acc_t gkj = s4[s + l] + (vv * den - num) * e;
        if constexpr (kLast) {
          gv[o + l] = static_cast<scalar_t>(gvj);
          gk[o + l] = static_cast<scalar_t>(gkj);
        } else {
          s3[s + l] = gvj, s4[s + l] = gkj;
        }
        // Source term a_t = s0 * e^{s1}, carried as (a_t y_t, a_t).
        step_lazy(a, w[l], s1[s + l], s0[s + l] * s2[s + l], s0[s + l]);
        as.set(l, a);
      }
    }
  };
  alpha_scan(std::false_type{});
  alpha_scan(std::true_type{});
}

// Instantiates the kernels for one dtype in the current ISA namespace.
#define BIWKV_INSTANTIATE_CPU_KERNELS(scalar_t, acc_t)                        \
  template void forward_block<scalar_t, acc_t>(                               \
      const Block&, const acc_t*, const acc_t*, const scalar_t*,              \
      const scalar_t*, scalar_t*, acc_t*);                                    \
  template void backward_block<scalar_t, acc_t>(                              \
      const Block&, const acc_t*, const acc_t*, const scalar_t*,              \
      const scalar_t*, const scalar_t*, scalar_t*, scalar_t*, acc_t*, acc_t*, \
      acc_t*);

// Instantiates the kernels for every dtype in the current ISA namespace:
// what each per-ISA file (bi_wkv_cpu_avx2.cpp, bi_wkv_cpu_avx512.cpp)
// compiles.
#define BIWKV_INSTANTIATE_ALL_CPU_KERNELS()       \
  BIWKV_INSTANTIATE_CPU_KERNELS(float, float)     \
  BIWKV_INSTANTIATE_CPU_KERNELS(double, double)   \
  BIWKV_INSTANTIATE_CPU_KERNELS(c10::Half, float) \
  BIWKV_INSTANTIATE_CPU_KERNELS(c10::BFloat16, float)

}  // namespace BIWKV_ISA
}  // namespace bi_wkv
