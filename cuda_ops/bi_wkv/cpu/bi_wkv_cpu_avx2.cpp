// The CPU kernels compiled for AVX2 + FMA, chosen at run time when the CPU has
// them (bi_wkv_cpu.cpp). Everything this file includes before the target
// pragma keeps the default target; the kernels get their own namespace.
#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
#include <c10/util/BFloat16.h>
#include <c10/util/Half.h>

#include <cmath>
#include <cstdint>
#include <type_traits>

#pragma GCC target("avx2,fma")
#define BIWKV_ISA avx2
#include "bi_wkv_cpu_kernel.h"

namespace bi_wkv {
inline namespace avx2 {
BIWKV_INSTANTIATE_ALL_CPU_KERNELS()
}  // namespace avx2
}  // namespace bi_wkv
#endif
