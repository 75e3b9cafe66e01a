// Device-neutral Bi-WKV6 entry: checks the inputs, then dispatches on device.
// The Python entry (mmvrwkv/ops/bi_wkv6_op.py) gives friendlier errors first;
// these checks keep the compiled functions safe when called directly
// (torch.ops.mmvrwkv.bi_wkv6*, registered in bi_wkv_library.cpp). Inputs of
// any layout are accepted; the kernels read contiguous copies.
#include "bi_wkv6.h"

namespace bi_wkv6 {
namespace {

at::ScalarType acc_type(const at::Tensor& r) {
  return r.scalar_type() == at::kDouble ? at::kDouble : at::kFloat;
}

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
  TORCH_CHECK(u.scalar_type() == acc_type(r), "bi_wkv6: u must be ",
              acc_type(r), " for ", r.scalar_type(), " r, got ",
              u.scalar_type());
  TORCH_CHECK(k.device() == r.device() && v.device() == r.device() &&
                  w.device() == r.device() && u.device() == r.device(),
              "bi_wkv6: all inputs must be on one device");
  TORCH_CHECK(r.numel() > 0, "bi_wkv6: empty input ", r.sizes());
}

}  // namespace

at::Tensor forward(const at::Tensor& r_in, const at::Tensor& k_in,
                   const at::Tensor& v_in, const at::Tensor& w_in,
                   const at::Tensor& u_in) {
  check_inputs(r_in, k_in, v_in, w_in, u_in);
  const auto r = r_in.contiguous(), k = k_in.contiguous();
  const auto v = v_in.contiguous(), w = w_in.contiguous();
  const auto u = u_in.contiguous();
  if (r.is_cuda()) {
#ifdef WITH_CUDA
    return forward_cuda(r, k, v, w, u);
#else
    TORCH_CHECK(false, "bi_wkv6: mmvrwkv was built without CUDA support");
#endif
  }
  TORCH_CHECK(r.is_cpu(), "bi_wkv6: unsupported device ", r.device());
  return forward_cpu(r, k, v, w, u);
}

std::vector<at::Tensor> backward(const at::Tensor& r_in, const at::Tensor& k_in,
                                 const at::Tensor& v_in, const at::Tensor& w_in,
                                 const at::Tensor& u_in,
                                 const at::Tensor& gy_in) {
  check_inputs(r_in, k_in, v_in, w_in, u_in);
  TORCH_CHECK(
      gy_in.sizes() == r_in.sizes() && gy_in.scalar_type() == acc_type(r_in) &&
          gy_in.device() == r_in.device(),
      "bi_wkv6: grad_output must be a tensor like y (", r_in.sizes(), ", ",
      acc_type(r_in), "), got ", gy_in.sizes(), ", ", gy_in.scalar_type());
  const auto r = r_in.contiguous(), k = k_in.contiguous();
  const auto v = v_in.contiguous(), w = w_in.contiguous();
  const auto u = u_in.contiguous(), gy = gy_in.contiguous();
  if (r.is_cuda()) {
#ifdef WITH_CUDA
    return backward_cuda(r, k, v, w, u, gy);
#else
    TORCH_CHECK(false, "bi_wkv6: mmvrwkv was built without CUDA support");
#endif
  }
  TORCH_CHECK(r.is_cpu(), "bi_wkv6: unsupported device ", r.device());
  return backward_cpu(r, k, v, w, u, gy);
}

}  // namespace bi_wkv6
