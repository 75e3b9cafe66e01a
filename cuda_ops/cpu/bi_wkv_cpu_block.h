// The unit of work of the CPU kernels: kLanes channels of one batch element.
#pragma once

#include <cstdint>

namespace bi_wkv {

constexpr int64_t kLanes = 16;

struct Block {
  int64_t b, c0;  // batch index, first channel
  int64_t T, C;   // tokens, channels (row stride) of the tensors
  int64_t at(int64_t t) const { return (b * T + t) * C + c0; }
};

}  // namespace bi_wkv
