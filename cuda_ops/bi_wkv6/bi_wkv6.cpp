// The Bi-WKV6 operators, torch.ops.mmvrwkv.bi_wkv6 and bi_wkv6_backward:
// their schemas, the input checks, and each device's kernels registered for
// its own dispatch key (CPU; CUDA when built). The fake implementations and
// the autograd formula are registered from Python
// (mmvrwkv/ops/bi_wkv6/library.py). Inputs of any layout are accepted; the
// kernels read contiguous copies.
#include "bi_wkv6.h"

#include <tuple>

#include "op_checks.h"

namespace bi_wkv6 {
namespace {

void check_inputs(const at::Tensor& r, const at::Tensor& k, const at::Tensor& v,
                  const at::Tensor& w, const at::Tensor& u) {
  TORCH_CHECK(r.dim() == 3, "bi_wkv6: r must be (B, T, C), got ", r.sizes());
  TORCH_CHECK(k.sizes() == r.sizes() && v.sizes() == r.sizes() &&
                  w.sizes() == r.sizes(),
              "bi_wkv6: r, k, v and w must all be (B, T, C), got ", r.sizes(),
              ", ", k.sizes(), ", ", v.sizes(), ", ", w.sizes());
  TORCH_CHECK(at::isFloatingType(r.scalar_type()),
              "bi_wkv6: r must be floating point, got ", r.scalar_type());
  TORCH_CHECK(k.scalar_type() == r.scalar_type() &&
                  v.scalar_type() == r.scalar_type() &&
                  w.scalar_type() == r.scalar_type(),
              "bi_wkv6: r, k, v and w must have one dtype, got ",
              r.scalar_type(), ", ", k.scalar_type(), ", ", v.scalar_type(),
              ", ", w.scalar_type());
  TORCH_CHECK(u.dim() == 2 && u.size(0) * u.size(1) == r.size(2),
              "bi_wkv6: u must be (H, N) with H * N = C = ", r.size(2),
              ", got ", u.sizes());
  const auto acc = mmvrwkv::acc_type(r);
  TORCH_CHECK(u.scalar_type() == acc, "bi_wkv6: u must be ", acc, " for ",
              r.scalar_type(), " r, got ", u.scalar_type());
  mmvrwkv::check_one_device("bi_wkv6", {&r, &k, &v, &w, &u});
  TORCH_CHECK(r.numel() > 0, "bi_wkv6: empty input ", r.sizes());
}

using Forward = at::Tensor (*)(const at::Tensor&, const at::Tensor&,
                               const at::Tensor&, const at::Tensor&,
                               const at::Tensor&);
using Backward = std::vector<at::Tensor> (*)(
    const at::Tensor&, const at::Tensor&, const at::Tensor&, const at::Tensor&,
    const at::Tensor&, const at::Tensor&);

// The operator on one device: checks, contiguous copies, that device's
// kernel.
template <Forward kernel>
at::Tensor forward(const at::Tensor& r, const at::Tensor& k,
                   const at::Tensor& v, const at::Tensor& w,
                   const at::Tensor& u) {
  check_inputs(r, k, v, w, u);
  return kernel(r.contiguous(), k.contiguous(), v.contiguous(), w.contiguous(),
                u.contiguous());
}

template <Backward kernel>
std::tuple<at::Tensor, at::Tensor, at::Tensor, at::Tensor, at::Tensor> backward(
    const at::Tensor& r, const at::Tensor& k, const at::Tensor& v,
    const at::Tensor& w, const at::Tensor& u, const at::Tensor& gy) {
  check_inputs(r, k, v, w, u);
  const auto acc = mmvrwkv::acc_type(r);
  TORCH_CHECK(gy.sizes() == r.sizes() && gy.scalar_type() == acc &&
                  gy.device() == r.device(),
              "bi_wkv6: grad_output must be a tensor like y (", r.sizes(), ", ",
              acc, "), got ", gy.sizes(), ", ", gy.scalar_type());
  auto g = kernel(r.contiguous(), k.contiguous(), v.contiguous(),
                  w.contiguous(), u.contiguous(), gy.contiguous());
  return {g[0], g[1], g[2], g[3], g[4]};
}

}  // namespace
}  // namespace bi_wkv6

TORCH_LIBRARY_FRAGMENT(mmvrwkv, m) {
  // r, k, v, w: (B, T, C) of one floating dtype (w: decay exp(-exp(w)));
  // u: (H, N), H * N = C, float32 (float64 for float64 r); y: (B, T, C)
  // float32 (float64 for float64 r), as the official kernel writes.
  m.def("bi_wkv6(Tensor r, Tensor k, Tensor v, Tensor w, Tensor u) -> Tensor");
  // Gradients of bi_wkv6 for gy like y: (gr, gk, gv, gw) like r, gu like u.
  m.def(
      "bi_wkv6_backward(Tensor r, Tensor k, Tensor v, Tensor w, Tensor u, "
      "Tensor gy) -> (Tensor, Tensor, Tensor, Tensor, Tensor)");
}

TORCH_LIBRARY_IMPL(mmvrwkv, CPU, m) {
  m.impl("bi_wkv6", &bi_wkv6::forward<&bi_wkv6::forward_cpu>);
  m.impl("bi_wkv6_backward", &bi_wkv6::backward<&bi_wkv6::backward_cpu>);
}

#ifdef WITH_CUDA
TORCH_LIBRARY_IMPL(mmvrwkv, CUDA, m) {
  m.impl("bi_wkv6", &bi_wkv6::forward<&bi_wkv6::forward_cuda>);
  m.impl("bi_wkv6_backward", &bi_wkv6::backward<&bi_wkv6::backward_cuda>);
}
#endif
