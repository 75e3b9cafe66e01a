// Fixed-width float vectors (GCC/Clang vector extensions) for the CPU kernels'
// per-token loops: a task's kLanes channels are kVecs vectors kept in
// registers across tokens. Each ISA build lowers them to its own
// instructions.
#pragma once

#include <cstdint>
#include <cstring>
#include <type_traits>

#include "bi_wkv_cpu_block.h"
#include "bi_wkv_scan.h"

namespace bi_wkv {
inline namespace BIWKV_ISA {

// Floats per vector, set by the ISA build before including this header (the
// AVX-512 one: 16, a whole task per register; gcc's target pragma does not
// define __AVX512F__). Default 8: one AVX register, two SSE registers.
#ifndef BIWKV_VEC_WIDTH
#define BIWKV_VEC_WIDTH 8
#endif
constexpr int64_t kVecWidth = BIWKV_VEC_WIDTH;
constexpr int64_t kVecs = kLanes / kVecWidth;
static_assert(kLanes % kVecWidth == 0,
              "kLanes must be a multiple of kVecWidth");
typedef float vfloat __attribute__((vector_size(kVecWidth * sizeof(float))));
typedef uint32_t vuint
    __attribute__((vector_size(kVecWidth * sizeof(uint32_t))));

inline vfloat splat(float x) { return vfloat{} + x; }
inline vfloat vmax(vfloat a, vfloat b) { return a > b ? a : b; }

template <typename scalar_t>
inline vfloat vload(const scalar_t* p) {
  vfloat r;
  if constexpr (std::is_same_v<scalar_t, float>) {
    std::memcpy(&r, p, sizeof(r));
  } else {
    for (int64_t i = 0; i < kVecWidth; ++i) r[i] = static_cast<float>(p[i]);
  }
  return r;
}

template <typename scalar_t>
inline void vstore(scalar_t* p, vfloat x) {
  if constexpr (std::is_same_v<scalar_t, float>) {
    std::memcpy(p, &x, sizeof(x));
  } else {
    for (int64_t i = 0; i < kVecWidth; ++i) p[i] = static_cast<scalar_t>(x[i]);
  }
}

// exp_nonpos (bi_wkv_scan.h) on a vector: the same clamp, rounding trick and
// polynomial.
inline vfloat vexp_nonpos(vfloat x) {
  x = vmax(x, splat(kExpMin));
  const vfloat r = x * kLog2e + kExpRound;
  const vfloat p = exp2_fraction(x * kLog2e - (r - kExpRound));
  vuint bits;
  std::memcpy(&bits, &r, sizeof(bits));
  bits = (bits + 127u) << 23;
  vfloat scale;
  std::memcpy(&scale, &bits, sizeof(scale));
  return p * scale;
}

}  // namespace BIWKV_ISA
}  // namespace bi_wkv
