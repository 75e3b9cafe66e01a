// Per-(batch, head) Bi-WKV6 CPU kernels, compiled once per instruction set
// (bi_wkv6_cpu.cpp: baseline, bi_wkv6_cpu_avx2.cpp, bi_wkv6_cpu_avx512.cpp).
//
// One task is one head of one batch element: N channels (64 in VRWKV6), an
// N x N state per scan, O(T N^2) work per scan. Channels are contiguous, so
// every per-token loop runs over N neighbouring floats with restrict-qualified
// pointers and no loop-carried dependence; gcc vectorises them (-O3). Loops
// that sum over their own index use `omp simd reduction` (-fopenmp), which
// lets gcc vectorise a float sum in a fixed order, so results stay the same
// from run to run.
//
// Notation (see mmvrwkv/ops/bi_wkv6/reference.py): d[t, j] = exp(-exp(w[t, j]))
// is the decay of token t in key channel j; P(s, t)[j] is the product of d over
// the tokens strictly between s and t. Per head,
//   F_t = sum_{s<t} P(s,t) k_s v_s^T   (forward state, N x N, [j, i])
//   G_t = sum_{s>t} P(s,t) k_s v_s^T   (reverse state)
//   y_t = r_t^T (diag(u) k_t v_t^T + F_t + G_t).
// The backward adds the dual states of the output gradient gy:
//   B_t = sum_{s<t} P(s,t) r_s gy_s^T,  A_t = sum_{s>t} P(s,t) r_s gy_s^T,
// and, with a_t = v_t . gy_t,
//   gr_t = u * k_t a_t + (F_t + G_t) gy_t
//   gk_t = u * r_t a_t + (A_t + B_t) v_t
//   gv_t = gy_t (r_t . (u * k_t)) + (A_t + B_t)^T k_t
//   gu   = sum_t r_t * k_t a_t
//   gw_t = -exp(w_t - exp(w_t)) * rowsum(F_t * A_t + G_t * B_t)
// The last one: a pair (s, t) depends on the decay of token m when m lies
// strictly between them, and P(s, t) = P(s, m) d_m P(m, t) splits the sum
// over such pairs into a forward-state factor and a reverse-state factor.
// d(decay)/dw = -exp(w) decay, and exp(w) * exp(-exp(w)) is formed as
// exp(w - exp(w)), which never overflows (it is at most exp(-1)).
//
// Nothing divides by a decay: decays that underflow to 0 (w > ~4.5 in
// float32) are exact zeros, decays that round to 1 (w < ~-17) keep states
// growing linearly at worst. The gradient of the decays needs the forward
// and the reverse states of a token at once; the backward stores the forward
// states every kChunk tokens (checkpoints) and recomputes them one chunk at a
// time during the reverse scan, instead of storing T states or undoing
// decays.
#pragma once

#include <algorithm>
#include <cstdint>
#include <cstring>

#ifndef BIWKV6_ISA
#define BIWKV6_ISA generic
#endif

#if defined(__GNUC__) && !defined(__clang__)
#define BIWKV6_IVDEP _Pragma("GCC ivdep")
#else
#define BIWKV6_IVDEP
#endif

