// What the CUDA launchers of every operator share to size their grids: the
// device's SM count and the limits of a launch that splits the tokens of a
// sequence into segments scanned by different blocks (then merged in a
// fixed order: no atomics).
#pragma once

#include <c10/cuda/CUDAException.h>
#include <torch/extension.h>

namespace mmvrwkv {

// Segments of at least kMinSegment tokens and at most kMaxSegments of them
// per sequence: every block merges the summaries of the other segments.
constexpr int64_t kMinSegment = 64;
constexpr int64_t kMaxSegments = 32;

// SMs of the tensor's device (a cached attribute of the driver: no
// synchronisation).
inline int64_t sm_count(const at::Tensor& t) {
  int n = 0;
  C10_CUDA_CHECK(cudaDeviceGetAttribute(&n, cudaDevAttrMultiProcessorCount,
                                        t.device().index()));
  return n;
}

}  // namespace mmvrwkv
