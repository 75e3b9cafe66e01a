// cuda_emu shim of c10/cuda/CUDAGuard.h: the emulated kernels take CPU
// tensors, so a guard only checks that.
#pragma once

#include <c10/core/Device.h>
#include <c10/util/Exception.h>

#include <optional>

#include "cuda_emu.h"

namespace c10 {
namespace cuda {

struct CUDAGuard {
  explicit CUDAGuard(c10::Device device) {
    TORCH_CHECK(device.is_cpu(),
                "cuda_emu: the emulated CUDA kernels take "
                "CPU tensors, got a tensor on ",
                device);
  }
  explicit CUDAGuard(c10::DeviceIndex) {}
  CUDAGuard(const CUDAGuard&) = delete;
  CUDAGuard& operator=(const CUDAGuard&) = delete;
};

struct OptionalCUDAGuard {
  OptionalCUDAGuard() = default;
  explicit OptionalCUDAGuard(std::optional<c10::Device> device) {
    if (device) CUDAGuard guard(*device);
  }
};

}  // namespace cuda
}  // namespace c10
