// The Bi-WKV operators, torch.ops.mmvrwkv.bi_wkv and bi_wkv_backward: their
// schemas, the input checks, and each device's kernels registered for its
// own dispatch key (CPU; CUDA when built). The fake (meta) implementations
// and the autograd formula are registered from Python
// (mmvrwkv/ops/bi_wkv/library.py), as PyTorch's custom-operator guide
// recommends. Inputs of any layout are accepted; the kernels read contiguous
// copies.
#include "bi_wkv.h"

#include <tuple>

#include "op_checks.h"

namespace bi_wkv {
namespace {

void check_inputs(const at::Tensor& w, const at::Tensor& u, const at::Tensor& k,
                  const at::Tensor& v) {
  TORCH_CHECK(k.dim() == 3, "bi_wkv: k must be (B, T, C), got ", k.sizes());
  TORCH_CHECK(v.sizes() == k.sizes(), "bi_wkv: v ", v.sizes(),
              " must have the shape of k ", k.sizes());
  TORCH_CHECK(w.dim() == 1 && u.dim() == 1 && w.size(0) == k.size(2) &&
                  u.size(0) == k.size(2),
              "bi_wkv: w and u must be (C,) with C = ", k.size(2));
  TORCH_CHECK(k.scalar_type() == v.scalar_type(),
              "bi_wkv: k and v must have the same dtype");
  TORCH_CHECK(at::isFloatingType(k.scalar_type()),
              "bi_wkv: k and v must be floating point");
  const auto acc = mmvrwkv::acc_type(k);
  TORCH_CHECK(w.scalar_type() == acc && u.scalar_type() == acc,
              "bi_wkv: w and u must be ", acc, " for ", k.scalar_type(), " k");
  mmvrwkv::check_one_device("bi_wkv", {&w, &u, &k, &v});
  TORCH_CHECK(k.numel() > 0, "bi_wkv: empty input ", k.sizes());
}

using Forward = at::Tensor (*)(const at::Tensor&, const at::Tensor&,
                               const at::Tensor&, const at::Tensor&);
using Backward = std::vector<at::Tensor> (*)(const at::Tensor&,
                                             const at::Tensor&,
                                             const at::Tensor&,
                                             const at::Tensor&,
                                             const at::Tensor&);

// The operator on one device: checks, contiguous copies, that device's
// kernel.
template <Forward kernel>
at::Tensor forward(const at::Tensor& w, const at::Tensor& u,
                   const at::Tensor& k, const at::Tensor& v) {
  check_inputs(w, u, k, v);
  return kernel(w.contiguous(), u.contiguous(), k.contiguous(), v.contiguous());
}

template <Backward kernel>
std::tuple<at::Tensor, at::Tensor, at::Tensor, at::Tensor> backward(
    const at::Tensor& w, const at::Tensor& u, const at::Tensor& k,
    const at::Tensor& v, const at::Tensor& gy) {
  check_inputs(w, u, k, v);
  TORCH_CHECK(gy.sizes() == k.sizes() && gy.scalar_type() == k.scalar_type() &&
                  gy.device() == k.device(),
              "bi_wkv: grad_output must be a tensor like k (", k.sizes(), ", ",
              k.scalar_type(), "), got ", gy.sizes(), ", ", gy.scalar_type());
  auto g = kernel(w.contiguous(), u.contiguous(), k.contiguous(),
                  v.contiguous(), gy.contiguous());
  return {g[0], g[1], g[2], g[3]};
}

}  // namespace
}  // namespace bi_wkv

TORCH_LIBRARY_FRAGMENT(mmvrwkv, m) {
  // w, u: (C,) float32 (float64 for float64 k); k, v: (B, T, C) of one
  // floating dtype; y: (B, T, C) like k.
  m.def("bi_wkv(Tensor w, Tensor u, Tensor k, Tensor v) -> Tensor");
  // Gradients of bi_wkv: (gw, gu, gk, gv) like (w, u, k, v).
  m.def(
      "bi_wkv_backward(Tensor w, Tensor u, Tensor k, Tensor v, Tensor gy) "
      "-> (Tensor, Tensor, Tensor, Tensor)");
}

TORCH_LIBRARY_IMPL(mmvrwkv, CPU, m) {
  m.impl("bi_wkv", &bi_wkv::forward<&bi_wkv::forward_cpu>);
  m.impl("bi_wkv_backward", &bi_wkv::backward<&bi_wkv::backward_cpu>);
}

#ifdef WITH_CUDA
TORCH_LIBRARY_IMPL(mmvrwkv, CUDA, m) {
  m.impl("bi_wkv", &bi_wkv::forward<&bi_wkv::forward_cuda>);
  m.impl("bi_wkv_backward", &bi_wkv::backward<&bi_wkv::backward_cuda>);
}
#endif
