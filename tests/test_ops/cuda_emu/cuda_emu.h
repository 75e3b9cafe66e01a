// A CPU emulation of the CUDA execution model, for testing CUDA kernels on
// machines without a GPU (tests/test_ops/cuda_emu). The kernel source is
// compiled by the host C++ compiler with this header in front:
//
// - a launch runs the grid's blocks one after another on the calling OS
//   thread; each block's threads are fibers (ucontext, 256 KiB stacks with a
//   guard page) that run one at a time until they reach __syncthreads(), a
//   warp collective (__shfl_*_sync, __ballot_sync, ...) or the kernel's end;
// - between barriers the threads (and the blocks of the grid) run in
//   ascending, descending or seeded shuffled order (set_schedule), so results
//   that depend on the order of unsynchronised threads show up as
//   differences between runs;
// - a __syncthreads() that not every thread of the block reaches (some wait
//   while others have exited, or threads wait at different __syncthreads()
//   calls) is an error -- CUDA leaves such barriers undefined, so threads
//   may only return after the block's last barrier; so is a warp collective
//   whose lanes disagree or have exited;
// - dynamic shared memory is filled with 0xFF bytes (a NaN in every float
//   type) before each block and followed by a canary that is checked after
//   it; launch configurations are checked against the hardware limits, the
//   48 KiB dynamic shared memory default (cudaFuncSetAttribute opts in) and
//   the kernel's __launch_bounds__;
// - launches are synchronous; launch errors are reported by
//   C10_CUDA_KERNEL_LAUNCH_CHECK(), as on a GPU, errors while a block runs
//   are thrown at once (cuda_emu::Error, a std::runtime_error).
//
// Not emulated: lanes of a warp do not run in lockstep (code relying on
// implicit warp synchrony fails, as it may on Volta and later), global
// memory accesses are not bounds-checked, and blocks do not overlap.
//
// __launch_bounds__ cannot be read back from a declaration in C++, so the
// loader (__init__.py) finds them in the source and registers them with
// register_launch_bound(kernel name, bound).
//
// Device code is compiled as host code: __expf and friends are emulated,
// FMA contraction is not (results are close to, not bitwise equal to, a
// GPU's).
#pragma once

#include <signal.h>
#include <sys/mman.h>
#include <ucontext.h>
#include <unistd.h>

#include <algorithm>
#include <cfloat>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <exception>
#include <map>
#include <mutex>
#include <random>
#include <sstream>
#include <stdexcept>
#include <string>
#include <tuple>
#include <type_traits>
#include <utility>
#include <vector>

// ---------------------------------------------------------------------------
// Vector types and the CUDA keywords.

struct uint3 {
  unsigned int x, y, z;
};

struct dim3 {
  unsigned int x, y, z;
  constexpr dim3(unsigned int vx = 1, unsigned int vy = 1, unsigned int vz = 1)
      : x(vx), y(vy), z(vz) {}
  constexpr dim3(uint3 v) : x(v.x), y(v.y), z(v.z) {}
};

struct CUstream_st;
typedef CUstream_st* cudaStream_t;

#define __global__
#define __device__
#define __host__
#define __forceinline__ inline
#define __noinline__ __attribute__((noinline))
#define __align__(n) __attribute__((aligned(n)))
#define __launch_bounds__(...)
// Static shared memory: one instance per kernel instantiation, which is what
// a block sees since blocks run one after another. Not NaN-filled.
#define __shared__ static
#define __constant__ static

#define threadIdx (::cuda_emu::detail::thread_idx())
#define blockIdx (::cuda_emu::detail::block_idx())
#define blockDim (::cuda_emu::detail::block_dim())
#define gridDim (::cuda_emu::detail::grid_dim())
#define __syncthreads() ::cuda_emu::syncthreads(__FILE__, __LINE__)
#define __syncwarp(...) \
  ::cuda_emu::syncwarp(__FILE__, __LINE__ __VA_OPT__(, ) __VA_ARGS__)

constexpr int warpSize = 32;

// CUDA's min/max overloads, for any pair of arithmetic types.
template <typename A, typename B>
  requires std::is_arithmetic_v<A> && std::is_arithmetic_v<B>
constexpr std::common_type_t<A, B> min(A a, B b) {
  using R = std::common_type_t<A, B>;
  return R(b) < R(a) ? R(b) : R(a);
}
template <typename A, typename B>
  requires std::is_arithmetic_v<A> && std::is_arithmetic_v<B>
