// Kernel launches and dynamic shared memory, spelled so that one .cu source
// compiles both under nvcc and under the CPU emulator of the CUDA execution
// model in the tests (tests/test_ops/cuda_emu), which defines BIWKV_CUDA_EMU.
//
//   BIWKV_LAUNCH(grid, block, smem, stream, kernel<T...>)(args...);
//       nvcc: kernel<T...><<<grid, block, smem, stream>>>(args...);
//   BIWKV_DYNAMIC_SHARED(type, name);
//       nvcc: extern __shared__ type name[];
#pragma once

#ifdef BIWKV_CUDA_EMU
#include "cuda_emu.h"
#define BIWKV_LAUNCH(grid, block, smem, stream, ...) \
  ::cuda_emu::launcher(grid, block, smem, stream, #__VA_ARGS__, __VA_ARGS__)
#define BIWKV_DYNAMIC_SHARED(type, name) \
  type* name = ::cuda_emu::dynamic_shared<type>()
#else
#define BIWKV_LAUNCH(grid, block, smem, stream, ...) \
  __VA_ARGS__<<<grid, block, smem, stream>>>
#define BIWKV_DYNAMIC_SHARED(type, name) extern __shared__ type name[]
#endif
