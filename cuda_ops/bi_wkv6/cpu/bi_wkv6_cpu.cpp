// Bi-WKV6 on the CPU: per (batch, head) a forward and a reverse scan with an
// N x N state (bi_wkv6_cpu_kernel.h), in parallel over batch x heads.
//
// The kernels are compiled for the baseline instruction set here, for
// AVX2 + FMA in bi_wkv6_cpu_avx2.cpp and for AVX-512 in
// bi_wkv6_cpu_avx512.cpp; the best one this CPU runs is used (mmvrwkv::cpu_isa,
// which MMVRWKV_CPU_ISA=generic|avx2 caps). The decays exp(-exp(w)) and the
// gradient factor -exp(w - exp(w)) are formed by ATen's vectorised exp before
// the scans: one exp per element instead of one per element and pass.
#include <ATen/Dispatch.h>
#include <ATen/Parallel.h>
#include <torch/extension.h>

#include <algorithm>
#include <memory>
#include <string>
#include <type_traits>
#include <vector>

#include "bi_wkv6.h"
#include "bi_wkv6_cpu_kernel.h"
#include "cpu_isa.h"

namespace bi_wkv6 {

#ifdef MMVRWKV_HAVE_X86_BUILDS
#define BIWKV6_DECLARE_CPU_KERNELS(isa)                                \
  namespace isa {                                                      \
  template <typename scalar_t, typename acc_t, int64_t kN>             \
  void forward_head(const HeadArgs<scalar_t, acc_t>&, acc_t*, acc_t*); \
  template <typename scalar_t, typename acc_t, int64_t kN>             \
  void backward_head(const HeadArgs<scalar_t, acc_t>&,                 \
                     const HeadGrads<scalar_t, acc_t>&, acc_t*);       \
  }
BIWKV6_DECLARE_CPU_KERNELS(avx2)
BIWKV6_DECLARE_CPU_KERNELS(avx512)
#endif

namespace {

template <typename scalar_t, typename acc_t>
struct Kernels {
  void (*forward)(const HeadArgs<scalar_t, acc_t>&, acc_t*, acc_t*);
  void (*backward)(const HeadArgs<scalar_t, acc_t>&,
                   const HeadGrads<scalar_t, acc_t>&, acc_t*);
};

// The build for this CPU, specialised for VRWKV6's head size 64.
template <typename scalar_t, typename acc_t>
Kernels<scalar_t, acc_t> kernels(int64_t N) {
  const bool n64 = N == 64;
#ifdef MMVRWKV_HAVE_X86_BUILDS
  const mmvrwkv::Isa isa = mmvrwkv::cpu_isa_used();
  if (isa == mmvrwkv::Isa::avx512) {
    if (n64)
      return {&avx512::forward_head<scalar_t, acc_t, 64>,
              &avx512::backward_head<scalar_t, acc_t, 64>};
    return {&avx512::forward_head<scalar_t, acc_t, 0>,
            &avx512::backward_head<scalar_t, acc_t, 0>};
  }
  if (isa == mmvrwkv::Isa::avx2) {
    if (n64)
      return {&avx2::forward_head<scalar_t, acc_t, 64>,
              &avx2::backward_head<scalar_t, acc_t, 64>};
    return {&avx2::forward_head<scalar_t, acc_t, 0>,
            &avx2::backward_head<scalar_t, acc_t, 0>};
  }
#endif
  if (n64)
    return {&generic::forward_head<scalar_t, acc_t, 64>,
            &generic::backward_head<scalar_t, acc_t, 64>};
  return {&generic::forward_head<scalar_t, acc_t, 0>,
          &generic::backward_head<scalar_t, acc_t, 0>};
}

// Runs fn(b, h, scratch) for every (batch, head) in parallel, with a scratch
// buffer of `scratch_size` accumulators per worker (not zeroed: the kernels
// write every value before reading it).
template <typename acc_t, typename Fn>
void for_each_head(int64_t B, int64_t H, int64_t scratch_size, const Fn& fn) {
  at::parallel_for(0, B * H, 1, [&](int64_t begin, int64_t end) {
    const std::unique_ptr<acc_t[]> scratch(
        new acc_t[static_cast<size_t>(scratch_size)]);
    for (int64_t i = begin; i < end; ++i) fn(i / H, i % H, scratch.get());
  });
}

at::ScalarType acc_type(const at::Tensor& r) {
  return r.scalar_type() == at::kDouble ? at::kDouble : at::kFloat;
}

}  // namespace

at::Tensor forward_cpu(const at::Tensor& r, const at::Tensor& k,
                       const at::Tensor& v, const at::Tensor& w,
                       const at::Tensor& u) {
  const int64_t B = r.size(0), T = r.size(1), C = r.size(2);
  const int64_t H = u.size(0), N = u.size(1);
  const auto acc = acc_type(r);
  const auto decay = at::exp(-at::exp(w.to(acc))).contiguous();
  auto y = at::empty({B, T, C}, r.options().dtype(acc));
  AT_DISPATCH_FLOATING_TYPES_AND2(
      at::kHalf, at::kBFloat16, r.scalar_type(), "bi_wkv6_forward_cpu", [&] {
        using acc_t =
            std::conditional_t<std::is_same_v<scalar_t, double>, double, float>;
        const auto kern = kernels<scalar_t, acc_t>(N);
        const scalar_t *pr = r.data_ptr<scalar_t>(),
                       *pk = k.data_ptr<scalar_t>(),
                       *pv = v.data_ptr<scalar_t>();
        const acc_t* pd = decay.data_ptr<acc_t>();
        const acc_t* pu = u.data_ptr<acc_t>();
        acc_t* py = y.data_ptr<acc_t>();
        for_each_head<acc_t>(B, H, forward_scratch_size(N),
                             [&](int64_t b, int64_t h, acc_t* scratch) {
                               const int64_t o = b * T * C + h * N;
                               const HeadArgs<scalar_t, acc_t> a{
                                   T,      C,      N,      pr + o,
                                   pk + o, pv + o, pd + o, pu + h * N};
                               kern.forward(a, py + o, scratch);
                             });
      });
  return y;
}

std::vector<at::Tensor> backward_cpu(const at::Tensor& r, const at::Tensor& k,
                                     const at::Tensor& v, const at::Tensor& w,
                                     const at::Tensor& u,
                                     const at::Tensor& gy) {
  const int64_t B = r.size(0), T = r.size(1), C = r.size(2);
  const int64_t H = u.size(0), N = u.size(1);
  const auto acc = acc_type(r);
  const auto wa = w.to(acc);
  const auto ew = at::exp(wa);
  const auto decay = at::exp(-ew).contiguous();
  // d(decay)/dw = -exp(w) exp(-exp(w)), without overflow for large w.
  const auto coef = at::exp(wa - ew).neg_().contiguous();
  auto gr = at::empty_like(r), gk = at::empty_like(k), gv = at::empty_like(v);
  auto gw = at::empty_like(w);
  // One partial gu per (batch, head), summed over the batch below in a fixed
  // order: deterministic whatever the threads.
  auto gu_part = at::empty({B, H, N}, u.options());
  auto gu = at::empty_like(u);
  AT_DISPATCH_FLOATING_TYPES_AND2(
      at::kHalf, at::kBFloat16, r.scalar_type(), "bi_wkv6_backward_cpu", [&] {
        using acc_t =
            std::conditional_t<std::is_same_v<scalar_t, double>, double, float>;
        const auto kern = kernels<scalar_t, acc_t>(N);
        const scalar_t *pr = r.data_ptr<scalar_t>(),
                       *pk = k.data_ptr<scalar_t>(),
                       *pv = v.data_ptr<scalar_t>();
        const acc_t* pd = decay.data_ptr<acc_t>();
        const acc_t* pc = coef.data_ptr<acc_t>();
        const acc_t* pu = u.data_ptr<acc_t>();
        const acc_t* pg = gy.data_ptr<acc_t>();
        scalar_t *pgr = gr.data_ptr<scalar_t>(), *pgk = gk.data_ptr<scalar_t>(),
                 *pgv = gv.data_ptr<scalar_t>(), *pgw = gw.data_ptr<scalar_t>();
        acc_t* pgu = gu_part.data_ptr<acc_t>();
        for_each_head<acc_t>(
            B, H, backward_scratch_size(T, N),
            [&](int64_t b, int64_t h, acc_t* scratch) {
              const int64_t o = b * T * C + h * N;
              const HeadArgs<scalar_t, acc_t> a{
                  T, C, N, pr + o, pk + o, pv + o, pd + o, pu + h * N};
              const HeadGrads<scalar_t, acc_t> g{pg + o,
                                                 pc + o,
                                                 pgr + o,
                                                 pgk + o,
                                                 pgv + o,
                                                 pgw + o,
                                                 pgu + (b * H + h) * N};
              kern.backward(a, g, scratch);
            });
        acc_t* out = gu.data_ptr<acc_t>();
        std::copy(pgu, pgu + H * N, out);
        for (int64_t b = 1; b < B; ++b)
          for (int64_t c = 0; c < H * N; ++c) out[c] += pgu[b * H * N + c];
      });
  return {gr, gk, gv, gw, gu};
}

}  // namespace bi_wkv6