constexpr std::common_type_t<A, B> max(A a, B b) {
  using R = std::common_type_t<A, B>;
  return R(a) < R(b) ? R(b) : R(a);
}

// Intrinsics: fast math as the GPU computes it (up to the approximation
// error of the special function unit), flushing subnormal results to zero.
namespace cuda_emu {
namespace detail {
inline float ftz(float x) {
  return std::fabs(x) < FLT_MIN ? std::copysign(0.0f, x) : x;
}
}  // namespace detail
}  // namespace cuda_emu

// ex2.approx.ftz.f32(x * log2(e))
inline float __expf(float x) {
  const float t = ::cuda_emu::detail::ftz(x) * 1.4426950408889634f;
  return ::cuda_emu::detail::ftz(static_cast<float>(std::exp2(double(t))));
}
inline float __exp10f(float x) {
  const float t = ::cuda_emu::detail::ftz(x) * 3.3219280948873622f;
  return ::cuda_emu::detail::ftz(static_cast<float>(std::exp2(double(t))));
}
// lg2.approx.ftz.f32(x) * ln(2)
inline float __logf(float x) {
  return static_cast<float>(std::log2(double(::cuda_emu::detail::ftz(x)))) *
         0.6931471805599453f;
}
inline float __log2f(float x) {
  return static_cast<float>(std::log2(double(::cuda_emu::detail::ftz(x))));
}
inline float __powf(float x, float y) { return __expf(y * __logf(x)); }
inline float __fdividef(float x, float y) { return x / y; }
inline float __frcp_rn(float x) { return 1.0f / x; }
inline double __drcp_rn(double x) { return 1.0 / x; }
inline float __fmaf_rn(float a, float b, float c) { return std::fma(a, b, c); }
inline double __fma_rn(double a, double b, double c) {
  return std::fma(a, b, c);
}
inline float __fadd_rn(float a, float b) { return a + b; }
inline float __fsub_rn(float a, float b) { return a - b; }
inline float __fmul_rn(float a, float b) { return a * b; }
inline float __fdiv_rn(float a, float b) { return a / b; }
inline float __saturatef(float x) {
  return x != x ? 0.0f : (x < 0.0f ? 0.0f : (x > 1.0f ? 1.0f : x));
}
inline float rsqrtf(float x) { return 1.0f / std::sqrt(x); }
inline double rsqrt(double x) { return 1.0 / std::sqrt(x); }
inline float __int_as_float(int x) {
  float f;
  std::memcpy(&f, &x, 4);
  return f;
}
inline int __float_as_int(float f) {
  int x;
  std::memcpy(&x, &f, 4);
  return x;
}
inline double __longlong_as_double(long long x) {
  double f;
  std::memcpy(&f, &x, 8);
  return f;
}
inline long long __double_as_longlong(double f) {
  long long x;
  std::memcpy(&x, &f, 8);
  return x;
}
template <typename T>
inline T __ldg(const T* p) {
  return *p;
}

