// The unit of work of the CPU kernels: kLanes channels of one batch element.
#pragma once

#include <cstdint>

namespace bi_wkv {

constexpr int64_t kLanes = 16;
// Tokens per chunk of the forward pass: its right sums (3 x kChunk x kLanes
// accumulators, 12 KB in float) stay in the L1 cache.
constexpr int64_t kChunk = 64;

struct Block {
  int64_t b, c0;  // batch index, first channel
  int64_t T, C;   // tokens, channels (row stride) of the tensors
  int64_t at(int64_t t) const { return (b * T + t) * C + c0; }
};

// Scratch accumulators per task: the forward keeps the right sums and the
// largest key of every chunk, and one chunk's right sums and e^{k - K}; the
// backward keeps five rows per token.
inline int64_t forward_scratch_size(int64_t T) {
  return (4 * ((T + kChunk - 1) / kChunk) + 3 * kChunk) * kLanes;
}
inline int64_t backward_scratch_size(int64_t T) { return 5 * T * kLanes; }

}  // namespace bi_wkv
