// Bi-WKV on NVIDIA GPUs.
//
// One thread block owns 32 neighbouring channels (threadIdx.x, so loads of
// (b, t, c..c+31) are coalesced) of one batch element (blockIdx.y, offset by
// the launch's first batch element: a launch covers at most 65535), for one
// segment of the tokens (blockIdx.z). The segment is split into blockDim.y
// chunks, one per thread row; each thread scans its chunk, the chunk summaries
// are combined through shared memory (O(chunks) per thread), and each thread
// re-scans its chunk with the exact incoming state.
//
// One segment holds all T tokens unless the grid would leave SMs idle
// (launch_config). Then a first kernel writes each chunk's and each
// segment's summaries to global memory, and the main kernel adds the other
// segments' summaries to its incoming states (O(segments) per thread); the
// backward pass takes a third kernel for dk/dv, whose sums cross segments
// too. Work per channel is O(T), any B/T/C is accepted, no T_MAX exists, and
// every sum is combined in a fixed order (no float atomics): results are
// deterministic. The per-token arithmetic is the same as the CPU kernel's
// (bi_wkv_scan.h).
#include <ATen/Dispatch.h>
#include <ATen/OpMathType.h>
#include <c10/cuda/CUDAException.h>
#include <c10/cuda/CUDAGuard.h>
#include <c10/cuda/CUDAStream.h>
#include <torch/extension.h>

#include <algorithm>
#include <type_traits>

#include "bi_wkv.h"
#include "bi_wkv_scan.h"
#include "cuda_grid.h"
#include "cuda_launch.h"

