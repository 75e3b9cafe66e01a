// The Bi-WKV6 CPU kernels compiled for AVX-512 (F, VL, DQ, BW) + FMA, chosen
// at run time when the CPU has them (bi_wkv6_cpu.cpp). Headers included
// before the target pragma keep the default target; the kernels get their own
// namespace.
// fp-contract=fast: fuse the scans' multiply-adds into FMAs (the -std=c++20
// build turns contraction off by default).
#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
#include <c10/util/BFloat16.h>
#include <c10/util/Half.h>

#include <algorithm>
#include <cstdint>
#include <cstring>

#pragma GCC target("avx512f,avx512vl,avx512dq,avx512bw,avx2,fma")
#pragma GCC optimize("fp-contract=fast")
#define BIWKV6_ISA avx512
#include "bi_wkv6_cpu_kernel.h"

namespace bi_wkv6 {
inline namespace avx512 {
BIWKV6_INSTANTIATE_ALL_CPU_KERNELS()
}  // namespace avx512
}  // namespace bi_wkv6
#endif
