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

// Scratch accumulators per task: the forward keeps the right sums (num, den,
// m, n) and the largest key of every chunk, one chunk's right sums, e^{-j w}
// for a chunk, and every token's e^{k - K} (the fast path); the backward
// keeps six rows per token.
inline int64_t forward_scratch_size(int64_t T) {
  return (5 * ((T + kChunk - 1) / kChunk) + 4 * kChunk + T) * kLanes;
}
inline int64_t backward_scratch_size(int64_t T) { return 6 * T * kLanes; }

}  // namespace bi_wkv