namespace bi_wkv {
namespace {

constexpr int kWarp = 32;
constexpr int kMaxChunks = 16;
// The largest block launch_config makes (kWarp x kMaxChunks threads).
constexpr int kMaxThreads = kWarp * kMaxChunks;
// Chunks of at least kMinChunk tokens: shorter ones would save less scanning
// than the merges that combine them cost.
constexpr int64_t kMinChunk = 16;
// Segments of at least kMinSegment tokens (4 chunks), at most kMaxSegments
// of them (cuda_grid.h): every thread merges the summaries of all other
// segments.
using mmvrwkv::kMaxSegments;
using mmvrwkv::kMinSegment;
// Fields of a stored summary: Sum (num, den, m), Moments (+ qnum, qden);
// the forward and backward kernels store a left and a right one per chunk.
constexpr int kForwardFields = 6;
constexpr int kBackwardFields = 10;

// Field f of a stored state lives at p[f * stride + offset]; P is acc_t,
// or const acc_t for states only read.
template <typename P>
struct Slot {
  P* p;
  int64_t stride, offset;
  __device__ P& operator[](int f) const { return p[f * stride + offset]; }
};

struct Layout {
  int64_t B, T, C, plane;  // plane = B * T * C, the size of one scratch plane
  int c, b, j, nc;         // channel, batch, chunk index, number of chunks
  int s, S;                // segment index, number of segments
  int64_t ts, tn;          // this block's tokens: [ts, ts + tn)
  int64_t t0, t1;          // this thread's tokens
  bool active;
  // b0: the first batch element of the launch (launch_config's slices).
  __device__ Layout(int64_t B_, int64_t T_, int64_t C_, int64_t b0)
      : B(B_), T(T_), C(C_) {
    plane = B * T * C;
    c = blockIdx.x * kWarp + threadIdx.x;
    b = static_cast<int>(b0 + blockIdx.y);
    s = blockIdx.z;
    S = gridDim.z;
    j = threadIdx.y;
    nc = blockDim.y;
    active = c < C;
    ts = seg_start(s);
    tn = seg_start(s + 1) - ts;
    t0 = ts + min(chunk_len() * j, tn);
    t1 = min(t0 + chunk_len(), ts + tn);
  }
  // Segments of floor(T / S) or ceil(T / S) tokens.
  __device__ int64_t seg_start(int q) const { return q * T / S; }
  __device__ int64_t seg_len(int q) const {
    return seg_start(q + 1) - seg_start(q);
  }
  __device__ int64_t chunk_len() const { return (tn + nc - 1) / nc; }
  __device__ int64_t len_of(int q) const {
    const int64_t start = min(chunk_len() * q, tn);
    return min(start + chunk_len(), tn) - start;
  }
  __device__ int64_t at(int64_t t) const { return (b * T + t) * C + c; }
  // Chunk q's state in shared memory, a [fields][nc][32] array.
  template <typename P>
  __device__ Slot<P> shared(P* sh, int q) const {
    return {sh, int64_t(nc) * kWarp, int64_t(q) * kWarp + threadIdx.x};
  }
  // Segment q's state in global memory, a [fields][S][B][C] array.
  template <typename P>
  __device__ Slot<P> segment(P* p, int q) const {
    return {p, S * B * C, (q * B + b) * C + c};
  }
  // This thread's state in global memory, a [fields][S][nc][B][C] array.
  template <typename P>
  __device__ Slot<P> thread(P* p) const {
    return {p, int64_t(S) * nc * B * C,
            ((int64_t(s) * nc + j) * B + b) * C + c};
  }
};

template <typename acc_t>
__device__ void store(const Slot<acc_t>& d, int f, const Sum<acc_t>& s) {
  d[f] = s.num, d[f + 1] = s.den, d[f + 2] = s.m;
}

template <typename acc_t>
__device__ void store(const Slot<acc_t>& d, int f, const Moments<acc_t>& s) {
  d[f] = s.num, d[f + 1] = s.den, d[f + 2] = s.qnum, d[f + 3] = s.qden;
  d[f + 4] = s.m;
}

template <typename acc_t, typename P>
__device__ void load(const Slot<P>& d, int f, Sum<acc_t>& s) {
  s = {d[f], d[f + 1], d[f + 2]};
}

template <typename acc_t, typename P>
__device__ void load(const Slot<P>& d, int f, Moments<acc_t>& s) {
  s = {d[f], d[f + 1], d[f + 2], d[f + 3], d[f + 4]};
}

template <typename acc_t>
__device__ void clear(Sum<acc_t>& s) {
  s = empty_sum<acc_t>();
}

template <typename acc_t>
__device__ void clear(Moments<acc_t>& s) {
  s = empty_moments<acc_t>();
}

// Adds parts 0..j-1 of a sequence of n parts (part q: len(q) tokens, its
// summaries in fields [fl, ...) and [fr, ...) of slot(q)) to left, and parts
// n-1..j+1 to right, each state decayed past a part before the next one is
// merged: left ends up as the state entering part j from the left, right as
// the state entering it from the right.
template <typename State, typename acc_t, typename Len, typename SlotOf>
__device__ void gather(int j, int n, acc_t w, const Len& len,
                       const SlotOf& slot, int fl, int fr, State& left,
                       State& right) {
  State part;
  for (int q = 0; q < j; ++q) {
    decay(left, acc_t(len(q)));
    load(slot(q), fl, part);
    merge(left, part, w);
  }
  for (int q = n - 1; q > j; --q) {
    decay(right, acc_t(len(q)));
    load(slot(q), fr, part);
    merge(right, part, w);
  }
}

// States entering this thread's chunk from the other chunks of its segment,
// from their summaries in shared memory.
template <typename State, typename acc_t>
__device__ void incoming(const Layout& L, acc_t w, const acc_t* sh, int fl,
                         int fr, State& left, State& right) {
  gather(
      L.j, L.nc, w, [&](int q) { return L.len_of(q); },
      [&](int q) { return L.shared(sh, q); }, fl, fr, left, right);
}

// States entering this block's segment from the other segments, from their
// summaries in global memory (nothing when there is one segment).
template <typename State, typename acc_t>
__device__ void from_segments(const Layout& L, acc_t w, const acc_t* segs,
                              int fl, int fr, State& left, State& right) {
  gather(
      L.s, L.S, w, [&](int q) { return L.seg_len(q); },
      [&](int q) { return L.segment(segs, q); }, fl, fr, left, right);
}

// The summaries of the whole segment, from its chunks' in shared memory
// (fields fl, fr) to out (fields ol, or): the left one by thread row 0, the
// right one by the last row.
template <typename State, typename acc_t>
__device__ void summarise_segment(const Layout& L, acc_t w, const acc_t* sh,
                                  int fl, int fr, const Slot<acc_t>& out,
                                  int ol, int orr) {
  auto len = [&](int q) { return L.len_of(q); };
  auto slot = [&](int q) { return L.shared(sh, q); };
  State left, right, none;
  clear(left), clear(right), clear(none);
  if (L.j == 0) {
    gather(L.nc, L.nc, w, len, slot, fl, fr, left, none);
    store(out, ol, fold(left, w));
  }
  if (L.j == L.nc - 1) {
    gather(-1, L.nc, w, len, slot, fl, fr, none, right);
    store(out, orr, fold(right, w));
  }
}

// Chunk summaries: left (decayed to the chunk end), right (to its start).
template <typename scalar_t, typename acc_t>
__device__ void chunk_sums(const Layout& L, acc_t w,
                           const scalar_t* __restrict__ k,
                           const scalar_t* __restrict__ v, Sum<acc_t>& sl,
                           Sum<acc_t>& sr) {
  sl = empty_sum<acc_t>(), sr = empty_sum<acc_t>();
  if (!L.active) return;
  for (int64_t t = L.t0; t < L.t1; ++t) {
    const acc_t kk = k[L.at(t)], vv = v[L.at(t)];
    step(sl, w, kk, vv);
    add(sr, w, kk, acc_t(t - L.t0), vv, acc_t(1));
  }
}

// The same with moments, for the backward pass.
template <typename scalar_t, typename acc_t>
__device__ void chunk_sums(const Layout& L, acc_t w,
                           const scalar_t* __restrict__ k,
                           const scalar_t* __restrict__ v, Moments<acc_t>& ml,
                           Moments<acc_t>& mr) {
  ml = empty_moments<acc_t>(), mr = empty_moments<acc_t>();
  if (!L.active) return;
  for (int64_t t = L.t0; t < L.t1; ++t) {
    const acc_t kk = k[L.at(t)], vv = v[L.at(t)];
    const acc_t dist = acc_t(t - L.t0);
    step(ml, w, kk, vv);
    add(mr, w, kk, dist, vv, dist);
  }
}

// Chunk summaries into shared memory (fields [0, fields)): scanned here
// with one segment, else copied from what summary_kernel wrote. Stored with
// one float exponent each (fold).
template <typename State, typename scalar_t, typename acc_t>
__device__ void stage_chunk_sums(const Layout& L, acc_t w,
                                 const scalar_t* __restrict__ k,
                                 const scalar_t* __restrict__ v,
                                 const acc_t* __restrict__ chunks, acc_t* sh,
                                 int fields) {
  const Slot<acc_t> mine = L.shared(sh, L.j);
  if (L.S == 1) {
    State left, right;
    chunk_sums(L, w, k, v, left, right);
    store(mine, 0, fold(left, w));
    store(mine, fields / 2, fold(right, w));
  } else if (L.active) {
    for (int f = 0; f < fields; ++f) mine[f] = L.thread(chunks)[f];
  }
}

// First kernel of a split launch: the summaries of every chunk (to chunks)
// and of every segment (to segs). State is Sum (forward) or Moments.
template <typename State, typename scalar_t, typename acc_t>
__global__ void __launch_bounds__(kMaxThreads)
    summary_kernel(int64_t B, int64_t T, int64_t C, int64_t b0,
                   const acc_t* __restrict__ w_, const scalar_t* __restrict__ k,
                   const scalar_t* __restrict__ v, acc_t* __restrict__ chunks,
                   acc_t* __restrict__ segs) {
  BIWKV_DYNAMIC_SHARED(unsigned char, smem_raw);
  acc_t* sh = reinterpret_cast<acc_t*>(smem_raw);
  const Layout L(B, T, C, b0);
  const acc_t w = L.active ? w_[L.c] : acc_t(0);
  // Fields of the left summary; the right one follows.
  constexpr int side = std::is_same_v<State, Sum<acc_t>> ? 3 : 5;
  State left, right;
  chunk_sums(L, w, k, v, left, right);
  const Slot<acc_t> mine = L.shared(sh, L.j);
  store(mine, 0, fold(left, w));
  store(mine, side, fold(right, w));
  __syncthreads();
  if (!L.active) return;  // no __syncthreads() below
  for (int f = 0; f < 2 * side; ++f) L.thread(chunks)[f] = mine[f];
  summarise_segment<State>(L, w, sh, 0, side, L.segment(segs, L.s), 0, side);
}

template <typename scalar_t, typename acc_t>
__global__ void __launch_bounds__(kMaxThreads)
    forward_kernel(int64_t B, int64_t T, int64_t C, int64_t b0,
                   const acc_t* __restrict__ w_, const acc_t* __restrict__ u_,
                   const scalar_t* __restrict__ k,
                   const scalar_t* __restrict__ v, scalar_t* __restrict__ y,
                   acc_t* __restrict__ scratch,
                   const acc_t* __restrict__ chunks,
                   const acc_t* __restrict__ segs) {
  BIWKV_DYNAMIC_SHARED(unsigned char, smem_raw);
  acc_t* sh = reinterpret_cast<acc_t*>(smem_raw);
  const Layout L(B, T, C, b0);
  const acc_t w = L.active ? w_[L.c] : acc_t(0);
  const acc_t u = L.active ? u_[L.c] : acc_t(0);

  // 1. Chunk summaries: left (decayed to the chunk end), right (to its start).
  stage_chunk_sums<Sum<acc_t>>(L, w, k, v, chunks, sh, kForwardFields);
  __syncthreads();
  if (!L.active) return;  // no __syncthreads() below

  // 2. Exact states entering the chunk: the other segments, then the other
  // chunks of this one.
  Sum<acc_t> left = empty_sum<acc_t>(), right = empty_sum<acc_t>();
  from_segments(L, w, segs, 0, 3, left, right);
  incoming(L, w, sh, 0, 3, left, right);

  // 3. Right sums for every token of the chunk, then the outputs.
  acc_t* rnum = scratch;
  acc_t* rden = scratch + L.plane;
  acc_t* rm = scratch + 2 * L.plane;
  for (int64_t t = L.t1 - 1; t >= L.t0; --t) {
    const int64_t o = L.at(t);
    const Sum<acc_t> f = fold(right, w);
    rnum[o] = f.num, rden[o] = f.den, rm[o] = f.m;
    step(right, w, acc_t(k[o]), acc_t(v[o]));
  }
  for (int64_t t = L.t0; t < L.t1; ++t) {
    const int64_t o = L.at(t);
    const acc_t kk = k[o], vv = v[o];
    const Combined<acc_t> c =
        combine(left.total_num(), left.total_den(), left.m, left.n, rnum[o],
                rden[o], rm[o], acc_t(0), w, u, kk, vv);
    y[o] = static_cast<scalar_t>(c.y);
    step(left, w, kk, vv);
  }
}

// Step 4 of the backward pass: dk, dv from the sums over t > j, then t < j,
// of e^{-(|t-j|-1) w} a_t (y_t, 1); pin_l, pin_r are those entering the
// chunk.
template <typename scalar_t, typename acc_t>
__device__ void finish_backward(const Layout& L, acc_t w,
                                const scalar_t* __restrict__ k,
                                const scalar_t* __restrict__ v,
                                scalar_t* __restrict__ gk,
                                scalar_t* __restrict__ gv,
                                acc_t* __restrict__ scratch, Sum<acc_t> pin_l,
                                Sum<acc_t> pin_r) {
  const acc_t* s0 = scratch;
  const acc_t* s1 = scratch + L.plane;
  const acc_t* s2 = scratch + 2 * L.plane;
  acc_t* s3 = scratch + 3 * L.plane;
  acc_t* s4 = scratch + 4 * L.plane;
  for (int64_t t = L.t1 - 1; t >= L.t0; --t) {
    const int64_t o = L.at(t);
    const acc_t kk = k[o], vv = v[o];
    const acc_t e = exp_nonpos(gap(kk, pin_r.n, -pin_r.m, acc_t(0), w));
    const acc_t num = pin_r.total_num(), den = pin_r.total_den();
    s3[o] += den * e;
    s4[o] += (vv * den - num) * e;
    step_lazy(pin_r, w, s1[o], s0[o] * s2[o], s0[o]);
  }
  for (int64_t t = L.t0; t < L.t1; ++t) {
    const int64_t o = L.at(t);
    const acc_t kk = k[o], vv = v[o];
    const acc_t e = exp_nonpos(gap(kk, pin_l.n, -pin_l.m, acc_t(0), w));
    const acc_t num = pin_l.total_num(), den = pin_l.total_den();
    gv[o] = static_cast<scalar_t>(s3[o] + den * e);
    gk[o] = static_cast<scalar_t>(s4[o] + (vv * den - num) * e);
    step_lazy(pin_l, w, s1[o], s0[o] * s2[o], s0[o]);
  }
}

// See backward_block in cpu/bi_wkv_cpu.cpp for the formulas; the scratch
// planes play the same roles (0: a, 1: -m, 2: y, 3: gv, 4: gk after pass 2).
// With several segments, dk/dv are left to backward_finish_kernel: this
// kernel writes the a_t-source sums entering each chunk from its own
// segment (pins) and each segment's summaries of them (pin_segs).
template <typename scalar_t, typename acc_t>
__global__ void __launch_bounds__(kMaxThreads)
    backward_kernel(int64_t B, int64_t T, int64_t C, int64_t b0,
                    const acc_t* __restrict__ w_, const acc_t* __restrict__ u_,
                    const scalar_t* __restrict__ k,
                    const scalar_t* __restrict__ v,
                    const scalar_t* __restrict__ gy, scalar_t* __restrict__ gk,
                    scalar_t* __restrict__ gv, acc_t* __restrict__ gw_part,
                    acc_t* __restrict__ gu_part, acc_t* __restrict__ scratch,
                    const acc_t* __restrict__ chunks,
                    const acc_t* __restrict__ segs, acc_t* __restrict__ pins,
                    acc_t* __restrict__ pin_segs) {
  BIWKV_DYNAMIC_SHARED(unsigned char, smem_raw);
  acc_t* sh = reinterpret_cast<acc_t*>(smem_raw);
  const Layout L(B, T, C, b0);
  const acc_t w = L.active ? w_[L.c] : acc_t(0);
  const acc_t u = L.active ? u_[L.c] : acc_t(0);
  acc_t* s0 = scratch;
  acc_t* s1 = scratch + L.plane;
  acc_t* s2 = scratch + 2 * L.plane;
  acc_t* s3 = scratch + 3 * L.plane;
  acc_t* s4 = scratch + 4 * L.plane;

  // 1-2. Chunk summaries with moments, then the incoming states.
  stage_chunk_sums<Moments<acc_t>>(L, w, k, v, chunks, sh, kBackwardFields);
  __syncthreads();
  Moments<acc_t> left = empty_moments<acc_t>(), right = empty_moments<acc_t>();
  if (L.active) {
    from_segments(L, w, segs, 0, 5, left, right);
    incoming(L, w, sh, 0, 5, left, right);
  }

  // 3. Right sums with moments per token; then outputs, a_t, dw, du and the
  // token's own share of dk/dv; and summaries of the a_t sources.
  acc_t gw_acc = 0, gu_acc = 0, cgw = 0, cgu = 0;  // compensated sums
  Sum<acc_t> pl = empty_sum<acc_t>(), pr = empty_sum<acc_t>();
  if (L.active) {
    for (int64_t t = L.t1 - 1; t >= L.t0; --t) {
      const int64_t o = L.at(t);
      const Moments<acc_t> f = fold(right, w);
      s0[o] = f.num, s1[o] = f.den, s2[o] = f.qnum;
      s3[o] = f.qden, s4[o] = f.m;
      step(right, w, acc_t(k[o]), acc_t(v[o]));
    }
    for (int64_t t = L.t0; t < L.t1; ++t) {
      const int64_t o = L.at(t);
      const acc_t kk = k[o], vv = v[o], g = gy[o];
      const acc_t rq_num = s2[o], rq_den = s3[o];
      const Combined<acc_t> c =
          combine(left.total_num(), left.total_den(), left.m, left.n, s0[o],
                  s1[o], s4[o], acc_t(0), w, u, kk, vv);
      const acc_t a = g * c.inv;
      const acc_t lq_num = left.total_qnum(), lq_den = left.total_qden();
      kahan_add(gu_acc, cgu, a * c.es * (vv - c.y));
      kahan_add(gw_acc, cgw,
                -a * (c.el * (lq_num - c.y * lq_den) +
                      c.er * (rq_num - c.y * rq_den)));
      // a_t = g / D_t as the mantissa g * ia with the float exponent -m.
      const acc_t at = g * c.ia;
      s0[o] = at, s1[o] = -c.m, s2[o] = c.y;
      s3[o] = a * c.es, s4[o] = a * c.es * (vv - c.y);
      step(left, w, kk, vv);
      step_lazy(pl, w, -c.m, at * c.y, at);
      add_lazy(pr, w, -c.m, acc_t(t - L.t0), at * c.y, at);
    }
  }
  __syncthreads();  // shared memory is reused below
  // dw, du: sum the chunks of this channel in a fixed order.
  const Slot<acc_t> mine = L.shared(sh, L.j);
  mine[0] = gw_acc - cgw;
  mine[1] = gu_acc - cgu;
  store(mine, 2, fold(pl, w));
  store(mine, 5, fold(pr, w));
  __syncthreads();
  if (!L.active) return;  // no __syncthreads() below
  if (L.j == 0) {
    acc_t sw = 0, su = 0;
    for (int q = 0; q < L.nc; ++q) {
      sw += L.shared(sh, q)[0], su += L.shared(sh, q)[1];
    }
    gw_part[(int64_t(L.s) * B + L.b) * C + L.c] = sw;
    gu_part[(int64_t(L.s) * B + L.b) * C + L.c] = su;
  }
  Sum<acc_t> pin_l = empty_sum<acc_t>(), pin_r = empty_sum<acc_t>();
  incoming(L, w, sh, 2, 5, pin_l, pin_r);
  if (L.S == 1) {
    finish_backward(L, w, k, v, gk, gv, scratch, pin_l, pin_r);
    return;
  }
  store(L.thread(pins), 0, fold(pin_l, w));
  store(L.thread(pins), 3, fold(pin_r, w));
  summarise_segment<Sum<acc_t>>(L, w, sh, 2, 5, L.segment(pin_segs, L.s), 0, 3);
}

// Last kernel of a split backward pass: the a_t-source sums entering each
// chunk, from the other segments and from its own, then dk, dv.
template <typename scalar_t, typename acc_t>
__global__ void __launch_bounds__(kMaxThreads)
    backward_finish_kernel(int64_t B, int64_t T, int64_t C, int64_t b0,
                           const acc_t* __restrict__ w_,
                           const scalar_t* __restrict__ k,
                           const scalar_t* __restrict__ v,
                           scalar_t* __restrict__ gk, scalar_t* __restrict__ gv,
                           acc_t* __restrict__ scratch,
                           const acc_t* __restrict__ pins,
                           const acc_t* __restrict__ pin_segs) {
  const Layout L(B, T, C, b0);
  if (!L.active) return;  // no __syncthreads() in this kernel
  const acc_t w = w_[L.c];
  Sum<acc_t> pin_l = empty_sum<acc_t>(), pin_r = empty_sum<acc_t>(), own;
  from_segments(L, w, pin_segs, 0, 3, pin_l, pin_r);
  // From the segment's ends to the chunk's, then this segment's chunks.
  decay(pin_l, acc_t(L.t0 - L.ts));
  load(L.thread(pins), 0, own);
  merge(pin_l, own, w);
  decay(pin_r, acc_t(L.ts + L.tn - L.t1));
  load(L.thread(pins), 3, own);
  merge(pin_r, own, w);
  finish_backward(L, w, k, v, gk, gv, scratch, pin_l, pin_r);
}

// Batch elements per launch: grid.y holds at most 65535.
constexpr int64_t kMaxBatchPerLaunch = 65535;

struct Launch {
  dim3 grid, block;  // grid.y: the batch elements of one launch
  int64_t batch;     // B, launched in slices of at most grid.y
  int64_t segments() const { return grid.z; }
  int64_t chunks() const { return block.y; }
  int64_t batch_slices() const { return (batch + grid.y - 1) / grid.y; }
  // Dynamic shared memory of a kernel storing `fields` per chunk.
  size_t shared_bytes(int fields, size_t acc_size) const {
    return fields * chunks() * kWarp * acc_size;
  }
  // Calls launch(grid, b0) for each slice of the batch, b0 its first
  // element, in order. Blocks of different batch elements share nothing, so
  // the slices give the results of one launch.
  template <typename F>
  void each_batch_slice(const F& launch) const {
    for (int64_t b0 = 0; b0 < batch; b0 += grid.y) {
      launch(dim3(grid.x,
                  static_cast<unsigned>(std::min<int64_t>(grid.y, batch - b0)),
                  grid.z),
             b0);
    }
  }
};

// Chunks per block for a segment of `tokens` tokens.
int64_t chunks_for(int64_t tokens) {
  return std::max<int64_t>(1,
                           std::min<int64_t>(kMaxChunks, tokens / kMinChunk));
}

// The grid: ceil(C / 32) x B x segments blocks of 32 x chunks threads, B
// in slices of at most 65535 (one launch each). With one segment, blocks of
// up to 16 chunks of >= 16 tokens each scan all T tokens. When that grid has
// fewer blocks than the GPU has SMs, the tokens are split into up to
// ceil(SMs / blocks) segments, each of at least kMinSegment tokens, if that
// at least doubles the threads per channel: a split costs an extra pass over
// k and v and one or two launches.
Launch launch_config(int64_t B, int64_t T, int64_t C, int64_t sm_count) {
  // The kernels index batch elements with an int.
  TORCH_CHECK(B <= 2147483647, "bi_wkv (CUDA): batch size ", B,
              " exceeds 2^31 - 1; split the batch");
  const int64_t channel_blocks = (C + kWarp - 1) / kWarp;
  const int64_t blocks = channel_blocks * B;
  int64_t S = 1;
  if (blocks < sm_count) {
    S = std::min(
        {(sm_count + blocks - 1) / blocks, T / kMinSegment, kMaxSegments});
    S = std::max<int64_t>(S, 1);
    if (S * chunks_for(T / S) < 2 * chunks_for(T)) S = 1;
  }
  return {dim3(static_cast<unsigned>(channel_blocks),
               static_cast<unsigned>(std::min(B, kMaxBatchPerLaunch)),
               static_cast<unsigned>(S)),
          dim3(kWarp, static_cast<unsigned>(chunks_for(T / S))), B};
}

}  // namespace

at::Tensor forward_cuda(const at::Tensor& w, const at::Tensor& u,
                        const at::Tensor& k, const at::Tensor& v) {
  const c10::cuda::CUDAGuard guard(k.device());
  const int64_t B = k.size(0), T = k.size(1), C = k.size(2);
  const Launch cfg = launch_config(B, T, C, mmvrwkv::sm_count(k));
  const int64_t S = cfg.segments(), nc = cfg.chunks();
  auto y = at::empty_like(k);
  auto scratch = at::empty({3, B, T, C}, w.options());
  // Summaries of every chunk and of every segment, when split.
  const int64_t F = S > 1 ? kForwardFields : 0;
  auto chunks = at::empty({F, S, nc, B, C}, w.options());
  auto segs = at::empty({F, S, B, C}, w.options());
  const auto stream = c10::cuda::getCurrentCUDAStream();
  AT_DISPATCH_FLOATING_TYPES_AND2(
      at::kHalf, at::kBFloat16, k.scalar_type(), "bi_wkv_forward_cuda", [&] {
        using acc_t = at::opmath_type<scalar_t>;
        const size_t smem = cfg.shared_bytes(kForwardFields, sizeof(acc_t));
        if (S > 1) {
          cfg.each_batch_slice([&](const dim3& grid, int64_t b0) {
            BIWKV_LAUNCH(grid, cfg.block, smem, stream,
                         summary_kernel<Sum<acc_t>, scalar_t, acc_t>)(
                B, T, C, b0, w.data_ptr<acc_t>(), k.data_ptr<scalar_t>(),
                v.data_ptr<scalar_t>(), chunks.data_ptr<acc_t>(),
                segs.data_ptr<acc_t>());
            C10_CUDA_KERNEL_LAUNCH_CHECK();
          });
        }
        cfg.each_batch_slice([&](const dim3& grid, int64_t b0) {
          BIWKV_LAUNCH(grid, cfg.block, smem, stream,
                       forward_kernel<scalar_t, acc_t>)(
              B, T, C, b0, w.data_ptr<acc_t>(), u.data_ptr<acc_t>(),
              k.data_ptr<scalar_t>(), v.data_ptr<scalar_t>(),
              y.data_ptr<scalar_t>(), scratch.data_ptr<acc_t>(),
              chunks.data_ptr<acc_t>(), segs.data_ptr<acc_t>());
          C10_CUDA_KERNEL_LAUNCH_CHECK();
        });
      });
  return y;
}

std::vector<at::Tensor> backward_cuda(const at::Tensor& w, const at::Tensor& u,
                                      const at::Tensor& k, const at::Tensor& v,
                                      const at::Tensor& gy) {
  const c10::cuda::CUDAGuard guard(k.device());
  const int64_t B = k.size(0), T = k.size(1), C = k.size(2);
  const Launch cfg = launch_config(B, T, C, mmvrwkv::sm_count(k));
  const int64_t S = cfg.segments(), nc = cfg.chunks();
  auto gk = at::empty_like(k);
  auto gv = at::empty_like(v);
  auto gw_part = at::empty({S * B, C}, w.options());
  auto gu_part = at::empty({S * B, C}, u.options());
  auto scratch = at::empty({5, B, T, C}, w.options());
  // When split: chunk and segment summaries (moments) for backward_kernel,
  // and the a_t-source sums entering each chunk from its own segment (Sum:
  // 3 fields left, 3 right) and each segment's, for backward_finish_kernel.
  const int64_t F = S > 1 ? kBackwardFields : 0, P = S > 1 ? 6 : 0;
  auto chunks = at::empty({F, S, nc, B, C}, w.options());
  auto segs = at::empty({F, S, B, C}, w.options());
  auto pins = at::empty({P, S, nc, B, C}, w.options());
  auto pin_segs = at::empty({P, S, B, C}, w.options());
  const auto stream = c10::cuda::getCurrentCUDAStream();
  AT_DISPATCH_FLOATING_TYPES_AND2(
      at::kHalf, at::kBFloat16, k.scalar_type(), "bi_wkv_backward_cuda", [&] {
        using acc_t = at::opmath_type<scalar_t>;
        const size_t smem = cfg.shared_bytes(kBackwardFields, sizeof(acc_t));
        if (S > 1) {
          cfg.each_batch_slice([&](const dim3& grid, int64_t b0) {
            BIWKV_LAUNCH(grid, cfg.block, smem, stream,
                         summary_kernel<Moments<acc_t>, scalar_t, acc_t>)(
                B, T, C, b0, w.data_ptr<acc_t>(), k.data_ptr<scalar_t>(),
                v.data_ptr<scalar_t>(), chunks.data_ptr<acc_t>(),
                segs.data_ptr<acc_t>());
            C10_CUDA_KERNEL_LAUNCH_CHECK();
          });
        }
        cfg.each_batch_slice([&](const dim3& grid, int64_t b0) {
          BIWKV_LAUNCH(grid, cfg.block, smem, stream,
                       backward_kernel<scalar_t, acc_t>)(
              B, T, C, b0, w.data_ptr<acc_t>(), u.data_ptr<acc_t>(),
              k.data_ptr<scalar_t>(), v.data_ptr<scalar_t>(),
              gy.data_ptr<scalar_t>(), gk.data_ptr<scalar_t>(),
              gv.data_ptr<scalar_t>(), gw_part.data_ptr<acc_t>(),
              gu_part.data_ptr<acc_t>(), scratch.data_ptr<acc_t>(),
              chunks.data_ptr<acc_t>(), segs.data_ptr<acc_t>(),
              pins.data_ptr<acc_t>(), pin_segs.data_ptr<acc_t>());
          C10_CUDA_KERNEL_LAUNCH_CHECK();
        });
        if (S > 1) {
          cfg.each_batch_slice([&](const dim3& grid, int64_t b0) {
            BIWKV_LAUNCH(grid, cfg.block, 0, stream,
                         backward_finish_kernel<scalar_t, acc_t>)(
                B, T, C, b0, w.data_ptr<acc_t>(), k.data_ptr<scalar_t>(),
                v.data_ptr<scalar_t>(), gk.data_ptr<scalar_t>(),
                gv.data_ptr<scalar_t>(), scratch.data_ptr<acc_t>(),
                pins.data_ptr<acc_t>(), pin_segs.data_ptr<acc_t>());
            C10_CUDA_KERNEL_LAUNCH_CHECK();
          });
        }
      });
  // A fixed-order reduction over the batch and segments (torch.sum does not
  // use atomics).
  return {gw_part.sum(0), gu_part.sum(0), gk, gv};
}

}  // namespace bi_wkv
