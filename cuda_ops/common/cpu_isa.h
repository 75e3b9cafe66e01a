// The instruction set the CPU kernels of every operator run with, and the
// threads they run on. The kernels are compiled three times (baseline,
// AVX2 + FMA, AVX-512; cpu/*_avx2.cpp, cpu/*_avx512.cpp of each operator)
// and the best build this CPU runs is chosen once, at the first call.
#pragma once

#include <cstdint>
#include <string>

namespace mmvrwkv {

enum class Isa { generic, avx2, avx512 };

// The best build this CPU runs; MMVRWKV_CPU_ISA=generic or avx2 caps it
// (used by the tests and to compare builds).
Isa cpu_isa_used();
// cpu_isa_used() as "generic", "avx2" or "avx512".
std::string cpu_isa();
// Number of threads a parallel CPU kernel actually runs on (1 if the
// extension was built without OpenMP, whatever torch.get_num_threads() says).
int64_t cpu_threads();

}  // namespace mmvrwkv

// True where the x86 builds (avx2, avx512 namespaces) are compiled.
#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
#define MMVRWKV_HAVE_X86_BUILDS 1
#endif