namespace cuda_emu {

// ---------------------------------------------------------------------------
// Errors.

struct Error : std::runtime_error {
  using std::runtime_error::runtime_error;
};

template <typename... A>
std::string str(const A&... a) {
  std::ostringstream os;
  (os << ... << a);
  return os.str();
}

// ---------------------------------------------------------------------------
// Settings and records shared by all launches (per OS thread).

enum class Order { kAscending, kDescending, kShuffled };

struct KernelRecord {
  int launch_bound = 0;  // 0: none declared
  long long launches = 0;
  unsigned max_threads = 0;  // largest block launched
  size_t max_smem = 0;       // largest dynamic shared memory launched
  unsigned max_grid[3] = {0, 0, 0};
  long long blocks = 0;
  long long barriers = 0;  // __syncthreads() completed, over all blocks
};

// Process-wide; launches hold the mutex (they run one at a time).
struct Settings {
  std::recursive_mutex mutex;
  Order order = Order::kAscending;
  std::mt19937_64 rng{0};
  std::map<std::string, KernelRecord> kernels;
  std::map<const void*, size_t> smem_optin;
};

inline Settings& settings() {
  static Settings s;
  return s;
}

// The launch error not yet checked (per OS thread, as cudaGetLastError).
inline std::string& pending_error() {
  static thread_local std::string e;
  return e;
}

inline void set_schedule(const std::string& order, uint64_t seed) {
  Settings& s = settings();
  std::lock_guard<std::recursive_mutex> lock(s.mutex);
  if (order == "ascending") {
    s.order = Order::kAscending;
  } else if (order == "descending") {
    s.order = Order::kDescending;
  } else if (order == "shuffled") {
    s.order = Order::kShuffled;
  } else {
    throw Error("cuda_emu: unknown thread order '" + order +
                "' (ascending, descending or shuffled)");
  }
  s.rng.seed(seed);
}

// Called at static initialisation with the bounds the loader found.
inline bool register_launch_bound(const char* kernel, int bound) {
  std::lock_guard<std::recursive_mutex> lock(settings().mutex);
  settings().kernels[kernel].launch_bound = bound;
  return true;
}

// A launch error left unchecked: returns it and clears it.
inline std::string take_pending_error() {
  std::string e;
  std::swap(e, pending_error());
  return e;
}

// ---------------------------------------------------------------------------
// Hardware limits (compute capability 8.0 and 9.0).

constexpr unsigned kMaxThreadsPerBlock = 1024;
constexpr unsigned kMaxBlockDim[3] = {1024, 1024, 64};
constexpr unsigned long long kMaxGridDim[3] = {2147483647ull, 65535, 65535};
constexpr size_t kDefaultSmem = 48 * 1024;
constexpr size_t kMaxSmemOptin = 163 * 1024;  // sm_80: 163 KiB, sm_90: 227
constexpr size_t kCanary = 256;
constexpr unsigned char kCanaryByte = 0xA5;
constexpr size_t kStackSize = 256 * 1024;

// ---------------------------------------------------------------------------
// Fibers.

namespace detail {

enum class State { kReady, kBarrier, kWarp, kExited };

enum class WarpOp {
  kSync,
  kShflIdx,
  kShflUp,
  kShflDown,
  kShflXor,
  kBallot,
  kAll,
  kAny
};

struct Fiber {
  ucontext_t ctx;
  void* stack = nullptr;  // usable part, above the guard page
  uint3 idx{0, 0, 0};
  unsigned linear = 0;
  State state = State::kReady;
  const char* file = nullptr;  // where it waits
  int line = 0;
  std::exception_ptr error;
  // warp collective
  WarpOp op = WarpOp::kSync;
  unsigned mask = 0;
  uint64_t value = 0;
  int arg = 0, width = 32;
  uint64_t result = 0;
};

struct Block {
  std::vector<Fiber> fibers;
  ucontext_t main;
  Fiber* cur = nullptr;
  uint3 block_idx{0, 0, 0};
  dim3 block_dim, grid_dim;
  unsigned char* smem = nullptr;
  void (*body)(void*) = nullptr;
  void* body_arg = nullptr;
};

inline Block*& current_block() {
  static thread_local Block* b = nullptr;
  return b;
}

inline Fiber& current_fiber() {
  Block* b = current_block();
  if (b == nullptr || b->cur == nullptr) {
    throw Error("cuda_emu: device code called outside a kernel launch");
  }
  return *b->cur;
}

inline const uint3& thread_idx() { return current_fiber().idx; }
inline const uint3& block_idx() {
  current_fiber();
  return current_block()->block_idx;
}
inline const dim3& block_dim() {
  current_fiber();
  return current_block()->block_dim;
}
inline const dim3& grid_dim() {
  current_fiber();
  return current_block()->grid_dim;
}

inline void yield(State st) {
  Block* b = current_block();
  Fiber* f = b->cur;
  f->state = st;
  if (swapcontext(&f->ctx, &b->main) != 0) throw Error("swapcontext failed");
}

inline void fiber_entry() {
  Block* b = current_block();
  Fiber* f = b->cur;
  try {
    b->body(b->body_arg);
  } catch (...) {
    f->error = std::current_exception();
  }
  f->state = State::kExited;
  setcontext(&b->main);  // never returns
}

// Fiber stacks: one mapping per launch, a PROT_NONE guard page below each.
struct Stacks {
  void* base = nullptr;
  size_t bytes = 0, each = 0;
  explicit Stacks(size_t n) {
    const size_t page = static_cast<size_t>(sysconf(_SC_PAGESIZE));
    each = kStackSize + page;
    bytes = each * n;
    base = mmap(nullptr, bytes, PROT_READ | PROT_WRITE,
                MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
    if (base == MAP_FAILED) throw Error("cuda_emu: cannot map fiber stacks");
    for (size_t i = 0; i < n; ++i) {
      mprotect(static_cast<char*>(base) + i * each, page, PROT_NONE);
    }
  }
  void* stack(size_t i) const {
    return static_cast<char*>(base) + i * each + (each - kStackSize);
  }
  ~Stacks() { munmap(base, bytes); }
  Stacks(const Stacks&) = delete;
  Stacks& operator=(const Stacks&) = delete;
};

// Dynamic shared memory: NaN-filled bytes, then a canary.
struct SharedMemory {
  std::vector<unsigned char> buf;
  size_t bytes, offset;
  explicit SharedMemory(size_t n) : buf(n + kCanary + 128), bytes(n) {
    offset = (128 - reinterpret_cast<uintptr_t>(buf.data()) % 128) % 128;
  }
  unsigned char* data() { return buf.data() + offset; }
  void fill() {
    std::memset(data(), 0xFF, bytes);
    std::memset(data() + bytes, kCanaryByte, kCanary);
  }
  // Offset of the first overwritten canary byte past the end, or -1.
  long long overrun() {
    for (size_t i = 0; i < kCanary; ++i) {
      if (data()[bytes + i] != kCanaryByte) return static_cast<long long>(i);
    }
    return -1;
  }
};

inline std::vector<size_t> ordering(size_t n, Settings& s) {
  std::vector<size_t> o(n);
  for (size_t i = 0; i < n; ++i) o[i] = i;
  if (s.order == Order::kDescending) {
    std::reverse(o.begin(), o.end());
  } else if (s.order == Order::kShuffled) {
    std::shuffle(o.begin(), o.end(), s.rng);
  }
  return o;
}

inline std::string where(const Fiber& f) {
  return str("thread (", f.idx.x, ",", f.idx.y, ",", f.idx.z, ")");
}

inline std::string site(const Fiber& f) {
  return str(f.file ? f.file : "?", ":", f.line);
}

// Completes the warp collectives whose lanes have all arrived: the lanes
// waiting in a warp collective form groups by mask, and a group completes
// when every lane of its mask waits with that mask at the same call. Returns
// whether any thread became ready.
inline bool resolve_warps(Block& b, const std::string& kname) {
  bool progress = false;
  const size_t n = b.fibers.size();
  for (size_t w0 = 0; w0 < n; w0 += 32) {
    const size_t lanes = std::min<size_t>(32, n - w0);
    unsigned done = 0;  // lanes whose group has been looked at
    for (size_t l0 = 0; l0 < lanes; ++l0) {
      Fiber& first = b.fibers[w0 + l0];
      if (first.state != State::kWarp || ((done >> l0) & 1u)) continue;
      const unsigned mask = first.mask;
      bool complete = true;
      for (size_t l = 0; l < 32; ++l) {
        if (!((mask >> l) & 1u)) continue;
        done |= 1u << l;
        if (l >= lanes) {
          throw Error(str("cuda_emu: ", kname, ": ", where(first), " at ",
                          site(first), ": the mask 0x", std::hex, mask,
                          std::dec, " names lane ", l,
                          ", which the block does not have"));
        }
        Fiber& f = b.fibers[w0 + l];
        if (f.state == State::kWarp) {
          if (f.mask != mask || f.op != first.op || f.line != first.line ||
              f.file != first.file) {
            throw Error(str("cuda_emu: ", kname,
                            ": warp collectives of "
                            "warp ",
                            w0 / 32, " disagree: ", where(first), " at ",
                            site(first), " (mask 0x", std::hex, mask, std::dec,
                            "), ", where(f), " at ", site(f), " (mask 0x",
                            std::hex, f.mask, std::dec, ")"));
          }
        } else if (f.state == State::kExited) {
          throw Error(str("cuda_emu: ", kname, ": ", where(first), " at ",
                          site(first), " waits in a warp collective for ",
                          where(f), ", which has exited"));
        } else {
          complete = false;  // still running, or at a block barrier
        }
      }
      if (!complete) continue;
      unsigned ballot = 0;
      for (size_t q = 0; q < lanes; ++q) {
        if (((mask >> q) & 1u) && b.fibers[w0 + q].value != 0) {
          ballot |= 1u << q;
        }
      }
      for (size_t l = 0; l < lanes; ++l) {
        if (!((mask >> l) & 1u)) continue;
        Fiber& f = b.fibers[w0 + l];
        const int width = f.width;
        const int lane = static_cast<int>(l);
        const int seg = lane / width * width;
        int src = -1;
        switch (f.op) {
          case WarpOp::kShflIdx:
            src = seg + ((f.arg % width) + width) % width;
            break;
          case WarpOp::kShflUp:
            src = lane - f.arg >= seg ? lane - f.arg : lane;
            break;
          case WarpOp::kShflDown:
            src = lane + f.arg < seg + width ? lane + f.arg : lane;
            break;
          case WarpOp::kShflXor:
            src = lane ^ f.arg;
            src = src >= seg && src < seg + width ? src : lane;
            break;
          case WarpOp::kBallot:
            f.result = ballot;
            break;
          case WarpOp::kAll:
            f.result = ballot == mask;
            break;
          case WarpOp::kAny:
            f.result = ballot != 0;
            break;
          case WarpOp::kSync:
            break;
        }
        if (src >= 0) {
          if (src >= static_cast<int>(lanes) || !((mask >> src) & 1u)) {
            throw Error(str("cuda_emu: ", kname, ": ", where(f), " at ",
                            site(f), " reads lane ", src,
                            ", which is not in the shuffle's mask"));
          }
          f.result = b.fibers[w0 + src].value;
        }
      }
      for (size_t l = 0; l < lanes; ++l) {
        if ((mask >> l) & 1u) b.fibers[w0 + l].state = State::kReady;
      }
      progress = true;
    }
  }
  return progress;
}

template <typename T>
T warp_collective(const char* file, int line, WarpOp op, unsigned mask, T value,
                  int arg, int width) {
  static_assert(sizeof(T) <= 8 && std::is_trivially_copyable_v<T>,
                "cuda_emu: warp collectives of types up to 8 bytes");
  Fiber& f = current_fiber();
  const unsigned lane = f.linear % 32;
  if (!((mask >> lane) & 1u)) {
    throw Error(str("cuda_emu: ", where(f), " at ", file, ":", line,
                    " calls a warp collective with mask 0x", std::hex, mask,
                    " that excludes its own lane"));
  }
  if (width < 1 || width > 32 || (width & (width - 1)) != 0) {
    throw Error(str("cuda_emu: shuffle width ", width, " at ", file, ":", line,
                    " is not a power of 2 <= 32"));
  }
  f.op = op;
  f.mask = mask;
  f.value = 0;
  std::memcpy(&f.value, &value, sizeof(T));
  f.arg = arg;
  f.width = width;
  f.file = file;
  f.line = line;
  yield(State::kWarp);
  T out;
  std::memcpy(&out, &f.result, sizeof(T));
  return out;
}

}  // namespace detail

// ---------------------------------------------------------------------------
// Device-side API.

inline void syncthreads(const char* file, int line) {
  detail::Fiber& f = detail::current_fiber();
  f.file = file;
  f.line = line;
  detail::yield(detail::State::kBarrier);
}

inline void syncwarp(const char* file, int line, unsigned mask = 0xffffffffu) {
  detail::warp_collective<int>(file, line, detail::WarpOp::kSync, mask, 0, 0,
                               32);
}

template <typename T>
T* dynamic_shared() {
  detail::current_fiber();
  return reinterpret_cast<T*>(detail::current_block()->smem);
}

// ---------------------------------------------------------------------------
// Launches.

namespace detail {

inline std::string kernel_name(const char* expr) {
  std::string s(expr);
  s = s.substr(0, s.find('<'));
  s.erase(std::remove_if(s.begin(), s.end(), ::isspace), s.end());
  const size_t colon = s.rfind("::");
  return colon == std::string::npos ? s : s.substr(colon + 2);
}

inline std::string check_config(const std::string& name, const KernelRecord& k,
                                const dim3& grid, const dim3& block,
                                size_t smem, size_t smem_limit) {
  const unsigned g[3] = {grid.x, grid.y, grid.z};
  const unsigned t[3] = {block.x, block.y, block.z};
  const char* axis = "xyz";
  for (int i = 0; i < 3; ++i) {
    if (g[i] == 0 || t[i] == 0) {
      return str("invalid configuration argument: empty grid or block (", name,
                 ")");
    }
    if (g[i] > kMaxGridDim[i]) {
      return str("invalid configuration argument: gridDim.", axis[i], " = ",
                 g[i], " exceeds ", kMaxGridDim[i], " (", name, ")");
    }
    if (t[i] > kMaxBlockDim[i]) {
      return str("invalid configuration argument: blockDim.", axis[i], " = ",
                 t[i], " exceeds ", kMaxBlockDim[i], " (", name, ")");
    }
  }
  const unsigned long long threads = 1ull * block.x * block.y * block.z;
  if (threads > kMaxThreadsPerBlock) {
    return str("invalid configuration argument: ", threads,
               " threads per block exceed ", kMaxThreadsPerBlock, " (", name,
               ")");
  }
  if (k.launch_bound > 0 && threads > static_cast<unsigned>(k.launch_bound)) {
    return str("too many resources requested for launch: ", threads,
               " threads per block exceed __launch_bounds__(", k.launch_bound,
               ") of ", name);
  }
  if (smem > smem_limit) {
    return str("invalid argument: ", smem,
               " bytes of dynamic shared memory exceed the limit of ",
               smem_limit, " (", name,
               smem_limit == kDefaultSmem
                   ? "; above 48 KiB needs cudaFuncSetAttribute(..., "
                     "cudaFuncAttributeMaxDynamicSharedMemorySize, ...))"
                   : ")");
  }
  return "";
}

inline void run_grid(const std::string& name, KernelRecord& rec,
                     const dim3& grid, const dim3& block, size_t smem_bytes,
                     void (*body)(void*), void* arg) {
  Settings& s = settings();
  const size_t nthreads = 1ull * block.x * block.y * block.z;
  Stacks stacks(nthreads);
  SharedMemory smem(smem_bytes);
  Block b;
  b.block_dim = block;
  b.grid_dim = grid;
  b.smem = smem.data();
  b.body = body;
  b.body_arg = arg;
  b.fibers.resize(nthreads);
  for (size_t i = 0; i < nthreads; ++i) {
    Fiber& f = b.fibers[i];
    f.stack = stacks.stack(i);
    f.linear = static_cast<unsigned>(i);
    f.idx = {static_cast<unsigned>(i % block.x),
             static_cast<unsigned>(i / block.x % block.y),
             static_cast<unsigned>(i / (1ull * block.x * block.y))};
  }
  const size_t nblocks = 1ull * grid.x * grid.y * grid.z;
  struct Restore {
    Block* prev;
    ~Restore() { current_block() = prev; }
  } restore{current_block()};
  current_block() = &b;
  for (size_t bi : ordering(nblocks, s)) {
    b.block_idx = {static_cast<unsigned>(bi % grid.x),
                   static_cast<unsigned>(bi / grid.x % grid.y),
                   static_cast<unsigned>(bi / (1ull * grid.x * grid.y))};
    const std::string blk = str(name, " block (", b.block_idx.x, ",",
                                b.block_idx.y, ",", b.block_idx.z, ")");
    smem.fill();
    for (Fiber& f : b.fibers) {
      f.state = State::kReady;
      f.error = nullptr;
      f.file = nullptr;
      f.line = 0;
      getcontext(&f.ctx);
      f.ctx.uc_stack.ss_sp = f.stack;
      f.ctx.uc_stack.ss_size = kStackSize;
      f.ctx.uc_link = nullptr;
      makecontext(&f.ctx, fiber_entry, 0);
    }
    while (true) {
      // Run every ready thread to its next barrier, warp collective or end.
      bool progress = true;
      while (progress) {
        for (size_t i : ordering(nthreads, s)) {
          Fiber& f = b.fibers[i];
          if (f.state != State::kReady) continue;
          b.cur = &f;
          swapcontext(&b.main, &f.ctx);
          b.cur = nullptr;
          if (f.error) {
            try {
              std::rethrow_exception(f.error);
            } catch (const std::exception& e) {
              throw Error(
                  str("cuda_emu: ", blk, " ", where(f), ": ", e.what()));
            }
          }
        }
        progress = resolve_warps(b, blk);
      }
      std::vector<Fiber*> waiting, exited, in_warp;
      for (Fiber& f : b.fibers) {
        if (f.state == State::kBarrier) waiting.push_back(&f);
        if (f.state == State::kExited) exited.push_back(&f);
        if (f.state == State::kWarp) in_warp.push_back(&f);
      }
      if (!in_warp.empty()) {
        throw Error(str("cuda_emu: ", blk, ": deadlock: ", where(*in_warp[0]),
                        " waits in a warp collective at ", site(*in_warp[0]),
                        " that some lanes of its mask never reach"));
      }
      if (waiting.empty()) break;  // every thread has exited
      if (!exited.empty()) {
        throw Error(str("cuda_emu: ", blk, ": divergent __syncthreads(): ",
                        waiting.size(), " threads wait at ", site(*waiting[0]),
                        " (", where(*waiting[0]), ") but ", exited.size(),
                        " threads have exited (", where(*exited[0]), ")"));
      }
      for (Fiber* f : waiting) {
        if (f->line != waiting[0]->line || f->file != waiting[0]->file) {
          throw Error(str("cuda_emu: ", blk, ": divergent __syncthreads(): ",
                          where(*waiting[0]), " waits at ", site(*waiting[0]),
                          ", ", where(*f), " at ", site(*f)));
        }
        f->state = State::kReady;
      }
      ++rec.barriers;
    }
    const long long over = smem.overrun();
    if (over >= 0) {
      throw Error(str("cuda_emu: ", blk, ": shared memory written ", over,
                      " bytes past the end of the ", smem_bytes,
                      " bytes of dynamic shared memory"));
    }
    ++rec.blocks;
  }
}

template <typename... P>
struct Launcher {
  dim3 grid, block;
  size_t smem;
  std::string name;
  void (*kernel)(P...);

