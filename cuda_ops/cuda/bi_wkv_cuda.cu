// Bi-WKV on NVIDIA GPUs.
//
// One thread block owns 32 neighbouring channels (threadIdx.x, so loads of
// (b, t, c..c+31) are coalesced) of one batch element, for all T tokens. The
// tokens are split into blockDim.y chunks, one per thread row; each thread scans
// its chunk, the chunk summaries are combined through shared memory (O(chunks)
// per thread), and each thread re-scans its chunk with the exact incoming state.
// Work per channel is O(T), any B/T/C is accepted, no T_MAX exists, and dw/du
// are reduced in a fixed order (no float atomics): results are deterministic.
// The per-token arithmetic is the same as the CPU kernel's (bi_wkv_scan.h).
#include <ATen/Dispatch.h>
#include <ATen/OpMathType.h>
#include <c10/cuda/CUDAException.h>
#include <c10/cuda/CUDAGuard.h>
#include <c10/cuda/CUDAStream.h>
#include <torch/extension.h>

#include "bi_wkv.h"
#include "bi_wkv_scan.h"
#include "cuda_launch.h"

namespace bi_wkv {
namespace {

constexpr int kWarp = 32;
constexpr int kMaxChunks = 16;
// The largest block launch_config makes (kWarp x kMaxChunks threads).
constexpr int kMaxThreads = kWarp * kMaxChunks;

struct Layout {
  int64_t T, C, plane;  // plane = B * T * C, the size of one scratch plane
  int c, b, j, nc;      // channel, batch, chunk index, number of chunks
  int64_t t0, t1;       // this thread's tokens
  bool active;
  __device__ Layout(int64_t B, int64_t T_, int64_t C_) : T(T_), C(C_) {
    plane = B * T * C;
    c = blockIdx.x * kWarp + threadIdx.x;
    b = blockIdx.y;
    j = threadIdx.y;
    nc = blockDim.y;
    active = c < C;
    t0 = min(chunk_len() * j, T);
    t1 = min(t0 + chunk_len(), T);
  }
  __device__ int64_t chunk_len() const { return (T + nc - 1) / nc; }
  __device__ int64_t len_of(int q) const {
    const int64_t s = min(chunk_len() * q, T);
    return min(s + chunk_len(), T) - s;
  }
  __device__ int64_t at(int64_t t) const { return (b * T + t) * C + c; }
  // Index of this thread's slot in a [fields][nc][32] shared array.
  __device__ int sh(int field, int q) const {
    return (field * nc + q) * kWarp + threadIdx.x;
  }
};

template <typename acc_t>
__device__ void store(acc_t* sh, const Layout& L, int f, const Sum<acc_t>& s) {
  sh[L.sh(f, L.j)] = s.num, sh[L.sh(f + 1, L.j)] = s.den;
  sh[L.sh(f + 2, L.j)] = s.m;
}

template <typename acc_t>
__device__ Sum<acc_t> load(const acc_t* sh, const Layout& L, int f, int q) {
  return {sh[L.sh(f, q)], sh[L.sh(f + 1, q)], sh[L.sh(f + 2, q)]};
}

template <typename acc_t>
__device__ void store(acc_t* sh, const Layout& L, int f,
                      const Moments<acc_t>& s) {
  sh[L.sh(f, L.j)] = s.num, sh[L.sh(f + 1, L.j)] = s.den;
  sh[L.sh(f + 2, L.j)] = s.qnum, sh[L.sh(f + 3, L.j)] = s.qden;
  sh[L.sh(f + 4, L.j)] = s.m;
}

template <typename acc_t>
__device__ Moments<acc_t> load_moments(const acc_t* sh, const Layout& L, int f,
                                       int q) {
  return {sh[L.sh(f, q)], sh[L.sh(f + 1, q)], sh[L.sh(f + 2, q)],
          sh[L.sh(f + 3, q)], sh[L.sh(f + 4, q)]};
}

// States entering this thread's chunk from the left (tokens before t0) and
// from the right (tokens from t1 on), built from the chunk summaries stored in
// fields [fl, fl+n) and [fr, fr+n) of shared memory.
template <typename State, typename acc_t, typename Load>
__device__ void incoming(const Layout& L, acc_t w, const Load& load_q, int fl,
                         int fr, State& left, State& right) {
  for (int q = 0; q < L.j; ++q) {
    decay(left, acc_t(L.len_of(q)));
    merge(left, load_q(fl, q), w);
  }
  for (int q = L.nc - 1; q > L.j; --q) {
    decay(right, acc_t(L.len_of(q)));
    merge(right, load_q(fr, q), w);
  }
}

template <typename scalar_t, typename acc_t>
__global__ void __launch_bounds__(kMaxThreads)
    forward_kernel(int64_t B, int64_t T, int64_t C,
                   const acc_t* __restrict__ w_, const acc_t* __restrict__ u_,
                   const scalar_t* __restrict__ k,
                   const scalar_t* __restrict__ v, scalar_t* __restrict__ y,
                   acc_t* __restrict__ scratch) {
  BIWKV_DYNAMIC_SHARED(unsigned char, smem_raw);
  acc_t* sh = reinterpret_cast<acc_t*>(smem_raw);
  const Layout L(B, T, C);
  const acc_t w = L.active ? w_[L.c] : acc_t(0);
  const acc_t u = L.active ? u_[L.c] : acc_t(0);

  // 1. Chunk summaries: left (decayed to the chunk end), right (to its start).
  Sum<acc_t> sl = empty_sum<acc_t>(), sr = empty_sum<acc_t>();
  if (L.active) {
    for (int64_t t = L.t0; t < L.t1; ++t) {
      const acc_t kk = k[L.at(t)], vv = v[L.at(t)];
      step(sl, w, kk, vv);
      add(sr, w, kk, acc_t(t - L.t0), vv, acc_t(1));
    }
  }
  // Stored with one float exponent each (fold): the layout stays 3 fields.
  store(sh, L, 0, fold(sl, w));
  store(sh, L, 3, fold(sr, w));
  __syncthreads();
  if (!L.active) return;  // no __syncthreads() below

  // 2. Exact states entering the chunk.
  Sum<acc_t> left = empty_sum<acc_t>(), right = empty_sum<acc_t>();
  incoming(L, w, [&](int f, int q) { return load(sh, L, f, q); }, 0, 3, left,
           right);

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

// See backward_block in cpu/bi_wkv_cpu.cpp for the formulas; the scratch
// planes play the same roles (0: a, 1: -m, 2: y, 3: gv, 4: gk after pass 2).
template <typename scalar_t, typename acc_t>
__global__ void __launch_bounds__(kMaxThreads) backward_kernel(
    int64_t B, int64_t T, int64_t C, const acc_t* __restrict__ w_,
    const acc_t* __restrict__ u_, const scalar_t* __restrict__ k,
    const scalar_t* __restrict__ v, const scalar_t* __restrict__ gy,
    scalar_t* __restrict__ gk, scalar_t* __restrict__ gv,
    acc_t* __restrict__ gw_part, acc_t* __restrict__ gu_part,
    acc_t* __restrict__ scratch) {
  BIWKV_DYNAMIC_SHARED(unsigned char, smem_raw);
  acc_t* sh = reinterpret_cast<acc_t*>(smem_raw);
  const Layout L(B, T, C);
  const acc_t w = L.active ? w_[L.c] : acc_t(0);
  const acc_t u = L.active ? u_[L.c] : acc_t(0);
  acc_t* s0 = scratch;
  acc_t* s1 = scratch + L.plane;
  acc_t* s2 = scratch + 2 * L.plane;
  acc_t* s3 = scratch + 3 * L.plane;
  acc_t* s4 = scratch + 4 * L.plane;

  // 1-2. Chunk summaries with moments, then the incoming states.
  Moments<acc_t> ml = empty_moments<acc_t>(), mr = empty_moments<acc_t>();
  if (L.active) {
    for (int64_t t = L.t0; t < L.t1; ++t) {
      const acc_t kk = k[L.at(t)], vv = v[L.at(t)];
      const acc_t dist = acc_t(t - L.t0);
      step(ml, w, kk, vv);
      add(mr, w, kk, dist, vv, dist);
    }
  }
  store(sh, L, 0, fold(ml, w));
  store(sh, L, 5, fold(mr, w));
  __syncthreads();
  Moments<acc_t> left = empty_moments<acc_t>(), right = empty_moments<acc_t>();
  if (L.active) {
    incoming(L, w, [&](int f, int q) { return load_moments(sh, L, f, q); }, 0,
             5, left, right);
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
      kahan_add(gw_acc, cgw, -a * (c.el * (lq_num - c.y * lq_den) +
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
  sh[L.sh(0, L.j)] = gw_acc - cgw;
  sh[L.sh(1, L.j)] = gu_acc - cgu;
  store(sh, L, 2, fold(pl, w));
  store(sh, L, 5, fold(pr, w));
  __syncthreads();
  if (!L.active) return;  // no __syncthreads() below
  if (L.j == 0) {
    acc_t sw = 0, su = 0;
    for (int q = 0; q < L.nc; ++q) sw += sh[L.sh(0, q)], su += sh[L.sh(1, q)];
    gw_part[L.b * C + L.c] = sw;
    gu_part[L.b * C + L.c] = su;
  }
  Sum<acc_t> pin_l = empty_sum<acc_t>(), pin_r = empty_sum<acc_t>();
  incoming(L, w, [&](int f, int q) { return load(sh, L, f, q); }, 2, 5, pin_l,
           pin_r);

  // 4. Sums over t > j, then t < j, of e^{-(|t-j|-1) w} a_t (y_t, 1).
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

struct Launch {
  dim3 grid, block;
};

Launch launch_config(int64_t B, int64_t T, int64_t C) {
  TORCH_CHECK(B <= 65535, "bi_wkv (CUDA): batch size ", B,
              " exceeds 65535; split the batch");
  // Chunks of at least 16 tokens, at most kMaxChunks per channel.
  const int64_t nc = std::max<int64_t>(1, std::min<int64_t>(kMaxChunks, T / 16));
  return {dim3(static_cast<unsigned>((C + kWarp - 1) / kWarp),
               static_cast<unsigned>(B)),
          dim3(kWarp, static_cast<unsigned>(nc))};
}

}  // namespace

at::Tensor forward_cuda(const at::Tensor& w, const at::Tensor& u,
                        const at::Tensor& k, const at::Tensor& v) {
  const c10::cuda::CUDAGuard guard(k.device());
  const int64_t B = k.size(0), T = k.size(1), C = k.size(2);
  auto y = at::empty_like(k);
  auto scratch = at::empty({3, B, T, C}, w.options());
  const Launch cfg = launch_config(B, T, C);
  AT_DISPATCH_FLOATING_TYPES_AND2(
      at::kHalf, at::kBFloat16, k.scalar_type(), "bi_wkv_forward_cuda", [&] {
        using acc_t = at::opmath_type<scalar_t>;
        const size_t smem = 6 * cfg.block.y * kWarp * sizeof(acc_t);
        BIWKV_LAUNCH(cfg.grid, cfg.block, smem,
                     c10::cuda::getCurrentCUDAStream(),
                     forward_kernel<scalar_t, acc_t>)(
                B, T, C, w.data_ptr<acc_t>(), u.data_ptr<acc_t>(),
                k.data_ptr<scalar_t>(), v.data_ptr<scalar_t>(),
                y.data_ptr<scalar_t>(), scratch.data_ptr<acc_t>());
      });
  C10_CUDA_KERNEL_LAUNCH_CHECK();
  return y;
}

std::vector<at::Tensor> backward_cuda(const at::Tensor& w, const at::Tensor& u,
                                      const at::Tensor& k, const at::Tensor& v,
                                      const at::Tensor& gy) {
  const c10::cuda::CUDAGuard guard(k.device());
  const int64_t B = k.size(0), T = k.size(1), C = k.size(2);
  auto gk = at::empty_like(k);
  auto gv = at::empty_like(v);
  auto gw_part = at::empty({B, C}, w.options());
  auto gu_part = at::empty({B, C}, u.options());
  auto scratch = at::empty({5, B, T, C}, w.options());
  const Launch cfg = launch_config(B, T, C);
  AT_DISPATCH_FLOATING_TYPES_AND2(
      at::kHalf, at::kBFloat16, k.scalar_type(), "bi_wkv_backward_cuda", [&] {
        using acc_t = at::opmath_type<scalar_t>;
        const size_t smem = 10 * cfg.block.y * kWarp * sizeof(acc_t);
        BIWKV_LAUNCH(cfg.grid, cfg.block, smem,
                     c10::cuda::getCurrentCUDAStream(),
                     backward_kernel<scalar_t, acc_t>)(
                B, T, C, w.data_ptr<acc_t>(), u.data_ptr<acc_t>(),
                k.data_ptr<scalar_t>(), v.data_ptr<scalar_t>(),
                gy.data_ptr<scalar_t>(), gk.data_ptr<scalar_t>(),
                gv.data_ptr<scalar_t>(), gw_part.data_ptr<acc_t>(),
                gu_part.data_ptr<acc_t>(), scratch.data_ptr<acc_t>());
      });
  C10_CUDA_KERNEL_LAUNCH_CHECK();
  // A fixed-order reduction over the batch (torch.sum does not use atomics).
  return {gw_part.sum(0), gu_part.sum(0), gk, gv};
}

}  // namespace bi_wkv
