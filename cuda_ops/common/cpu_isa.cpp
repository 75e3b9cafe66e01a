// See cpu_isa.h.
#include "cpu_isa.h"

#include <ATen/Parallel.h>

#include <algorithm>
#include <cstdlib>
#include <vector>

namespace mmvrwkv {

Isa cpu_isa_used() {
#ifdef MMVRWKV_HAVE_X86_BUILDS
  static const Isa isa = [] {
    const char* cap = std::getenv("MMVRWKV_CPU_ISA");
    const std::string limit = cap ? cap : "";
    if (limit == "generic") return Isa::generic;
    const bool avx2 =
        __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");
    const bool avx512 = avx2 && __builtin_cpu_supports("avx512f") &&
                        __builtin_cpu_supports("avx512vl") &&
                        __builtin_cpu_supports("avx512dq") &&
                        __builtin_cpu_supports("avx512bw");
    if (avx512 && limit != "avx2") return Isa::avx512;
    return avx2 ? Isa::avx2 : Isa::generic;
  }();
  return isa;
#else
  return Isa::generic;
#endif
}

std::string cpu_isa() {
  switch (cpu_isa_used()) {
    case Isa::avx512:
      return "avx512";
    case Isa::avx2:
      return "avx2";
    case Isa::generic:
      break;
  }
  return "generic";
}

int64_t cpu_threads() {
  // at::parallel_for is inline OpenMP: without -fopenmp at build time it runs
  // serially. Count the workers that take part in one.
  std::vector<char> seen(static_cast<size_t>(at::get_num_threads()), 0);
  at::parallel_for(0, 1 << 10, 1, [&](int64_t, int64_t) {
    const int id = at::get_thread_num();
    if (id >= 0 && id < static_cast<int>(seen.size())) seen[id] = 1;
  });
  return std::count(seen.begin(), seen.end(), 1);
}

}  // namespace mmvrwkv
