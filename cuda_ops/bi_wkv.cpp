// Device-neutral Bi-WKV entry: checks the inputs, then dispatches on device.
// The Python entry (mmvrwkv/ops/bi_wkv_op.py) gives friendlier errors first;
// these checks keep the compiled functions safe when called directly
// (torch.ops.mmvrwkv.*, registered in bi_wkv_library.cpp). Inputs of any
// layout are accepted; the kernels read contiguous copies.
#include "bi_wkv.h"

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
  const auto acc = k.scalar_type() == at::kDouble ? at::kDouble : at::kFloat;
  TORCH_CHECK(w.scalar_type() == acc && u.scalar_type() == acc,
              "bi_wkv: w and u must be ", acc, " for ", k.scalar_type(), " k");
  TORCH_CHECK(w.device() == k.device() && u.device() == k.device() &&
                  v.device() == k.device(),
              "bi_wkv: all inputs must be on one device");
  TORCH_CHECK(k.numel() > 0, "bi_wkv: empty input ", k.sizes());
}

}  // namespace

bool has_cuda() {
#ifdef WITH_CUDA
  return true;
#else
  return false;
#endif
}

at::Tensor forward(const at::Tensor& w_in, const at::Tensor& u_in,
                   const at::Tensor& k_in, const at::Tensor& v_in) {
  check_inputs(w_in, u_in, k_in, v_in);
  const auto w = w_in.contiguous(), u = u_in.contiguous();
  const auto k = k_in.contiguous(), v = v_in.contiguous();
  if (k.is_cuda()) {
#ifdef WITH_CUDA
    return forward_cuda(w, u, k, v);
#else
    TORCH_CHECK(false, "bi_wkv: mmvrwkv was built without CUDA support");
#endif
  }
  TORCH_CHECK(k.is_cpu(), "bi_wkv: unsupported device ", k.device());
  return forward_cpu(w, u, k, v);
}

std::vector<at::Tensor> backward(const at::Tensor& w_in, const at::Tensor& u_in,
                                 const at::Tensor& k_in, const at::Tensor& v_in,
                                 const at::Tensor& gy_in) {
  check_inputs(w_in, u_in, k_in, v_in);
  TORCH_CHECK(gy_in.sizes() == k_in.sizes() &&
                  gy_in.scalar_type() == k_in.scalar_type() &&
                  gy_in.device() == k_in.device(),
              "bi_wkv: grad_output must be a tensor like k (", k_in.sizes(),
              ", ", k_in.scalar_type(), "), got ", gy_in.sizes(), ", ",
              gy_in.scalar_type());
  const auto w = w_in.contiguous(), u = u_in.contiguous();
  const auto k = k_in.contiguous(), v = v_in.contiguous();
  const auto gy = gy_in.contiguous();
  if (k.is_cuda()) {
#ifdef WITH_CUDA
    return backward_cuda(w, u, k, v, gy);
#else
    TORCH_CHECK(false, "bi_wkv: mmvrwkv was built without CUDA support");
#endif
  }
  TORCH_CHECK(k.is_cpu(), "bi_wkv: unsupported device ", k.device());
  return backward_cpu(w, u, k, v, gy);
}

}  // namespace bi_wkv
