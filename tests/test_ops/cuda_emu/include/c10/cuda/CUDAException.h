// cuda_emu shim of c10/cuda/CUDAException.h: launch errors are recorded by
// the emulator's launcher and thrown here, as on a GPU.
#pragma once

#include <c10/util/Exception.h>

#include "cuda_emu.h"

#define C10_CUDA_KERNEL_LAUNCH_CHECK() \
  ::cuda_emu::check_launch(__FILE__, __LINE__)

#define C10_CUDA_CHECK(EXPR)                                             \
  do {                                                                   \
    const cudaError_t cuda_emu_err_ = (EXPR);                            \
    TORCH_CHECK(cuda_emu_err_ == cudaSuccess,                            \
                "CUDA error: ", cudaGetErrorString(cuda_emu_err_), " (", \
                #EXPR, ")");                                             \
  } while (0)
