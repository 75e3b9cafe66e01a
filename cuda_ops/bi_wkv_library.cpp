// Registers Bi-WKV with PyTorch's dispatcher as torch.ops.mmvrwkv.bi_wkv and
// torch.ops.mmvrwkv.bi_wkv_backward, and Bi-WKV6 (VRWKV6) as
// torch.ops.mmvrwkv.bi_wkv6 and torch.ops.mmvrwkv.bi_wkv6_backward, with CPU
// and (when built) CUDA kernels.
// The fake (meta) implementations and the autograd formula are registered
// from Python (mmvrwkv/ops/bi_wkv_op.py), as PyTorch's custom-operator guide
// recommends.
#include "bi_wkv.h"
#include "bi_wkv6.h"

namespace bi_wkv {
namespace {

std::tuple<at::Tensor, at::Tensor, at::Tensor, at::Tensor> backward_op(
    const at::Tensor& w, const at::Tensor& u, const at::Tensor& k,
    const at::Tensor& v, const at::Tensor& gy) {
  auto g = backward(w, u, k, v, gy);
  return {g[0], g[1], g[2], g[3]};
}

}  // namespace
}  // namespace bi_wkv

namespace bi_wkv6 {
namespace {

std::tuple<at::Tensor, at::Tensor, at::Tensor, at::Tensor, at::Tensor>
backward_op(const at::Tensor& r, const at::Tensor& k, const at::Tensor& v,
            const at::Tensor& w, const at::Tensor& u, const at::Tensor& gy) {
  auto g = backward(r, k, v, w, u, gy);
  return {g[0], g[1], g[2], g[3], g[4]};
}

}  // namespace
}  // namespace bi_wkv6

TORCH_LIBRARY(mmvrwkv, m) {
  // w, u: (C,) float32 (float64 for float64 k); k, v: (B, T, C) of one
  // floating dtype; y: (B, T, C) like k.
  m.def("bi_wkv(Tensor w, Tensor u, Tensor k, Tensor v) -> Tensor");
  // Gradients of bi_wkv: (gw, gu, gk, gv) like (w, u, k, v).
  m.def(
      "bi_wkv_backward(Tensor w, Tensor u, Tensor k, Tensor v, Tensor gy) "
      "-> (Tensor, Tensor, Tensor, Tensor)");
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
  m.impl("bi_wkv", &bi_wkv::forward);
  m.impl("bi_wkv_backward", &bi_wkv::backward_op);
  m.impl("bi_wkv6", &bi_wkv6::forward);
  m.impl("bi_wkv6_backward", &bi_wkv6::backward_op);
}

#ifdef WITH_CUDA
TORCH_LIBRARY_IMPL(mmvrwkv, CUDA, m) {
  m.impl("bi_wkv", &bi_wkv::forward);
  m.impl("bi_wkv_backward", &bi_wkv::backward_op);
  m.impl("bi_wkv6", &bi_wkv6::forward);
  m.impl("bi_wkv6_backward", &bi_wkv6::backward_op);
}
#endif
