// The Bi-WKV and Bi-WKV6 CUDA kernels (cuda_ops/bi_wkv/cuda/bi_wkv_cuda.cu
// and cuda_ops/bi_wkv6/cuda/bi_wkv6_cuda.cu, host code included) compiled
// for the CPU emulator of the CUDA execution model (cuda_emu.h), and the
// emulator's self-test kernels; built by __init__.py.
#include <ATen/Dispatch.h>
#include <ATen/OpMathType.h>
#include <c10/cuda/CUDAException.h>  // the emulator's shims (include/)
#include <c10/cuda/CUDAGuard.h>
#include <c10/cuda/CUDAStream.h>
#include <torch/extension.h>

#include "bi_wkv.h"
#include "bi_wkv6.h"
#include "cuda_emu.h"

// Device code takes the __CUDA_ARCH__ branches of the kernels' own headers
// (bi_wkv_scan.h: __expf), as under nvcc. Torch's headers are all read
// above, without it.
#define __CUDA_ARCH__ 800
#include "bi_wkv_cuda.cu"
#include "bi_wkv6_cuda.cu"
#include "selftest_kernels.cu"
#undef __CUDA_ARCH__

// __launch_bounds__ of the kernels above, found by the loader:
// CUDA_EMU_LAUNCH_BOUND(kernel, bound) lines.
#define CUDA_EMU_LAUNCH_BOUND(kernel, ...)              \
  [[maybe_unused]] const bool cuda_emu_bound_##kernel = \
      ::cuda_emu::register_launch_bound(#kernel, (__VA_ARGS__));
namespace cuda_emu_bounds {
using namespace bi_wkv;
using namespace bi_wkv6;
using namespace cuda_emu_selftest;
#include "cuda_emu_bounds.inc"
}  // namespace cuda_emu_bounds

namespace {

// Around each call from Python: at::empty fills floats with NaN (so output
// the kernel never writes is caught), and a launch error no
// C10_CUDA_KERNEL_LAUNCH_CHECK() reported is an error.
class Call {
 public:
  Call() {
    auto& ctx = at::globalContext();
    det_ = ctx.deterministicAlgorithms();
    warn_ = ctx.deterministicAlgorithmsWarnOnly();
    fill_ = ctx.deterministicFillUninitializedMemory();
    ctx.setDeterministicAlgorithms(true, /*warn_only=*/true);
    ctx.setDeterministicFillUninitializedMemory(true);
    cuda_emu::take_pending_error();
  }
  ~Call() {
    auto& ctx = at::globalContext();
    ctx.setDeterministicAlgorithms(det_, warn_);
    ctx.setDeterministicFillUninitializedMemory(fill_);
  }
  template <typename R>
  R done(R r) {
    const std::string e = cuda_emu::take_pending_error();
    TORCH_CHECK(e.empty(),
                "cuda_emu: a launch failed and no "
                "C10_CUDA_KERNEL_LAUNCH_CHECK() reported it: ",
                e);
    return r;
  }

 private:
  bool det_, warn_, fill_;
};

void check(const at::Tensor& w, const at::Tensor& u, const at::Tensor& k,
           const at::Tensor& v) {
  TORCH_CHECK(k.dim() == 3 && v.sizes() == k.sizes() && w.dim() == 1 &&
                  u.dim() == 1 && w.size(0) == k.size(2) &&
                  u.size(0) == k.size(2) && k.numel() > 0,
              "cuda_emu bi_wkv: bad shapes");
  const auto acc = k.scalar_type() == at::kDouble ? at::kDouble : at::kFloat;
  TORCH_CHECK(w.scalar_type() == acc && u.scalar_type() == acc &&
                  v.scalar_type() == k.scalar_type(),
              "cuda_emu bi_wkv: bad dtypes");
  for (const auto* t : {&w, &u, &k, &v}) {
    TORCH_CHECK(t->is_cpu() && t->is_contiguous(),
                "cuda_emu bi_wkv: inputs must be contiguous CPU tensors");
  }
}

at::Tensor forward(const at::Tensor& w, const at::Tensor& u,
                   const at::Tensor& k, const at::Tensor& v) {
  check(w, u, k, v);
  Call call;
  return call.done(bi_wkv::forward_cuda(w, u, k, v));
}

std::vector<at::Tensor> backward(const at::Tensor& w, const at::Tensor& u,
                                 const at::Tensor& k, const at::Tensor& v,
                                 const at::Tensor& gy) {
  check(w, u, k, v);
  TORCH_CHECK(gy.sizes() == k.sizes() && gy.scalar_type() == k.scalar_type() &&
                  gy.is_cpu() && gy.is_contiguous(),
              "cuda_emu bi_wkv: bad grad_output");
  Call call;
  return call.done(bi_wkv::backward_cuda(w, u, k, v, gy));
}

// Bi-WKV6 (bi_wkv6_cuda.cu): r, k, v, w (B, T, C) of one dtype, u (H, N)
// and gy (B, T, C) in the accumulation dtype; as bi_wkv6::forward_cuda /
// backward_cuda (cuda_ops/bi_wkv6/bi_wkv6.h), on CPU tensors.
void check6(const std::vector<at::Tensor>& ts) {
  for (const auto& t : ts) {
    TORCH_CHECK(t.is_cpu() && t.is_contiguous(),
                "cuda_emu bi_wkv6: inputs must be contiguous CPU tensors");
  }
  TORCH_CHECK(ts[0].dim() == 3 && ts[0].numel() > 0 && ts[4].dim() == 2,
              "cuda_emu bi_wkv6: bad shapes");
  for (int i = 1; i < 4; ++i) {
    TORCH_CHECK(ts[i].sizes() == ts[0].sizes() &&
                    ts[i].scalar_type() == ts[0].scalar_type(),
                "cuda_emu bi_wkv6: r, k, v, w must match");
  }
  const auto acc =
      ts[0].scalar_type() == at::kDouble ? at::kDouble : at::kFloat;
  TORCH_CHECK(ts[4].scalar_type() == acc, "cuda_emu bi_wkv6: bad u dtype");
}

at::Tensor forward6(const at::Tensor& r, const at::Tensor& k,
                    const at::Tensor& v, const at::Tensor& w,
                    const at::Tensor& u) {
  check6({r, k, v, w, u});
  Call call;
  return call.done(bi_wkv6::forward_cuda(r, k, v, w, u));
}

std::vector<at::Tensor> backward6(const at::Tensor& r, const at::Tensor& k,
                                  const at::Tensor& v, const at::Tensor& w,
                                  const at::Tensor& u, const at::Tensor& gy) {
  check6({r, k, v, w, u, gy});
  Call call;
  return call.done(bi_wkv6::backward_cuda(r, k, v, w, u, gy));
}

py::dict kernel_records() {
  auto& s = cuda_emu::settings();
  std::lock_guard<std::recursive_mutex> lock(s.mutex);
  py::dict out;
  for (const auto& [name, r] : s.kernels) {
    py::dict d;
    d["launch_bound"] = r.launch_bound;
    d["launches"] = r.launches;
    d["blocks"] = r.blocks;
    d["barriers"] = r.barriers;
    d["max_threads"] = r.max_threads;
    d["max_smem"] = r.max_smem;
    d["max_grid"] = py::make_tuple(r.max_grid[0], r.max_grid[1], r.max_grid[2]);
    out[py::str(name)] = d;
  }
  return out;
}

void reset_records() {
  auto& s = cuda_emu::settings();
  std::lock_guard<std::recursive_mutex> lock(s.mutex);
  for (auto& [name, r] : s.kernels) {
    r = cuda_emu::KernelRecord{r.launch_bound};
  }
}

// Runs one self-test kernel; returns its output buffer (1024 floats, -1
// where nothing was written).
at::Tensor selftest(const std::string& name) {
  using namespace cuda_emu_selftest;
  Call call;
  auto out = at::full({1024}, -1.0f);
  float* o = out.data_ptr<float>();
  const size_t f = sizeof(float);
  if (name == "bounded") {
    BIWKV_LAUNCH(1, 64, 0, 0, bounded)(o);
  } else if (name == "bounded_too_many") {
    BIWKV_LAUNCH(1, 128, 0, 0, bounded)(o);
  } else if (name == "unchecked_launch_error") {
    BIWKV_LAUNCH(1, 128, 0, 0, bounded)(o);
    return call.done(out);  // no C10_CUDA_KERNEL_LAUNCH_CHECK()
  } else if (name == "block_1024") {
    BIWKV_LAUNCH(1, dim3(32, 32), 0, 0, unbounded)(o);
  } else if (name == "block_too_big") {
    BIWKV_LAUNCH(1, dim3(32, 33), 0, 0, unbounded)(o);
  } else if (name == "block_z_too_big") {
    BIWKV_LAUNCH(1, dim3(1, 1, 65), 0, 0, unbounded)(o);
  } else if (name == "grid_y_too_big") {
    BIWKV_LAUNCH(dim3(1, 65536), 1, 0, 0, unbounded)(o);
  } else if (name == "empty_grid") {
    BIWKV_LAUNCH(dim3(0), 32, 0, 0, unbounded)(o);
  } else if (name == "early_exit_barrier") {
    BIWKV_LAUNCH(1, 32, 0, 0, early_exit_barrier)(o);
  } else if (name == "two_barriers") {
    BIWKV_LAUNCH(1, 32, 0, 0, two_barriers)(o);
  } else if (name == "exit_after_barrier") {
    BIWKV_LAUNCH(1, 32, 32 * f, 0, exit_after_barrier)(o);
  } else if (name == "smem_overrun") {
    BIWKV_LAUNCH(1, 32, 32 * f, 0, smem_overrun)(o);
  } else if (name == "smem_uninitialised") {
    BIWKV_LAUNCH(1, 32, 32 * f, 0, smem_uninitialised)(o);
  } else if (name == "race") {
    BIWKV_LAUNCH(1, 64, 64 * f, 0, race)(o);
  } else if (name == "block_order") {
    int next = 0;
    BIWKV_LAUNCH(dim3(4, 3), 32, 0, 0, block_order)(o, &next);
  } else if (name == "smem_48k") {
    BIWKV_LAUNCH(1, 32, 48 * 1024, 0, smem_fill)(o);
  } else if (name == "smem_over_48k") {
    BIWKV_LAUNCH(1, 32, 48 * 1024 + 4, 0, smem_fill)(o);
  } else if (name == "smem_opt_in") {
    C10_CUDA_CHECK(cudaFuncSetAttribute(
        smem_fill, cudaFuncAttributeMaxDynamicSharedMemorySize, 64 * 1024));
    BIWKV_LAUNCH(1, 32, 64 * 1024, 0, smem_fill)(o);
    C10_CUDA_CHECK(cudaFuncSetAttribute(
        smem_fill, cudaFuncAttributeMaxDynamicSharedMemorySize, 48 * 1024));
  } else if (name == "warp_ops") {
    BIWKV_LAUNCH(1, 64, 0, 0, warp_ops)(o);
  } else if (name == "empty_is_nan") {
    return call.done(at::empty({1024}));  // what the kernels' outputs start as
  } else if (name == "half_warps") {
    BIWKV_LAUNCH(1, 64, 0, 0, half_warps)(o);
  } else if (name == "shfl_bad_mask") {
    BIWKV_LAUNCH(1, 32, 0, 0, shfl_bad_mask)(o);
  } else if (name == "shfl_after_exit") {
    BIWKV_LAUNCH(1, 32, 0, 0, shfl_after_exit)(o);
  } else {
    TORCH_CHECK(false, "cuda_emu: no self-test named ", name);
  }
  C10_CUDA_KERNEL_LAUNCH_CHECK();
  return call.done(out);
}

// --- Grid of the Bi-WKV launches (tests/test_ops/test_cuda_grid.py) -------

// launch_config of bi_wkv_cuda.cu for a device of sm_count SMs: the grid of
// one launch (grid.y: its batch elements), the launches each kernel takes
// (batch slices of at most 65535), the block, and each kernel's dynamic
// shared memory with float accumulators (float16/bfloat16/float32) in the
// order they are launched.
py::dict grid_of_launch(int64_t B, int64_t T, int64_t C, int64_t sm_count) {
  TORCH_CHECK(B > 0 && T > 0 && C > 0 && sm_count > 0,
              "cuda_emu launch_config: sizes must be positive");
  const auto cfg = bi_wkv::launch_config(B, T, C, sm_count);
  const size_t acc = sizeof(float);
  const size_t fwd = cfg.shared_bytes(bi_wkv::kForwardFields, acc);
  const size_t bwd = cfg.shared_bytes(bi_wkv::kBackwardFields, acc);
  py::list forward, backward;
  if (cfg.segments() > 1) {
    forward.append(py::make_tuple("summary_kernel", fwd));
    backward.append(py::make_tuple("summary_kernel", bwd));
  }
  forward.append(py::make_tuple("forward_kernel", fwd));
  backward.append(py::make_tuple("backward_kernel", bwd));
  if (cfg.segments() > 1) {
    backward.append(py::make_tuple("backward_finish_kernel", 0));
  }
  py::dict d;
  d["grid"] = py::make_tuple(cfg.grid.x, cfg.grid.y, cfg.grid.z);
  d["block"] = py::make_tuple(cfg.block.x, cfg.block.y, cfg.block.z);
  d["batch_slices"] = cfg.batch_slices();
  d["forward"] = forward;
  d["backward"] = backward;
  return d;
}

}  // namespace

PYBIND11_MODULE(TORCH_EXTENSION_NAME, m) {
  m.def("forward", &forward, "bi_wkv forward_cuda on the emulator");
  m.def("backward", &backward, "bi_wkv backward_cuda on the emulator");
  m.def("bi_wkv6_forward_cuda", &forward6,
        "bi_wkv6 forward_cuda on the emulator");
  m.def("bi_wkv6_backward_cuda", &backward6,
        "bi_wkv6 backward_cuda on the emulator: gr, gk, gv, gw, gu");
  m.def("set_schedule", &cuda_emu::set_schedule,
        "Order of the threads between barriers and of the blocks: "
        "'ascending', 'descending' or 'shuffled' (seeded)",
        py::arg("order"), py::arg("seed") = 0);
  m.def("kernel_records", &kernel_records,
        "Per kernel: __launch_bounds__, launches, largest block and dynamic "
        "shared memory launched");
  m.def("reset_records", &reset_records);
  m.def("selftest", &selftest, py::arg("name"));
  // Grid of the Bi-WKV launches.
  m.def("launch_config", &grid_of_launch,
        "Grid (of one launch), batch slices (launches per kernel), block and "
        "launched kernels with their dynamic shared memory (float "
        "accumulators) of bi_wkv_cuda.cu for a (B, T, C) input on a device "
        "of sm_count SMs",
        py::arg("B"), py::arg("T"), py::arg("C"), py::arg("sm_count"));
  m.def("bi_wkv6_forward_segments", &bi_wkv6::forward_segments,
        "Token segments per (batch, head) of bi_wkv6_cuda.cu's forward "
        "launch for B x H heads of T tokens on a device of sm_count SMs",
        py::arg("B"), py::arg("H"), py::arg("T"), py::arg("sm_count"));
  m.def("bi_wkv6_backward_segments", &bi_wkv6::backward_segments,
        "Token segments per (batch, head) of bi_wkv6_cuda.cu's backward "
        "launch for B x H heads of T tokens on a device of sm_count SMs",
        py::arg("B"), py::arg("H"), py::arg("T"), py::arg("sm_count"));
  m.def("set_sm_count", &cuda_emu::set_sm_count,
        "SM count of the emulated device (132 by default)", py::arg("n"));
  m.def("sm_count", [] { return cuda_emu::sm_count(); });
}
