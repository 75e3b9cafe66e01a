// Bi-WKV6 on NVIDIA GPUs: a forward RWKV-6 scan plus a reverse scan per head
// (semantics: mmvrwkv/ops/bi_wkv6/reference.py and bi_wkv6.h).
//
// One thread block per (batch element, head) owns the head's N x N states in
// registers, one row or column per thread, and walks the tokens in chunks of
// L that are staged in shared memory. Work per token is O(N^2) per head, no
// per-thread array grows with T (no T_MAX), and every output element is
// written by one thread in a fixed order (no atomics): deterministic.
//
// The forward pass splits the tokens when its B * H blocks would leave SMs
// idle (forward_segments: at B = 1, VRWKV6-T's 3 heads fill 3 of an H100's
// 132 SMs): up to 32 segments of >= 64 tokens per (batch, head), grid
// (B * H, S). wkv6_summary_kernel scans each segment alone from a zero
// state, forward and reverse, and writes the two N x N states it ends with,
// sum_s P(s, edge) k_s v_s^T, and per key channel its decay product, exp of
// the sum of -exp(w) over its tokens (never divided or subtracted; 0 where
// a decay underflows or exp(w) overflows). wkv6_forward_kernel then starts
// each scan of a segment from the state the other segments hand to it,
// merged in a fixed order, farthest first (X <- D_q X + sums_q), and scans
// its own tokens only. Unsplit (S = 1) it is the one launch it always was,
// with the same arithmetic.
//
// The backward pass splits the same way (backward_segments). Its summary
// launch, grid (B * H, S, 2), writes the k v^T summaries (z = 0) and the
// same with r as rows and gy as columns (z = 1: sum_t P(t, edge) r_t gy_t^T);
// each backward block then starts its four scans from the states the other
// segments hand to it (A and Gl from the left, B and Gr from the right),
// merged as in the forward, and scans its own tokens. Its chunk checkpoints
// hold the full states (other segments included), so the pair sums for gw
// below need nothing more; gu is summed per segment and reduced over the
// segments and the batch by torch.sum. Unsplit, the backward is the one
// launch it always was.
//
// Notation, per head, key channel j and value channel i, d_m = exp(-exp(w_m))
// the decay of token m, P(s, t) = prod of d_q over s < q < t:
//   A_m = sum_{s<m} P(s,m) k_s v_s^T    Gl_m = sum_{t<m} P(t,m) r_t gy_t^T
//   B_m = sum_{s>m} P(m,s) k_s v_s^T    Gr_m = sum_{t>m} P(m,t) r_t gy_t^T
//   y_m  = r_m (diag(u) k_m v_m^T + A_m + B_m)
//   gr_m[j] = gy_m . (A_m + B_m)[j, :] + u_j k_m[j] (gy_m . v_m)
//   gk_m[j] = v_m . (Gl_m + Gr_m)[j, :] + u_j r_m[j] (gy_m . v_m)
//   gv_m[i] = sum_j k_m[j] (Gl_m + Gr_m)[j, i] + gy_m[i] sum_j u_j r_m[j]
//   k_m[j] gw_m[j] = -exp(w_m - exp(w_m)) (<A_m, Gr_m>[j] + <B_m, Gl_m>[j])
// where <X, Y>[j] = sum_i X[j,i] Y[j,i]. The last line is d/dw of the decays:
// every pair (s, t) with m strictly between carries P(s,t) = P(s,m) d_m
// P(m,t), and d_m * d(-exp(w_m))/dw_m is factored into one exponential, so
// a decay that underflows to 0 (or w where exp(w) overflows) gives 0, never
// 0 * inf; nothing is ever divided by a decay, and no two large sums are
// subtracted (the official kernel's suffix-sum difference would be noise
// times exp(w) for strong decays).
//
// <A_m, Gr_m> needs a forward and a reverse state at the same token. The
// backward kernel first scans in reverse (the reverse parts of gr, gk, gv,
// and the states Gr and B at each chunk's last token, N x N per chunk), then
// forward. In the forward scan, for the tokens x of the chunk, thread j keeps
// h_x = gy_x . A_m[j, :], which is exact under A's update
// (h_x <- d_m h_x + k_m (v_m . gy_x)), and h_L = <A_m, Gr at the chunk end>:
//   <A_m, Gr_m> = sum_{m<x<L} P(m,x) r_x h_x + P(m, chunk end) h_L
// with v_m . gy_x from a per-chunk Gram matrix; likewise <B_m, Gl_m>.
#include <ATen/Dispatch.h>
#include <ATen/OpMathType.h>
#include <c10/cuda/CUDAException.h>
#include <c10/cuda/CUDAGuard.h>
#include <c10/cuda/CUDAStream.h>
#include <torch/extension.h>

#include <algorithm>

#include "bi_wkv6.h"
#include "cuda_grid.h"
#include "cuda_launch.h"