namespace bi_wkv6 {

// One (batch, head) task. Pointers are to the head's first channel of token
// 0; consecutive tokens are `stride` (= C) elements apart.
template <typename scalar_t, typename acc_t>
struct HeadArgs {
  int64_t T, stride, N;
  const scalar_t *r, *k, *v;
  const acc_t* d;  // decays exp(-exp(w)), (B, T, C) like r
  const acc_t* u;  // (N,), this head's bonus
};

template <typename scalar_t, typename acc_t>
struct HeadGrads {
  const acc_t* gy;    // (B, T, C), like y
  const acc_t* coef;  // -exp(w - exp(w)) = d(decay)/dw / decay
  scalar_t *gr, *gk, *gv, *gw;
  acc_t* gu;  // (N,), this task's partial sum
};

// Tokens per chunk of the backward's recomputation: the chunk's forward
// states (2 N^2 per token) stay in the L2 cache (512 KB for N = 64 in
// float32); above 8192 tokens chunks grow so that the checkpoints (2 N^2 per
// chunk) stay at most 512 per task.
inline int64_t chunk_len(int64_t T) {
  return std::max<int64_t>(16, (T + 511) / 512);
}

inline int64_t forward_scratch_size(int64_t N) { return N * N + 4 * N; }

inline int64_t backward_scratch_size(int64_t T, int64_t N) {
  const int64_t L = chunk_len(T), chunks = (T + L - 1) / L;
  return 2 * N * N + (chunks + L) * 2 * N * N + 3 * T * N + 8 * N;
}

inline namespace BIWKV6_ISA {

template <typename src_t, typename acc_t>
inline void load_row(const src_t* __restrict src, acc_t* __restrict dst,
                     int64_t N) {
  BIWKV6_IVDEP
  for (int64_t i = 0; i < N; ++i) dst[i] = static_cast<acc_t>(src[i]);
}

// S <- diag(d) S + a b^T for a state stored [b index][a index]: row i is
// S[i, :] * d + b_i a (vectorised over the inner index).
template <typename acc_t>
inline void decay_add(acc_t* __restrict S, const acc_t* __restrict d,
                      const acc_t* __restrict a, const acc_t* __restrict b,
                      int64_t N) {
  for (int64_t i = 0; i < N; ++i) {
    acc_t* __restrict Si = S + i * N;
    const acc_t bi = b[i];
    BIWKV6_IVDEP
    for (int64_t j = 0; j < N; ++j) Si[j] = d[j] * Si[j] + bi * a[j];
  }
}

// y (fp32/fp64, (B, T, C)) for one head: a forward scan, then a reverse scan
// that adds to it. kN: the head size when fixed at compile time (0: args.N).
template <typename scalar_t, typename acc_t, int64_t kN>
void forward_head(const HeadArgs<scalar_t, acc_t>& a, acc_t* __restrict y,
                  acc_t* __restrict scratch) {
  const int64_t N = kN ? kN : a.N, T = a.T, C = a.stride;
  acc_t* __restrict S = scratch;  // [key j][value i]
  acc_t* __restrict r = S + N * N;
  acc_t* __restrict k = r + N;
  acc_t* __restrict v = k + N;
  acc_t* __restrict yt = v + N;
  for (int reverse = 0; reverse < 2; ++reverse) {
    std::fill(S, S + N * N, acc_t(0));
    for (int64_t n = 0; n < T; ++n) {
      const int64_t t = reverse ? T - 1 - n : n, o = t * C;
      load_row(a.r + o, r, N);
      load_row(a.k + o, k, N);
      load_row(a.v + o, v, N);
      const acc_t* __restrict d = a.d + o;
      // The current token counts once, with u, in the forward scan.
      acc_t ruk = 0;
      if (!reverse) {
#pragma omp simd reduction(+ : ruk)
        for (int64_t j = 0; j < N; ++j) ruk += r[j] * a.u[j] * k[j];
      }
      BIWKV6_IVDEP
      for (int64_t i = 0; i < N; ++i) yt[i] = ruk * v[i];
      for (int64_t j = 0; j < N; ++j) {
        acc_t* __restrict Sj = S + j * N;
        const acc_t rj = r[j], kj = k[j], dj = d[j];
        BIWKV6_IVDEP
        for (int64_t i = 0; i < N; ++i) {
          yt[i] += rj * Sj[i];
          Sj[i] = dj * Sj[i] + kj * v[i];
        }
      }
      acc_t* __restrict yo = y + o;
      if (reverse) {
        BIWKV6_IVDEP
        for (int64_t i = 0; i < N; ++i) yo[i] += yt[i];
      } else {
        BIWKV6_IVDEP
        for (int64_t i = 0; i < N; ++i) yo[i] = yt[i];
      }
    }
  }
}

// Gradients for one head. States are stored [value i][key j], so that the
// sums over i (gr, gk, gw) are vector accumulations over j; only gv sums
// over j (omp simd reduction).
//
// Pass 1, forward: F_t, B_t give the forward halves of gr, gk, gv, plus the
// u terms and gu; F and B are saved at the start of every chunk.
// Pass 2, chunk by chunk from the end: the chunk's F_t, B_t are recomputed
// from its checkpoint, then a reverse scan of the chunk with G_t, A_t adds
// the reverse halves and forms gw.
template <typename scalar_t, typename acc_t, int64_t kN>
void backward_head(const HeadArgs<scalar_t, acc_t>& a,
                   const HeadGrads<scalar_t, acc_t>& g,
                   acc_t* __restrict scratch) {
  const int64_t N = kN ? kN : a.N, T = a.T, C = a.stride, NN = N * N;
  const int64_t L = chunk_len(T), chunks = (T + L - 1) / L;
  acc_t* __restrict X = scratch;                 // F (pass 1), G (pass 2)
  acc_t* __restrict Y = X + NN;                  // B (pass 1), A (pass 2)
  acc_t* __restrict ck = Y + NN;                 // chunks x (F, B)
  acc_t* __restrict buf = ck + chunks * 2 * NN;  // L x (F, B)
  acc_t* __restrict gr = buf + L * 2 * NN;       // T x N accumulators
  acc_t* __restrict gk = gr + T * N;
  acc_t* __restrict gv = gk + T * N;
  acc_t* __restrict r = gv + T * N;
  acc_t* __restrict k = r + N;
  acc_t* __restrict v = k + N;
  acc_t* __restrict gy = v + N;
  acc_t* __restrict gw = gy + N;
  acc_t* __restrict gu = gw + N;
  auto load = [&](int64_t o) {
    load_row(a.r + o, r, N);
    load_row(a.k + o, k, N);
    load_row(a.v + o, v, N);
    load_row(g.gy + o, gy, N);
  };

  // ---- pass 1: forward states F (of k v^T) and B (of r gy^T)
  std::fill(X, X + 2 * NN, acc_t(0));
  std::fill(gu, gu + N, acc_t(0));
  for (int64_t t = 0; t < T; ++t) {
    if (t % L == 0)
      std::memcpy(ck + (t / L) * 2 * NN, X, 2 * NN * sizeof(acc_t));
    const int64_t o = t * C;
    load(o);
    const acc_t* __restrict d = a.d + o;
    acc_t vg = 0, ruk = 0;
#pragma omp simd reduction(+ : vg)
    for (int64_t i = 0; i < N; ++i) vg += v[i] * gy[i];
#pragma omp simd reduction(+ : ruk)
    for (int64_t j = 0; j < N; ++j) ruk += r[j] * a.u[j] * k[j];
    acc_t* __restrict grt = gr + t * N;
    acc_t* __restrict gkt = gk + t * N;
    acc_t* __restrict gvt = gv + t * N;
    BIWKV6_IVDEP
    for (int64_t j = 0; j < N; ++j) {
      grt[j] = a.u[j] * k[j] * vg;
      gkt[j] = a.u[j] * r[j] * vg;
      gu[j] += r[j] * k[j] * vg;
    }
    for (int64_t i = 0; i < N; ++i) {
      acc_t* __restrict Fi = X + i * N;
      acc_t* __restrict Bi = Y + i * N;
      const acc_t vi = v[i], gi = gy[i];
      acc_t s = 0;
#pragma omp simd reduction(+ : s)
      for (int64_t j = 0; j < N; ++j) {
        grt[j] += Fi[j] * gi;
        gkt[j] += Bi[j] * vi;
        s += k[j] * Bi[j];
        Fi[j] = d[j] * Fi[j] + vi * k[j];
        Bi[j] = d[j] * Bi[j] + gi * r[j];
      }
      gvt[i] = gi * ruk + s;
    }
  }

  // ---- pass 2: reverse states G (of k v^T) and A (of r gy^T)
  std::fill(X, X + 2 * NN, acc_t(0));
  for (int64_t c = chunks - 1; c >= 0; --c) {
    const int64_t t0 = c * L, t1 = std::min(T, t0 + L);
    // buf[m] = (F, B) at token t0 + m, from the checkpoint.
    std::memcpy(buf, ck + c * 2 * NN, 2 * NN * sizeof(acc_t));
    for (int64_t t = t0; t + 1 < t1; ++t) {
      const int64_t o = t * C;
      load(o);
      acc_t* __restrict prev = buf + (t - t0) * 2 * NN;
      acc_t* __restrict next = prev + 2 * NN;
      std::memcpy(next, prev, 2 * NN * sizeof(acc_t));
      decay_add(next, a.d + o, k, v, N);
      decay_add(next + NN, a.d + o, r, gy, N);
    }
    for (int64_t t = t1 - 1; t >= t0; --t) {
      const int64_t o = t * C;
      load(o);
      const acc_t* __restrict d = a.d + o;
      const acc_t* __restrict F = buf + (t - t0) * 2 * NN;
      const acc_t* __restrict Bf = F + NN;
      acc_t* __restrict grt = gr + t * N;
      acc_t* __restrict gkt = gk + t * N;
      acc_t* __restrict gvt = gv + t * N;
      std::fill(gw, gw + N, acc_t(0));
      for (int64_t i = 0; i < N; ++i) {
        acc_t* __restrict Gi = X + i * N;
        acc_t* __restrict Ai = Y + i * N;
        const acc_t* __restrict Fi = F + i * N;
        const acc_t* __restrict Bi = Bf + i * N;
        const acc_t vi = v[i], gi = gy[i];
        acc_t s = 0;
#pragma omp simd reduction(+ : s)
        for (int64_t j = 0; j < N; ++j) {
          grt[j] += Gi[j] * gi;
          gkt[j] += Ai[j] * vi;
          s += k[j] * Ai[j];
          gw[j] += Fi[j] * Ai[j] + Gi[j] * Bi[j];
          Gi[j] = d[j] * Gi[j] + vi * k[j];
          Ai[j] = d[j] * Ai[j] + gi * r[j];
        }
        gvt[i] += s;
      }
      const acc_t* __restrict coef = g.coef + o;
      for (int64_t j = 0; j < N; ++j) {
        g.gr[o + j] = static_cast<scalar_t>(grt[j]);
        g.gk[o + j] = static_cast<scalar_t>(gkt[j]);
        g.gv[o + j] = static_cast<scalar_t>(gvt[j]);
        g.gw[o + j] = static_cast<scalar_t>(coef[j] * gw[j]);
      }
    }
  }
  std::copy(gu, gu + N, g.gu);
}

// Instantiates the kernels for one dtype and head size in the current ISA
// namespace.
#define BIWKV6_INSTANTIATE_CPU_KERNELS(scalar_t, acc_t, kN)                \
  template void forward_head<scalar_t, acc_t, kN>(                         \
      const HeadArgs<scalar_t, acc_t>&, acc_t*, acc_t*);                   \
  template void backward_head<scalar_t, acc_t, kN>(                        \
      const HeadArgs<scalar_t, acc_t>&, const HeadGrads<scalar_t, acc_t>&, \
      acc_t*);

// Instantiates the kernels for every dtype, for VRWKV6's head size 64 and
// for any head size (kN = 0), in the current ISA namespace: what each
// per-ISA file (bi_wkv6_cpu_avx2.cpp, bi_wkv6_cpu_avx512.cpp) compiles.
#define BIWKV6_INSTANTIATE_ALL_CPU_KERNELS()               \
  BIWKV6_INSTANTIATE_CPU_KERNELS(float, float, 64)         \
  BIWKV6_INSTANTIATE_CPU_KERNELS(float, float, 0)          \
  BIWKV6_INSTANTIATE_CPU_KERNELS(double, double, 64)       \
  BIWKV6_INSTANTIATE_CPU_KERNELS(double, double, 0)        \
  BIWKV6_INSTANTIATE_CPU_KERNELS(c10::Half, float, 64)     \
  BIWKV6_INSTANTIATE_CPU_KERNELS(c10::Half, float, 0)      \
  BIWKV6_INSTANTIATE_CPU_KERNELS(c10::BFloat16, float, 64) \
  BIWKV6_INSTANTIATE_CPU_KERNELS(c10::BFloat16, float, 0)

}  // namespace BIWKV6_ISA
}  // namespace bi_wkv6