  void operator()(P... args) const {
    Settings& s = settings();
    std::lock_guard<std::recursive_mutex> lock(s.mutex);
    KernelRecord& rec = s.kernels[name];
    const auto opt = s.smem_optin.find(reinterpret_cast<const void*>(kernel));
    const size_t limit = opt == s.smem_optin.end() ? kDefaultSmem : opt->second;
    const std::string err = check_config(name, rec, grid, block, smem, limit);
    if (!err.empty()) {
      if (pending_error().empty()) pending_error() = err;
      return;  // as on a GPU: nothing runs, the error waits for a check
    }
    ++rec.launches;
    rec.max_threads = std::max(rec.max_threads, block.x * block.y * block.z);
    rec.max_smem = std::max(rec.max_smem, smem);
    const unsigned g[3] = {grid.x, grid.y, grid.z};
    for (int i = 0; i < 3; ++i) {
      rec.max_grid[i] = std::max(rec.max_grid[i], g[i]);
    }
    struct Call {
      void (*kernel)(P...);
      std::tuple<P...> args;
    } call{kernel, std::tuple<P...>(args...)};
    run_grid(
        name, rec, grid, block, smem,
        [](void* p) {
          Call* c = static_cast<Call*>(p);
          std::apply(c->kernel, c->args);
        },
        &call);
  }
};

}  // namespace detail

template <typename Stream, typename... P>
detail::Launcher<P...> launcher(dim3 grid, dim3 block, size_t smem, Stream,
                                const char* expr, void (*kernel)(P...)) {
  return {grid, block, smem, detail::kernel_name(expr), kernel};
}

// Throws the pending launch error, as C10_CUDA_KERNEL_LAUNCH_CHECK() does.
inline void check_launch(const char* file, int line) {
  const std::string e = take_pending_error();
  if (!e.empty()) {
    throw Error(str("CUDA error: ", e, " (checked at ", file, ":", line, ")"));
  }
}

}  // namespace cuda_emu

// ---------------------------------------------------------------------------
// Warp collectives.

#define __shfl_sync(mask, var, src, ...)                                   \
  ::cuda_emu::detail::warp_collective(                                     \
      __FILE__, __LINE__, ::cuda_emu::detail::WarpOp::kShflIdx, mask, var, \
      src, ::cuda_emu::detail::width_or_32(__VA_ARGS__))
#define __shfl_up_sync(mask, var, delta, ...)                             \
  ::cuda_emu::detail::warp_collective(                                    \
      __FILE__, __LINE__, ::cuda_emu::detail::WarpOp::kShflUp, mask, var, \
      static_cast<int>(delta), ::cuda_emu::detail::width_or_32(__VA_ARGS__))
#define __shfl_down_sync(mask, var, delta, ...)                             \
  ::cuda_emu::detail::warp_collective(                                      \
      __FILE__, __LINE__, ::cuda_emu::detail::WarpOp::kShflDown, mask, var, \
      static_cast<int>(delta), ::cuda_emu::detail::width_or_32(__VA_ARGS__))
#define __shfl_xor_sync(mask, var, lane_mask, ...)                         \
  ::cuda_emu::detail::warp_collective(                                     \
      __FILE__, __LINE__, ::cuda_emu::detail::WarpOp::kShflXor, mask, var, \
      lane_mask, ::cuda_emu::detail::width_or_32(__VA_ARGS__))
#define __ballot_sync(mask, pred)                                      \
  static_cast<unsigned>(::cuda_emu::detail::warp_collective<unsigned>( \
      __FILE__, __LINE__, ::cuda_emu::detail::WarpOp::kBallot, mask,   \
      (pred) ? 1u : 0u, 0, 32))
#define __all_sync(mask, pred)                                    \
  static_cast<int>(::cuda_emu::detail::warp_collective<unsigned>( \
      __FILE__, __LINE__, ::cuda_emu::detail::WarpOp::kAll, mask, \
      (pred) ? 1u : 0u, 0, 32))
#define __any_sync(mask, pred)                                    \
  static_cast<int>(::cuda_emu::detail::warp_collective<unsigned>( \
      __FILE__, __LINE__, ::cuda_emu::detail::WarpOp::kAny, mask, \
      (pred) ? 1u : 0u, 0, 32))

namespace cuda_emu {
namespace detail {
constexpr int width_or_32() { return 32; }
constexpr int width_or_32(int w) { return w; }
}  // namespace detail
}  // namespace cuda_emu

// ---------------------------------------------------------------------------
// Runtime API subset.

typedef int cudaError_t;
constexpr cudaError_t cudaSuccess = 0;
constexpr cudaError_t cudaErrorInvalidValue = 1;
enum cudaFuncAttribute { cudaFuncAttributeMaxDynamicSharedMemorySize = 8 };

template <typename... P>
cudaError_t cudaFuncSetAttribute(void (*kernel)(P...), cudaFuncAttribute attr,
                                 int value) {
  if (attr != cudaFuncAttributeMaxDynamicSharedMemorySize || value < 0 ||
      static_cast<size_t>(value) > ::cuda_emu::kMaxSmemOptin) {
    return cudaErrorInvalidValue;
  }
  ::cuda_emu::Settings& s = ::cuda_emu::settings();
  std::lock_guard<std::recursive_mutex> lock(s.mutex);
  s.smem_optin[reinterpret_cast<const void*>(kernel)] =
      static_cast<size_t>(value);
  return cudaSuccess;
}

inline cudaError_t cudaGetLastError() {
  return ::cuda_emu::take_pending_error().empty() ? cudaSuccess
                                                  : cudaErrorInvalidValue;
}

inline const char* cudaGetErrorString(cudaError_t e) {
  return e == cudaSuccess ? "no error" : "invalid argument";
}

// ---------------------------------------------------------------------------
// Device attributes, which launchers read to size their grids: the emulated
// device is an H100 SXM / H200 (132 SMs) unless set_sm_count says
// otherwise. There is one device; the device argument is not checked.

enum cudaDeviceAttr {
  cudaDevAttrMaxThreadsPerBlock = 1,
  cudaDevAttrMultiProcessorCount = 16,
  cudaDevAttrMaxThreadsPerMultiProcessor = 39,
};

namespace cuda_emu {

inline int& sm_count() {
  static int n = 132;
  return n;
}

inline void set_sm_count(int n) {
  if (n < 1) throw Error(str("cuda_emu: SM count ", n, " is not positive"));
  std::lock_guard<std::recursive_mutex> lock(settings().mutex);
  sm_count() = n;
}

}  // namespace cuda_emu

inline cudaError_t cudaDeviceGetAttribute(int* value, cudaDeviceAttr attr,
                                          int /*device*/) {
  switch (attr) {
    case cudaDevAttrMaxThreadsPerBlock:
      *value = static_cast<int>(::cuda_emu::kMaxThreadsPerBlock);
      return cudaSuccess;
    case cudaDevAttrMultiProcessorCount:
      *value = ::cuda_emu::sm_count();
      return cudaSuccess;
    case cudaDevAttrMaxThreadsPerMultiProcessor:
      *value = 2048;
      return cudaSuccess;
  }
  return cudaErrorInvalidValue;
}
