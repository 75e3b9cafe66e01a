// Small kernels that check the emulator itself: most break a rule on
// purpose (test_cuda_emu.py expects the emulator to report it). Compiled
// only for the emulator, written as CUDA source with the launch macros.
#include "cuda_launch.h"

namespace cuda_emu_selftest {

__global__ void __launch_bounds__(64) bounded(float* out) {
  out[threadIdx.x] = static_cast<float>(threadIdx.x);
}

// No __launch_bounds__: only the hardware limits apply.
__global__ void unbounded(float* out) {
  const unsigned t =
      (threadIdx.z * blockDim.y + threadIdx.y) * blockDim.x + threadIdx.x;
  if (blockIdx.x == 0 && blockIdx.y == 0) out[t] = static_cast<float>(t);
}

// Threads 16.. return; threads 0..15 then wait at a barrier.
__global__ void __launch_bounds__(1024) early_exit_barrier(float* out) {
  if (threadIdx.x >= 16) return;
  __syncthreads();
  out[threadIdx.x] = 1.0f;
}

// Odd and even threads wait at different __syncthreads() calls.
__global__ void __launch_bounds__(1024) two_barriers(float* out) {
  if (threadIdx.x % 2) {
    __syncthreads();
  } else {
    __syncthreads();
  }
  out[threadIdx.x] = 1.0f;
}

// Exits after the last barrier: allowed.
__global__ void __launch_bounds__(1024) exit_after_barrier(float* out) {
  BIWKV_DYNAMIC_SHARED(float, sh);
  sh[threadIdx.x] = static_cast<float>(threadIdx.x);
  __syncthreads();
  if (threadIdx.x >= 16) return;
  out[threadIdx.x] = sh[blockDim.x - 1 - threadIdx.x];
}

// Each thread writes one float past its slot: the last one past the end.
__global__ void __launch_bounds__(1024) smem_overrun(float* out) {
  BIWKV_DYNAMIC_SHARED(float, sh);
  sh[threadIdx.x + 1] = 1.0f;
  out[threadIdx.x] = 0.0f;
}

// Reads shared memory only thread 0 wrote: the rest is NaN.
__global__ void __launch_bounds__(1024) smem_uninitialised(float* out) {
  BIWKV_DYNAMIC_SHARED(float, sh);
  if (threadIdx.x == 0) sh[0] = 1.0f;
  __syncthreads();
  out[threadIdx.x] = sh[threadIdx.x];
}

// Reads a neighbour's slot without a barrier: depends on the thread order.
__global__ void __launch_bounds__(1024) race(float* out) {
  BIWKV_DYNAMIC_SHARED(float, sh);
  sh[threadIdx.x] = static_cast<float>(threadIdx.x);
  out[threadIdx.x] = sh[(threadIdx.x + 1) % blockDim.x];
}

// Records the order in which the blocks run.
__global__ void __launch_bounds__(1024) block_order(float* out, int* next) {
  if (threadIdx.x == 0) {
    out[blockIdx.y * gridDim.x + blockIdx.x] = static_cast<float>((*next)++);
  }
}

__global__ void __launch_bounds__(1024) smem_fill(float* out) {
  BIWKV_DYNAMIC_SHARED(float, sh);
  sh[threadIdx.x] = 2.0f;
  __syncthreads();
  out[threadIdx.x] = sh[blockDim.x - 1 - threadIdx.x];
}

// out[0:64]: butterfly sums, [64:128]: shfl_up by 1, [128:192]: shfl_down
// by 3 (width 16), [192:256]: ballot of odd lanes, [256:320]: broadcast of
// lane 5 (width 8).
__global__ void __launch_bounds__(1024) warp_ops(float* out) {
  const unsigned full = 0xffffffffu;
  const unsigned t = threadIdx.x;
  float v = static_cast<float>(t);
  for (int o = 16; o > 0; o /= 2) v += __shfl_xor_sync(full, v, o);
  out[t] = v;
  out[64 + t] = static_cast<float>(__shfl_up_sync(full, t, 1));
  out[128 + t] = static_cast<float>(__shfl_down_sync(full, t, 3, 16));
  out[192 + t] = static_cast<float>(__ballot_sync(full, t % 2 == 1));
  __syncwarp();
  out[256 + t] = __shfl_sync(full, static_cast<float>(t), 5, 8);
}

// Lanes 16..31 return; lanes 0..15 shuffle with a full mask.
__global__ void __launch_bounds__(1024) shfl_after_exit(float* out) {
  if (threadIdx.x >= 16) return;
  out[threadIdx.x] = __shfl_sync(0xffffffffu, 1.0f, 0);
}

// Each half warp sums its lanes with its own mask.
__global__ void __launch_bounds__(1024) half_warps(float* out) {
  const unsigned t = threadIdx.x;
  const unsigned mask = t % 32 < 16 ? 0x0000ffffu : 0xffff0000u;
  float v = static_cast<float>(t);
  for (int o = 8; o > 0; o /= 2) v += __shfl_xor_sync(mask, v, o);
  out[t] = v;
}

// Lanes 1.. call a shuffle whose mask leaves them out.
__global__ void __launch_bounds__(1024) shfl_bad_mask(float* out) {
  out[threadIdx.x] = __shfl_sync(0x1u, 1.0f, 0);
}

}  // namespace cuda_emu_selftest
