// The Python module of the mmvrwkv._ext extension. Importing it registers
// the operators torch.ops.mmvrwkv.* (cuda_ops/<op>/<op>.cpp), which is how
// mmvrwkv calls the kernels. The functions below are build information,
// plus the raw CPU kernels of Bi-WKV that benchmarks/ab_cpu_kernels.py calls
// when it loads builds of two revisions into one process (it builds them
// without the operator registrations, which would clash).
#include <torch/extension.h>

#include "bi_wkv.h"
#include "cpu_isa.h"

namespace {

bool has_cuda() {
#ifdef WITH_CUDA
  return true;
#else
  return false;
#endif
}

}  // namespace

PYBIND11_MODULE(TORCH_EXTENSION_NAME, m) {
  m.def("bi_wkv_forward", &bi_wkv::forward_cpu,
        "Bi-WKV CPU kernel (contiguous inputs, no checks)", py::arg("w"),
        py::arg("u"), py::arg("k"), py::arg("v"));
  m.def("bi_wkv_backward", &bi_wkv::backward_cpu,
        "Bi-WKV CPU backward kernel (contiguous inputs, no checks)",
        py::arg("w"), py::arg("u"), py::arg("k"), py::arg("v"), py::arg("gy"));
  m.def("has_cuda", &has_cuda, "Whether the CUDA kernels were built");
  m.def("cpu_isa", &mmvrwkv::cpu_isa, "Instruction set of the CPU kernels");
  m.def("cpu_threads", &mmvrwkv::cpu_threads,
        "Threads the CPU kernels run on (at::parallel_for workers)");
}