namespace bi_wkv6 {
namespace {

// Largest head size. Kernels are built for N = 16 and 64 and run any head
// size n <= N, the channels from n to N reading as zeros (decay 1); the
// forward kernel runs N threads, the backward 3 N.
constexpr int kWkv6MaxN = 64;
constexpr int kWkv6FwdThreads = kWkv6MaxN;
constexpr int kWkv6BwdThreads = 3 * kWkv6MaxN;

// Tokens per chunk: the backward's 5 staged inputs, its Gram matrix and u
// stay within the 48 KiB of shared memory a launch gets (N = 64).
template <typename acc_t>
struct Chunk;
template <>
struct Chunk<float> {
  static constexpr int L = 32;
};
template <>
struct Chunk<double> {
  static constexpr int L = 16;
};

__device__ __forceinline__ float exp_acc(float x) { return expf(x); }
__device__ __forceinline__ double exp_acc(double x) { return exp(x); }

// exp(-exp(w)): 0 when exp(w) overflows, 1 when it underflows.
template <typename acc_t>
__device__ __forceinline__ acc_t decay_of(acc_t w) {
  return exp_acc(-exp_acc(w));
}

// d(decay)/dw = -exp(w) exp(-exp(w)) as one exponential: 0, not NaN, where
// exp(w) overflows.
template <typename acc_t>
__device__ __forceinline__ acc_t decay_slope(acc_t w) {
  return -exp_acc(w - exp_acc(w));
}

// Where the head's tokens are: element (b, t, h*n + c) is at
// base + t * C + c, for the head size n.
struct Head {
  int64_t T, C, base, nchunks;
  int64_t bh;  // blockIdx.x = b * H + h
  int h, n;
};

template <int N, int L>
__device__ Head head_of(int64_t T, int64_t C, int n) {
  const int64_t H = C / n;
  Head hd;
  hd.T = T;
  hd.C = C;
  hd.n = n;
  hd.bh = blockIdx.x;
  hd.h = static_cast<int>(hd.bh % H);
  hd.base = (hd.bh / H) * T * C + static_cast<int64_t>(hd.h) * n;
  hd.nchunks = (T + L - 1) / L;
  return hd;
}

// Stages tokens [t0, t0 + L) of one (B, T, C) input as acc_t [L][N] in shared
// memory; tokens past T and channels past n read as `pad`. All threads
// take part.
template <int N, int L, typename acc_t, typename in_t>
__device__ void stage(acc_t* dst, const in_t* __restrict__ src, const Head& hd,
                      int64_t t0, acc_t pad) {
  for (int e = threadIdx.x; e < L * N; e += blockDim.x) {
    const int64_t t = t0 + e / N;
    const int c = e % N;
    dst[e] = t < hd.T && c < hd.n
                 ? static_cast<acc_t>(src[hd.base + t * hd.C + c])
                 : pad;
  }
}

template <int N, int L, typename acc_t, typename scalar_t>
__device__ void stage_decay(acc_t* dst, const scalar_t* __restrict__ w,
                            const Head& hd, int64_t t0) {
  for (int e = threadIdx.x; e < L * N; e += blockDim.x) {
    const int64_t t = t0 + e / N;
    const int c = e % N;
    dst[e] = t < hd.T && c < hd.n
                 ? decay_of(static_cast<acc_t>(w[hd.base + t * hd.C + c]))
                 : acc_t(1);
  }
}

// The tokens one block scans: all T unless the launch is split
// (forward_segments, backward_segments), then segment s = blockIdx.y of
// S = gridDim.y, of floor(T / S) or ceil(T / S) tokens. Narrows the block's
// Head to them: base at the segment's first token, T its length (tokens past
// it read as padding), so that the scans index tokens as unsplit.
struct Segment {
  int s, S;
};

template <int L>
__device__ Segment narrow_to_segment(Head& hd) {
  const Segment g{static_cast<int>(blockIdx.y), static_cast<int>(gridDim.y)};
  const int64_t t0 = g.s * hd.T / g.S, t1 = (g.s + 1) * hd.T / g.S;
  hd.base += t0 * hd.C;
  hd.T = t1 - t0;
  hd.nchunks = (hd.T + L - 1) / L;
  return g;
}

// Where a split launch keeps segment q's summaries of head bh:
// sums[pair][dir][bh][q][j][i] and decay[bh][q][j] = D_q, its decay product:
// exp of the sum of -exp(w) over its tokens. Pair 0 sums k v^T, pair 1 (the
// backward's) r gy^T: dir 0 sum_s P(s, t1) k_s v_s^T, the state it hands to
// the tokens after it; dir 1 sum_s P(t0 - 1, s) k_s v_s^T, the one it hands
// to the tokens before it.
template <int N>
__device__ int64_t summary_at(int pair, int dir, int64_t bh, int q) {
  return (((pair * 2 + dir) * int64_t(gridDim.x) + bh) * gridDim.y + q) * N * N;
}

// Segment g.s's two summaries of rows_t cols_t^T (the scan of its own
// tokens from a zero state, forward and reverse) into sums (pair): thread i
// owns column i, as in wkv6_forward_kernel.
template <int N, int L, typename scalar_t, typename col_t, typename acc_t>
__device__ void summarise(acc_t* sk, acc_t* sd, const Head& hd,
                          const Segment& g, int pair,
                          const scalar_t* __restrict__ rows,
                          const col_t* __restrict__ cols,
                          const scalar_t* __restrict__ w,
                          acc_t* __restrict__ sums) {
  const int i = threadIdx.x;
  const bool live = i < hd.n;
  acc_t s[N];
  for (int dir = 0; dir < 2; ++dir) {
    const bool fwd = dir == 0;
#pragma unroll
    for (int j = 0; j < N; ++j) s[j] = 0;
    for (int64_t cc = 0; cc < hd.nchunks; ++cc) {
      const int64_t c = fwd ? cc : hd.nchunks - 1 - cc;
      const int64_t t0 = c * L;
      const int n = static_cast<int>(min(int64_t(L), hd.T - t0));
      __syncthreads();  // the previous chunk is done with the tiles
      stage<N, L>(sk, rows, hd, t0, acc_t(0));
      stage_decay<N, L>(sd, w, hd, t0);
      __syncthreads();
#pragma unroll 1
      for (int mm = 0; mm < n; ++mm) {
        const int m = fwd ? mm : n - 1 - mm;
        const acc_t vi =
            live ? static_cast<acc_t>(cols[hd.base + (t0 + m) * hd.C + i])
                 : acc_t(0);
        const acc_t* km = sk + m * N;
        const acc_t* dm = sd + m * N;
#pragma unroll
        for (int j = 0; j < N; ++j) s[j] = dm[j] * s[j] + km[j] * vi;
      }
    }
    acc_t* out = sums + summary_at<N>(pair, dir, hd.bh, g.s);
#pragma unroll
    for (int j = 0; j < N; ++j) out[j * N + i] = s[j];
  }
}

// First kernel of a split launch: each segment's summaries of k v^T
// (blockIdx.z = 0: the forward launch's only pair) or of r gy^T (z = 1, the
// backward's second pair; r and gy are not read otherwise), and with z = 0
// its decay products.
template <int N, typename scalar_t, typename acc_t>
__global__ void __launch_bounds__(kWkv6FwdThreads)
    wkv6_summary_kernel(int64_t T, int64_t C, int n_head,
                        const scalar_t* __restrict__ k,
                        const scalar_t* __restrict__ v,
                        const scalar_t* __restrict__ w,
                        const scalar_t* __restrict__ r,
                        const acc_t* __restrict__ gy, acc_t* __restrict__ sums,
                        acc_t* __restrict__ decay) {
  constexpr int L = Chunk<acc_t>::L;
  BIWKV_DYNAMIC_SHARED(unsigned char, smem_raw);
  acc_t* sk = reinterpret_cast<acc_t*>(smem_raw);  // [L][N] each
  acc_t* sd = sk + L * N;
  Head hd = head_of<N, L>(T, C, n_head);
  const Segment g = narrow_to_segment<L>(hd);
  if (blockIdx.z != 0) {  // the same for every thread of the block
    summarise<N, L>(sk, sd, hd, g, 1, r, gy, w, sums);
    return;
  }
  summarise<N, L>(sk, sd, hd, g, 0, k, v, w, sums);
  const int i = threadIdx.x;
  acc_t ld = 0;  // channel i's log-decays, in token order; 0 for padding
  if (i < n_head) {
    for (int64_t t = 0; t < hd.T; ++t) {
      ld += -exp_acc(static_cast<acc_t>(w[hd.base + t * C + i]));
    }
  }
  decay[(hd.bh * g.S + g.s) * N + i] = exp_acc(ld);
}

// The state entering segment g.s of head bh from the left (fwd: segments
// 0 .. s-1) or the right (S-1 .. s+1), merged from their summaries of
// `pair` in a fixed order, farthest first (X <- D_q X + sums_q), into s
// (zero on entry; nothing to merge unsplit). Row j of the N x N state, decayed
// by D_q[j], or (column) its column j, decayed by D_q[x] per entry x. The
// rows are read with a stride of N between threads; each thread reads its
// own row in order, from L1 after its first sector.
template <int N, typename acc_t>
__device__ void merge_segments(acc_t (&s)[N], const acc_t* __restrict__ sums,
                               const acc_t* __restrict__ decay, int64_t bh,
                               const Segment& g, int pair, bool fwd, int j,
                               bool column) {
  const int first = fwd ? 0 : g.S - 1, last = fwd ? g.s - 1 : g.s + 1;
  for (int q = first; fwd ? q <= last : q >= last; q += fwd ? 1 : -1) {
    const acc_t* in = sums + summary_at<N>(pair, fwd ? 0 : 1, bh, q);
    const acc_t* dq = decay + (bh * g.S + q) * N;
    if (column) {
#pragma unroll
      for (int x = 0; x < N; ++x) s[x] = dq[x] * s[x] + in[x * N + j];
    } else {
      const acc_t d = dq[j];
#pragma unroll
      for (int x = 0; x < N; ++x) s[x] = d * s[x] + in[j * N + x];
    }
  }
}

// y: thread i owns column i of the state (value channel i). The reverse scan
// writes y, the forward scan adds to it (same thread, same order). Split
// (gridDim.y = S > 1): each scan starts from the state the other segments
// hand to this one, merged from their summaries in a fixed order, farthest
// first: X <- D_q X + sums_q.
template <int N, typename scalar_t, typename acc_t>
__global__ void __launch_bounds__(kWkv6FwdThreads)
    wkv6_forward_kernel(int64_t T, int64_t C, int n_head,
                        const scalar_t* __restrict__ r,
                        const scalar_t* __restrict__ k,
                        const scalar_t* __restrict__ v,
                        const scalar_t* __restrict__ w,
                        const acc_t* __restrict__ u, acc_t* __restrict__ y,
                        const acc_t* __restrict__ sums,
                        const acc_t* __restrict__ decay) {
  constexpr int L = Chunk<acc_t>::L;
  BIWKV_DYNAMIC_SHARED(unsigned char, smem_raw);
  acc_t* sr = reinterpret_cast<acc_t*>(smem_raw);  // [L][N] each
  acc_t* sk = sr + L * N;
  acc_t* sd = sk + L * N;
  acc_t* su = sd + L * N;  // [N]
  Head hd = head_of<N, L>(T, C, n_head);
  const Segment g = narrow_to_segment<L>(hd);
  const int i = threadIdx.x;
  const bool live = i < n_head;  // a channel of the head, not padding
  su[i] = live ? u[hd.h * n_head + i] : acc_t(0);
  acc_t s[N];

  for (int pass = 0; pass < 2; ++pass) {
    const bool fwd = pass == 1;
#pragma unroll
    for (int j = 0; j < N; ++j) s[j] = 0;
    // Reverse: segments S-1 .. s+1; forward: 0 .. s-1 (none unsplit).
    merge_segments<N>(s, sums, decay, hd.bh, g, 0, fwd, i, true);
    for (int64_t cc = 0; cc < hd.nchunks; ++cc) {
      const int64_t c = fwd ? cc : hd.nchunks - 1 - cc;
      const int64_t t0 = c * L;
      const int n = static_cast<int>(min(int64_t(L), hd.T - t0));
      __syncthreads();  // the previous chunk is done with the tiles
      stage<N, L>(sr, r, hd, t0, acc_t(0));
      stage<N, L>(sk, k, hd, t0, acc_t(0));
      stage_decay<N, L>(sd, w, hd, t0);
      __syncthreads();
#pragma unroll 1
      for (int mm = 0; mm < n; ++mm) {
        const int m = fwd ? mm : n - 1 - mm;
        const int64_t o = hd.base + (t0 + m) * C + i;
        const acc_t vi = live ? static_cast<acc_t>(v[o]) : acc_t(0);
        const acc_t* rm = sr + m * N;
        const acc_t* km = sk + m * N;
        const acc_t* dm = sd + m * N;
        acc_t acc = 0;
#pragma unroll
        for (int j = 0; j < N; ++j) {
          const acc_t kv = km[j] * vi;
          acc += rm[j] * (fwd ? s[j] + su[j] * kv : s[j]);
          s[j] = dm[j] * s[j] + kv;
        }
        if (live) y[o] = fwd ? y[o] + acc : acc;
      }
    }
  }
}

// Three groups of N threads: P (g = 0) owns row j of A / B, Q (g = 1) row j
// of Gl / Gr, V (g = 2) column i of Gl / Gr. The reverse parts of gr, gk, gv
// go to part_r/k/v; the forward scan adds them, then reuses part_r/part_k
// for <A_m, Gr_m> and <B_m, Gl_m>, which gw sums after the chunk's barrier.
// Split (gridDim.y = S > 1), the block scans its segment's tokens, each
// scan starting from the state the other segments hand to it (their
// summaries: pair 0 for A / B, pair 1 for Gl / Gr); its checkpoints are
// [bh][segment][chunk] and gu_part [segment][bh].
template <int N, typename scalar_t, typename acc_t>
__global__ void __launch_bounds__(kWkv6BwdThreads) wkv6_backward_kernel(
    int64_t T, int64_t C, int n_head, const scalar_t* __restrict__ r,
    const scalar_t* __restrict__ k, const scalar_t* __restrict__ v,
    const scalar_t* __restrict__ w, const acc_t* __restrict__ u,
    const acc_t* __restrict__ gy, scalar_t* __restrict__ gr,
    scalar_t* __restrict__ gk, scalar_t* __restrict__ gv,
    scalar_t* __restrict__ gw, acc_t* __restrict__ gu_part,
    acc_t* __restrict__ part_r, acc_t* __restrict__ part_k,
    acc_t* __restrict__ part_v, acc_t* __restrict__ ck_b,
    acc_t* __restrict__ ck_g, const acc_t* __restrict__ sums,
    const acc_t* __restrict__ decay) {
  constexpr int L = Chunk<acc_t>::L;
  constexpr int GS = L + 1;  // Gram row stride
  BIWKV_DYNAMIC_SHARED(unsigned char, smem_raw);
  acc_t* sr = reinterpret_cast<acc_t*>(smem_raw);  // [L][N] each
  acc_t* sk = sr + L * N;
  acc_t* sv = sk + L * N;
  acc_t* sg = sv + L * N;
  acc_t* sd = sg + L * N;
  acc_t* sG = sd + L * N;   // [L][L + 1]: sG[s][t] = v_s . gy_t
  acc_t* su = sG + L * GS;  // [N]
  Head hd = head_of<N, L>(T, C, n_head);
  const Segment seg = narrow_to_segment<L>(hd);
  // Checkpoints per segment: as many as the longest segment has chunks.
  const int64_t seg_chunks = ((T + seg.S - 1) / seg.S + L - 1) / L;
  const int g = threadIdx.x / N;  // group
  const int j = threadIdx.x % N;  // row (P, Q) or column (V)
  const bool live = j < n_head;   // a channel of the head, not padding
  if (g == 0) su[j] = live ? u[hd.h * n_head + j] : acc_t(0);
  acc_t s[N];
  // Zero, then the state entering the segment (fwd: from the left) of this
  // thread's row or column.
  const auto start = [&](bool fwd) {
#pragma unroll
    for (int x = 0; x < N; ++x) s[x] = 0;
    merge_segments<N>(s, sums, decay, hd.bh, seg, g == 0 ? 0 : 1, fwd, j,
                      g == 2);
  };
  const auto stage_all = [&](int64_t t0) {
    stage<N, L>(sr, r, hd, t0, acc_t(0));
    stage<N, L>(sk, k, hd, t0, acc_t(0));
    stage<N, L>(sv, v, hd, t0, acc_t(0));
    stage<N, L>(sg, gy, hd, t0, acc_t(0));
    stage_decay<N, L>(sd, w, hd, t0);
  };
  // Checkpoints, [bh][segment][chunk][i][j] so that the N threads of a
  // group write and read N consecutive elements.
  const auto checkpoint = [&](acc_t* ck, int64_t c) {
    return ck + ((hd.bh * seg.S + seg.s) * seg_chunks + c) * N * N;
  };

  // 1. Reverse scan: B (P), Gr rows (Q) and columns (V).
  start(false);
  for (int64_t c = hd.nchunks - 1; c >= 0; --c) {
    const int64_t t0 = c * L;
    const int n = static_cast<int>(min(int64_t(L), hd.T - t0));
    __syncthreads();
    stage_all(t0);
    __syncthreads();
    if (g < 2) {  // the state entering the chunk's last token
      acc_t* ck = checkpoint(g == 0 ? ck_b : ck_g, c);
#pragma unroll
      for (int x = 0; x < N; ++x) ck[x * N + j] = s[x];
    }
#pragma unroll 1
    for (int m = n - 1; m >= 0; --m) {
      const int64_t o = hd.base + (t0 + m) * C + j;
      const acc_t* rm = sr + m * N;
      const acc_t* km = sk + m * N;
      const acc_t* vm = sv + m * N;
      const acc_t* gm = sg + m * N;
      const acc_t* dm = sd + m * N;
      acc_t acc = 0;
      if (g == 0) {  // s = B[j, :]
        const acc_t d = dm[j], kj = km[j];
#pragma unroll
        for (int x = 0; x < N; ++x) {
          acc += gm[x] * s[x];
          s[x] = d * s[x] + kj * vm[x];
        }
        if (live) part_r[o] = acc;
      } else if (g == 1) {  // s = Gr[j, :]
        const acc_t d = dm[j], rj = rm[j];
#pragma unroll
        for (int x = 0; x < N; ++x) {
          acc += vm[x] * s[x];
          s[x] = d * s[x] + rj * gm[x];
        }
        if (live) part_k[o] = acc;
      } else {  // s = Gr[:, j]
        const acc_t gj = gm[j];
#pragma unroll
        for (int x = 0; x < N; ++x) {
          acc += km[x] * s[x];
          s[x] = dm[x] * s[x] + rm[x] * gj;
        }
        if (live) part_v[o] = acc;
      }
    }
  }

  // 2. Forward scan: A (P), Gl rows (Q) and columns (V).
  start(true);
  acc_t gu = 0;
  acc_t hx[L + 1];  // P: gy_x . A[j, :]; Q: v_x . Gl[j, :]; [L]: see top
  for (int64_t c = 0; c < hd.nchunks; ++c) {
    const int64_t t0 = c * L;
    const int n = static_cast<int>(min(int64_t(L), hd.T - t0));
    __syncthreads();
    stage_all(t0);
    __syncthreads();
    for (int e = threadIdx.x; e < L * L; e += blockDim.x) {
      const acc_t* va = sv + (e / L) * N;
      const acc_t* gb = sg + (e % L) * N;
      acc_t acc = 0;
      // Rotated start: the lanes of a warp read different banks.
#pragma unroll
      for (int xx = 0; xx < N; ++xx) {
        const int x = (xx + e) % N;
        acc += va[x] * gb[x];
      }
      sG[(e / L) * GS + e % L] = acc;
    }
    __syncthreads();
    if (g < 2) {
      // P pairs A with Gr (checkpoint ck_g) and gy; Q pairs Gl with B (ck_b)
      // and v. "Own" is what the state's update adds per token (k v^T for
      // A, r gy^T for Gl), "other" the staged input the state is dotted
      // with.
      const acc_t* ck = checkpoint(g == 0 ? ck_g : ck_b, c);
      const acc_t* other = g == 0 ? sg : sv;   // gy_x (P), v_x (Q)
      const acc_t* own_a = g == 0 ? sk : sr;   // scales the update
      const acc_t* own_b = g == 0 ? sv : sg;   // the update's row
      const acc_t* weight = g == 0 ? sr : sk;  // h_x's weight in the sum
#pragma unroll
      for (int x = 0; x <= L; ++x) hx[x] = 0;
#pragma unroll
      for (int i = 0; i < N; ++i) {
        const acc_t si = s[i];
#pragma unroll
        for (int x = 0; x < L; ++x) hx[x] += other[x * N + i] * si;
        hx[L] += si * ck[i * N + j];
      }
#pragma unroll 1
      for (int m = 0; m < n; ++m) {
        const int64_t o = hd.base + (t0 + m) * C + j;
        const acc_t d = sd[m * N + j];
        const acc_t a = own_a[m * N + j];   // k_m (P), r_m (Q)
        const acc_t b = weight[m * N + j];  // r_m (P), k_m (Q)
        const acc_t gv_m = sG[m * GS + m];  // gy_m . v_m
        // <state_m, other state_m> over the chunk's later tokens and the
        // checkpoint beyond it.
        acc_t pair = 0, p = 1;
#pragma unroll
        for (int x = 0; x < L; ++x) {
          if (x > m) {
            pair += p * weight[x * N + j] * hx[x];
            p *= sd[x * N + j];
          }
        }
        pair += p * hx[L];
        acc_t h_m = 0;  // hx[m], without indexing hx at run time
#pragma unroll
        for (int x = 0; x < L; ++x) h_m = x == m ? hx[x] : h_m;
        const acc_t own = h_m + su[j] * a * gv_m;  // this scan's share
        if (live && g == 0) {
          gr[o] = static_cast<scalar_t>(own + part_r[o]);
          part_r[o] = pair;
        } else if (live) {
          gk[o] = static_cast<scalar_t>(own + part_k[o]);
          part_k[o] = pair;
        }
        if (g == 0) gu += b * a * gv_m;
        // Advance to token m + 1.
        const acc_t* ob = own_b + m * N;
        acc_t q = 0;  // (v_m (P), gy_m (Q)) . checkpoint row j
#pragma unroll
        for (int i = 0; i < N; ++i) {
          q += ob[i] * ck[i * N + j];
          s[i] = d * s[i] + a * ob[i];
        }
#pragma unroll
        for (int x = 0; x < L; ++x) {
          if (x > m) {
            // v_m . gy_x (P), v_x . gy_m (Q)
            const acc_t gram = g == 0 ? sG[m * GS + x] : sG[x * GS + m];
            hx[x] = d * hx[x] + a * gram;
          }
        }
        hx[L] = d * hx[L] + a * q;
      }
    } else {  // s = Gl[:, j]
#pragma unroll 1
      for (int m = 0; m < n; ++m) {
        const int64_t o = hd.base + (t0 + m) * C + j;
        const acc_t* rm = sr + m * N;
        const acc_t* km = sk + m * N;
        const acc_t* dm = sd + m * N;
        const acc_t gj = sg[m * N + j];
        acc_t acc = 0, urk = 0;
#pragma unroll
        for (int x = 0; x < N; ++x) {
          acc += km[x] * s[x];
          urk += su[x] * rm[x] * km[x];
          s[x] = dm[x] * s[x] + rm[x] * gj;
        }
        if (live) {
          gv[o] = static_cast<scalar_t>(acc + part_v[o] + gj * urk);
        }
      }
    }
    __syncthreads();  // part_r / part_k of the chunk hold both pair sums
    if (g == 0 && live) {
      for (int m = 0; m < n; ++m) {
        const int64_t o = hd.base + (t0 + m) * C + j;
        gw[o] = static_cast<scalar_t>(decay_slope(static_cast<acc_t>(w[o])) *
                                      (part_r[o] + part_k[o]));
      }
    }
  }
  if (g == 0 && live) {
    gu_part[(seg.s * int64_t(gridDim.x) + hd.bh) * n_head + j] = gu;
  }
}

template <int N>
constexpr size_t forward_smem(size_t acc_bytes, int L) {
  return (3 * L * N + N) * acc_bytes;
}

template <int N>
constexpr size_t summary_smem(size_t acc_bytes, int L) {
  return 2 * L * N * acc_bytes;
}

template <int N>
constexpr size_t backward_smem(size_t acc_bytes, int L) {
  return (5 * L * N + L * (L + 1) + N) * acc_bytes;
}

struct Shape {
  int64_t B, T, C, H, N;
};

Shape shape_of(const at::Tensor& r, const at::Tensor& u) {
  const Shape s{r.size(0), r.size(1), r.size(2), u.size(0), u.size(1)};
  TORCH_CHECK(s.N >= 1 && s.N <= kWkv6MaxN,
              "bi_wkv6 (CUDA): head size N = ", s.N,
              " is not supported (at most ", kWkv6MaxN, "; VRWKV6 uses 64)");
  TORCH_CHECK(s.H * s.N == s.C, "bi_wkv6 (CUDA): u is ", u.sizes(),
              " but C = ", s.C);
  TORCH_CHECK(s.B * s.H <= 2147483647, "bi_wkv6 (CUDA): B * H = ", s.B * s.H,
              " exceeds the grid limit; split the batch");
  return s;
}

at::ScalarType acc_type(const at::Tensor& r) {
  return r.scalar_type() == at::kDouble ? at::kDouble : at::kFloat;
}

// Calls f.template operator()<N>() with the smallest built N >= head size.
template <typename F>
void with_head_size(int64_t n, const F& f) {
  if (n <= 16) {
    f.template operator()<16>();
  } else {
    f.template operator()<kWkv6MaxN>();
  }
}

// Segments of at least kMinSegment tokens, at most kMaxSegments of them per
// (batch, head) (cuda_grid.h), and a split only into at least kMinSplit: a
// split launch scans each token about 1.5 times (the summary kernel skips r
// and y) and every thread merges the other segments' summaries (like one
// token each).
using mmvrwkv::kMaxSegments;
using mmvrwkv::kMinSegment;
constexpr int64_t kMinSplit = 4;

// Token segments per (batch, head) of the forward launch on a device of
// sm_count SMs: 1 (one block scans all T tokens) unless the B * H blocks
// leave SMs idle; then up to ceil(SMs / blocks), if there are at least
// kMinSplit of >= kMinSegment tokens.
int64_t forward_segments(int64_t B, int64_t H, int64_t T, int64_t sm_count) {
  const int64_t blocks = B * H;
  if (blocks >= sm_count) return 1;
  const int64_t S = std::min(
      {(sm_count + blocks - 1) / blocks, T / kMinSegment, kMaxSegments});
  return S >= kMinSplit ? S : 1;
}

// Token segments per (batch, head) of the backward launch: the forward's
// policy. Its blocks (3 N threads, ~225 registers each at N = 64) hold one
// SM each, so B * H of them leave SMs idle exactly where the forward's do;
// and what a split adds is in proportion the same or less: the summary
// launch scans each token twice per pair (k v^T and r gy^T, in 2 B H S
// blocks at once) against the backward's two scans of three states plus
// the pair sums, and every thread merges the other segments' summaries
// once per scan, like one token each. Segments of >= kMinSegment tokens are
// >= 2 chunks (float) or 4 (float64), so the partial chunk a segment may
// end with adds at most a third to its scan and to its checkpoints.
int64_t backward_segments(int64_t B, int64_t H, int64_t T, int64_t sm_count) {
  return forward_segments(B, H, T, sm_count);
}

}  // namespace

at::Tensor forward_cuda(const at::Tensor& r, const at::Tensor& k,
                        const at::Tensor& v, const at::Tensor& w,
                        const at::Tensor& u) {
  const c10::cuda::CUDAGuard guard(r.device());
  const Shape sh = shape_of(r, u);
  auto y = at::empty({sh.B, sh.T, sh.C}, r.options().dtype(acc_type(r)));
  const int64_t BH = sh.B * sh.H;
  const int64_t S = forward_segments(sh.B, sh.H, sh.T, mmvrwkv::sm_count(r));
  const dim3 grid(static_cast<unsigned>(BH), static_cast<unsigned>(S));
  const auto stream = c10::cuda::getCurrentCUDAStream();
  AT_DISPATCH_FLOATING_TYPES_AND2(
      at::kHalf, at::kBFloat16, r.scalar_type(), "bi_wkv6_forward_cuda", [&] {
        using acc_t = at::opmath_type<scalar_t>;
        constexpr int L = Chunk<acc_t>::L;
        with_head_size(sh.N, [&]<int N>() {
          // Summaries (k v^T) and decay products of every segment, when
          // split.
          const int64_t F = S > 1 ? BH * S * N : 0;
          auto sums = at::empty({2 * F * N}, y.options());
          auto decay = at::empty({F}, y.options());
          if (S > 1) {
            BIWKV_LAUNCH(grid, dim3(N), summary_smem<N>(sizeof(acc_t), L),
                         stream, wkv6_summary_kernel<N, scalar_t, acc_t>)(
                sh.T, sh.C, static_cast<int>(sh.N), k.data_ptr<scalar_t>(),
                v.data_ptr<scalar_t>(), w.data_ptr<scalar_t>(),
                r.data_ptr<scalar_t>(), nullptr, sums.data_ptr<acc_t>(),
                decay.data_ptr<acc_t>());
            C10_CUDA_KERNEL_LAUNCH_CHECK();
          }
          BIWKV_LAUNCH(grid, dim3(N), forward_smem<N>(sizeof(acc_t), L), stream,
                       wkv6_forward_kernel<N, scalar_t, acc_t>)(
              sh.T, sh.C, static_cast<int>(sh.N), r.data_ptr<scalar_t>(),
              k.data_ptr<scalar_t>(), v.data_ptr<scalar_t>(),
              w.data_ptr<scalar_t>(), u.data_ptr<acc_t>(), y.data_ptr<acc_t>(),
              sums.data_ptr<acc_t>(), decay.data_ptr<acc_t>());
          C10_CUDA_KERNEL_LAUNCH_CHECK();
        });
      });
  return y;
}

std::vector<at::Tensor> backward_cuda(const at::Tensor& r, const at::Tensor& k,
                                      const at::Tensor& v, const at::Tensor& w,
                                      const at::Tensor& u,
                                      const at::Tensor& gy) {
  const c10::cuda::CUDAGuard guard(r.device());
  const Shape sh = shape_of(r, u);
  TORCH_CHECK(gy.scalar_type() == acc_type(r) && gy.sizes() == r.sizes(),
              "bi_wkv6 (CUDA): grad_output must be ", acc_type(r), " ",
              r.sizes(), ", got ", gy.scalar_type(), " ", gy.sizes());
  auto gr = at::empty_like(r), gk = at::empty_like(k);
  auto gv = at::empty_like(v), gw = at::empty_like(w);
  const auto acc = r.options().dtype(acc_type(r));
  const int64_t BH = sh.B * sh.H;
  const int64_t S = backward_segments(sh.B, sh.H, sh.T, mmvrwkv::sm_count(r));
  const dim3 grid(static_cast<unsigned>(BH), static_cast<unsigned>(S));
  const auto stream = c10::cuda::getCurrentCUDAStream();
  // gu of every segment, [S][B][C]
  auto gu_part = at::empty({S * sh.B, sh.C}, acc);
  auto part = at::empty({3, sh.B, sh.T, sh.C}, acc);
  AT_DISPATCH_FLOATING_TYPES_AND2(
      at::kHalf, at::kBFloat16, r.scalar_type(), "bi_wkv6_backward_cuda", [&] {
        using acc_t = at::opmath_type<scalar_t>;
        constexpr int L = Chunk<acc_t>::L;
        // Checkpoints per segment: the chunks of the longest one.
        const int64_t nchunks = ((sh.T + S - 1) / S + L - 1) / L;
        with_head_size(sh.N, [&]<int N>() {
          auto ck = at::empty({2, BH * S, nchunks, N, N}, acc);
          // Summaries (k v^T, then r gy^T) and decay products of every
          // segment, when split.
          const int64_t F = S > 1 ? BH * S * N : 0;
          auto sums = at::empty({4 * F * N}, acc);
          auto decay = at::empty({F}, acc);
          if (S > 1) {
            BIWKV_LAUNCH(dim3(grid.x, grid.y, 2), dim3(N),
                         summary_smem<N>(sizeof(acc_t), L), stream,
                         wkv6_summary_kernel<N, scalar_t, acc_t>)(
                sh.T, sh.C, static_cast<int>(sh.N), k.data_ptr<scalar_t>(),
                v.data_ptr<scalar_t>(), w.data_ptr<scalar_t>(),
                r.data_ptr<scalar_t>(), gy.data_ptr<acc_t>(),
                sums.data_ptr<acc_t>(), decay.data_ptr<acc_t>());
            C10_CUDA_KERNEL_LAUNCH_CHECK();
          }
          const int64_t plane = sh.B * sh.T * sh.C;
          acc_t* p = part.data_ptr<acc_t>();
          acc_t* c = ck.data_ptr<acc_t>();
          const size_t smem = backward_smem<N>(sizeof(acc_t), L);
          BIWKV_LAUNCH(grid, dim3(3 * N), smem, stream,
                       wkv6_backward_kernel<N, scalar_t, acc_t>)(
              sh.T, sh.C, static_cast<int>(sh.N), r.data_ptr<scalar_t>(),
              k.data_ptr<scalar_t>(), v.data_ptr<scalar_t>(),
              w.data_ptr<scalar_t>(), u.data_ptr<acc_t>(), gy.data_ptr<acc_t>(),
              gr.data_ptr<scalar_t>(), gk.data_ptr<scalar_t>(),
              gv.data_ptr<scalar_t>(), gw.data_ptr<scalar_t>(),
              gu_part.data_ptr<acc_t>(), p, p + plane, p + 2 * plane, c,
              c + ck.size(1) * nchunks * N * N, sums.data_ptr<acc_t>(),
              decay.data_ptr<acc_t>());
          C10_CUDA_KERNEL_LAUNCH_CHECK();
        });
      });
  // A fixed-order reduction over the segments and the batch (torch.sum
  // uses no atomics); unsplit, over the batch as before.
  return {gr, gk, gv, gw, gu_part.sum(0).view({sh.H, sh.N})};
}

}  // namespace bi_wkv6
