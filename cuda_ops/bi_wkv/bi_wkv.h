// Bi-WKV (VRWKV's token mixing) kernels, per device. Semantics:
// mmvrwkv/ops/bi_wkv/reference.py. The operators torch.ops.mmvrwkv.bi_wkv
// and bi_wkv_backward (bi_wkv.cpp) check the inputs and call these with
// contiguous tensors.
#pragma once

#include <torch/extension.h>

#include <vector>

namespace bi_wkv {

// w, u: (C,) in the accumulation dtype (float32, or float64 for float64 k/v).
// k, v: (B, T, C), contiguous, same dtype and device. Returns y like k.
at::Tensor forward_cpu(const at::Tensor& w, const at::Tensor& u,
                       const at::Tensor& k, const at::Tensor& v);
// gy like k. Returns {gw, gu, gk, gv}; gw/gu like w, gk/gv like k.
std::vector<at::Tensor> backward_cpu(const at::Tensor& w, const at::Tensor& u,
                                     const at::Tensor& k, const at::Tensor& v,
                                     const at::Tensor& gy);
#ifdef WITH_CUDA
at::Tensor forward_cuda(const at::Tensor& w, const at::Tensor& u,
                        const at::Tensor& k, const at::Tensor& v);
std::vector<at::Tensor> backward_cuda(const at::Tensor& w, const at::Tensor& u,
                                      const at::Tensor& k, const at::Tensor& v,
                                      const at::Tensor& gy);
#endif

}  // namespace bi_wkv
