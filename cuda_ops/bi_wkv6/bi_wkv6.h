// Bi-WKV6 (the token mixing of VRWKV6) kernels, per device; the operators
// torch.ops.mmvrwkv.bi_wkv6 and bi_wkv6_backward (bi_wkv6.cpp) check the
// inputs and call these with contiguous tensors. Semantics:
// mmvrwkv/ops/bi_wkv6/reference.py, the
// official OpenGVLab/Vision-RWKV cuda_v6 kernel (a forward RWKV-6 scan plus a
// reverse scan per head; the current token counted once, weighted by u).
#pragma once

#include <torch/extension.h>

#include <vector>

namespace bi_wkv6 {

// r, k, v, w: (B, T, C) contiguous, one floating dtype (float32, float64,
// float16 or bfloat16). w is the raw decay parameter: decay = exp(-exp(w)),
// per token and channel.
// u: (H, N) contiguous, float32 (float64 for float64 r), H * N = C
// (VRWKV6: N = 64).
// y: (B, T, C) float32 (float64 for float64 input) -- the official kernel
// writes float32.
at::Tensor forward_cpu(const at::Tensor& r, const at::Tensor& k,
                       const at::Tensor& v, const at::Tensor& w,
                       const at::Tensor& u);
// gy: (B, T, C) like y. Returns {gr, gk, gv, gw, gu}: gr, gk, gv, gw in r's
// dtype, gu like u. Deterministic: no floating-point atomics; gu is reduced
// in a fixed order.
std::vector<at::Tensor> backward_cpu(const at::Tensor& r, const at::Tensor& k,
                                     const at::Tensor& v, const at::Tensor& w,
                                     const at::Tensor& u, const at::Tensor& gy);
#ifdef WITH_CUDA
at::Tensor forward_cuda(const at::Tensor& r, const at::Tensor& k,
                        const at::Tensor& v, const at::Tensor& w,
                        const at::Tensor& u);
std::vector<at::Tensor> backward_cuda(const at::Tensor& r, const at::Tensor& k,
                                      const at::Tensor& v, const at::Tensor& w,
                                      const at::Tensor& u,
                                      const at::Tensor& gy);
#endif

}  // namespace bi_wkv6
