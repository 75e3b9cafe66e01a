// Bi-WKV entry points: device-neutral functions and per-device implementations.
#pragma once

#include <torch/extension.h>

#include <string>
#include <vector>

namespace bi_wkv {

// w, u: (C,) in the accumulation dtype (float32, or float64 for float64 k/v).
// k, v: (B, T, C), contiguous, same dtype and device. Returns y like k.
at::Tensor forward(const at::Tensor& w, const at::Tensor& u,
                   const at::Tensor& k, const at::Tensor& v);
// Returns {gw, gu, gk, gv}; gw/gu like w, gk/gv like k.
std::vector<at::Tensor> backward(const at::Tensor& w, const at::Tensor& u,
                                 const at::Tensor& k, const at::Tensor& v,
                                 const at::Tensor& gy);
bool has_cuda();
// Instruction set of the CPU kernels in use: "avx512", "avx2" or "generic".
std::string cpu_isa();
// Number of threads a parallel CPU kernel actually runs on (1 if the
// extension was built without OpenMP, whatever torch.get_num_threads() says).
int64_t cpu_threads();

at::Tensor forward_cpu(const at::Tensor& w, const at::Tensor& u,
                       const at::Tensor& k, const at::Tensor& v);
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
