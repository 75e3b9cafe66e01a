// Bi-WKV on the CPU: O(T) log-sum-exp scans per (batch, channel).
//
// Tasks (kLanes channels of one batch element each) run in parallel over
// batch x channel blocks; each walks the tokens once per pass, updating kLanes
// independent states per token (see bi_wkv_cpu_kernel.h). The kernels are
// compiled for the baseline instruction set here, for AVX2 + FMA in
// bi_wkv_cpu_avx2.cpp and for AVX-512 in bi_wkv_cpu_avx512.cpp; the best one
// the CPU supports runs.
#include <ATen/Dispatch.h>
#include <ATen/OpMathType.h>
#include <ATen/Parallel.h>
#include <torch/extension.h>

#include <algorithm>
#include <cstdlib>
#include <memory>
#include <string>
#include <type_traits>
#include <vector>

#include "bi_wkv.h"
#include "bi_wkv_cpu_kernel.h"
#include "cpu_isa.h"

namespace bi_wkv {

#ifdef MMVRWKV_HAVE_X86_BUILDS
#define BIWKV_DECLARE_CPU_KERNELS(isa)                                     \
  namespace isa {                                                          \
  template <typename scalar_t, typename acc_t>                             \
  void forward_block(const Block&, const acc_t*, const acc_t*,             \
                     const scalar_t*, const scalar_t*, scalar_t*, acc_t*); \
  template <typename scalar_t, typename acc_t>                             \
  void backward_block(const Block&, const acc_t*, const acc_t*,            \
                      const scalar_t*, const scalar_t*, const scalar_t*,   \
                      scalar_t*, scalar_t*, acc_t*, acc_t*, acc_t*);       \
  }
BIWKV_DECLARE_CPU_KERNELS(avx2)
BIWKV_DECLARE_CPU_KERNELS(avx512)
#endif

namespace {

template <typename scalar_t, typename acc_t>
struct Kernels {
  decltype(&generic::forward_block<scalar_t, acc_t>) forward;
  decltype(&generic::backward_block<scalar_t, acc_t>) backward;
};

template <typename scalar_t, typename acc_t>
Kernels<scalar_t, acc_t> kernels() {
#ifdef MMVRWKV_HAVE_X86_BUILDS
  switch (mmvrwkv::cpu_isa_used()) {
    case mmvrwkv::Isa::avx512:
      return {&avx512::forward_block<scalar_t, acc_t>,
              &avx512::backward_block<scalar_t, acc_t>};
    case mmvrwkv::Isa::avx2:
      return {&avx2::forward_block<scalar_t, acc_t>,
              &avx2::backward_block<scalar_t, acc_t>};
    case mmvrwkv::Isa::generic:
      break;
  }
#endif
  return {&generic::forward_block<scalar_t, acc_t>,
          &generic::backward_block<scalar_t, acc_t>};
}

// Copies channels [c0, c0 + n) of rows (b, 0..T) into a (T, kLanes) buffer,
// zero-padded, or back.
template <typename T_>
void gather(const T_* src, T_* dst, const Block& blk, int64_t n) {
  for (int64_t t = 0; t < blk.T; ++t)
    for (int64_t l = 0; l < kLanes; ++l)
      dst[t * kLanes + l] = l < n ? src[blk.at(t) + l] : T_(0);
}

template <typename T_>
void scatter(const T_* src, T_* dst, const Block& blk, int64_t n) {
  for (int64_t t = 0; t < blk.T; ++t)
    for (int64_t l = 0; l < n; ++l) dst[blk.at(t) + l] = src[t * kLanes + l];
}

// Runs fn(block, narrow, scratch) for every (batch, channel block) in
// parallel; narrow = number of real channels when below kLanes, else 0.
template <typename acc_t, typename Fn>
void for_each_block(int64_t B, int64_t T, int64_t C, int64_t scratch_size,
                    const Fn& fn) {
  const int64_t nblocks = (C + kLanes - 1) / kLanes;
  at::parallel_for(0, B * nblocks, 1, [&](int64_t begin, int64_t end) {
    // Not zeroed: the kernels write every scratch value before reading it.
    const std::unique_ptr<acc_t[]> scratch(
        new acc_t[static_cast<size_t>(scratch_size)]);
    for (int64_t i = begin; i < end; ++i) {
      const int64_t b = i / nblocks, c0 = (i % nblocks) * kLanes;
      const int64_t n = std::min(kLanes, C - c0);
      fn(Block{b, c0, T, C}, n < kLanes ? n : 0, scratch.get());
    }
  });
}

// A block narrower than kLanes (the last one when C % kLanes != 0) runs on
// zero-padded copies: w = u = k = v = 0 in the padding lanes is harmless.
template <typename scalar_t, typename acc_t>
struct Padded {
  int64_t T;
  std::vector<scalar_t> k, v, y, gy, gk, gv;
  std::vector<acc_t> w, u, gw, gu;
  explicit Padded(int64_t T_)
      : T(T_),
        k(T_ * kLanes),
        v(T_ * kLanes),
        y(T_ * kLanes),
        w(kLanes, acc_t(0)),
        u(kLanes, acc_t(0)),
        gw(kLanes),
        gu(kLanes) {}
  Block block() const { return Block{0, 0, T, kLanes}; }
};

}  // namespace

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
        const auto kern = kernels<scalar_t, acc_t>();
        for_each_block<acc_t>(
            B, T, C, forward_scratch_size(T),
            [&](const Block& blk, int64_t narrow, acc_t* scratch) {
              if (!narrow) {
                kern.forward(blk, pw + blk.c0, pu + blk.c0, pk, pv, py,
                             scratch);
                return;
              }
              Padded<scalar_t, acc_t> p(T);
              std::copy(pw + blk.c0, pw + blk.c0 + narrow, p.w.begin());
              std::copy(pu + blk.c0, pu + blk.c0 + narrow, p.u.begin());
              gather(pk, p.k.data(), blk, narrow);
              gather(pv, p.v.data(), blk, narrow);
              kern.forward(p.block(), p.w.data(), p.u.data(), p.k.data(),
                           p.v.data(), p.y.data(), scratch);
              scatter(p.y.data(), py, blk, narrow);
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
        const auto kern = kernels<scalar_t, acc_t>();
        for_each_block<acc_t>(
            B, T, C, backward_scratch_size(T),
            [&](const Block& blk, int64_t narrow, acc_t* scratch) {
              const int64_t o = blk.b * C + blk.c0;
              if (!narrow) {
                kern.backward(blk, pw + blk.c0, pu + blk.c0, pk, pv, pg, pgk,
                              pgv, pgw + o, pgu + o, scratch);
                return;
              }
              Padded<scalar_t, acc_t> p(T);
              p.gy.resize(T * kLanes), p.gk.resize(T * kLanes);
              p.gv.resize(T * kLanes);
              std::copy(pw + blk.c0, pw + blk.c0 + narrow, p.w.begin());
              std::copy(pu + blk.c0, pu + blk.c0 + narrow, p.u.begin());
              gather(pk, p.k.data(), blk, narrow);
              gather(pv, p.v.data(), blk, narrow);
              gather(pg, p.gy.data(), blk, narrow);
              kern.backward(p.block(), p.w.data(), p.u.data(), p.k.data(),
                            p.v.data(), p.gy.data(), p.gk.data(), p.gv.data(),
                            p.gw.data(), p.gu.data(), scratch);
              scatter(p.gk.data(), pgk, blk, narrow);
              scatter(p.gv.data(), pgv, blk, narrow);
              std::copy(p.gw.begin(), p.gw.begin() + narrow, pgw + o);
              std::copy(p.gu.begin(), p.gu.begin() + narrow, pgu + o);
            });
      });
  return {gw_part.sum(0), gu_part.sum(0), gk, gv};
}

}  // namespace bi_wkv
