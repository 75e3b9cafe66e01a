// Input checks shared by the operators' entries (cuda_ops/<op>/<op>.cpp),
// which run them before any kernel, on every device: the Python entry points
// give friendlier errors first, these keep the operators safe when called
// directly (torch.ops.mmvrwkv.*).
#pragma once

#include <torch/extension.h>

#include <initializer_list>

namespace mmvrwkv {

// The dtype the kernels accumulate in: float64 for float64, else float32.
inline at::ScalarType acc_type(const at::Tensor& t) {
  return t.scalar_type() == at::kDouble ? at::kDouble : at::kFloat;
}

// All tensors on the device of the first; `op` names the operator.
inline void check_one_device(const char* op,
                             std::initializer_list<const at::Tensor*> ts) {
  const auto device = (*ts.begin())->device();
  for (const auto* t : ts) {
    TORCH_CHECK(t->device() == device, op,
                ": all inputs must be on one device, got ", t->device(),
                " beside ", device);
  }
}

}  // namespace mmvrwkv
