// The Python module of the mmvrwkv._ext extension. Importing it registers
// torch.ops.mmvrwkv.* (bi_wkv_library.cpp), which is how mmvrwkv calls the
// kernels. The functions below are build information, plus the raw kernel
// entries that benchmarks/ab_cpu_kernels.py calls when it loads builds of two
// revisions into one process (their torch.ops registrations would clash).
#include "bi_wkv.h"

PYBIND11_MODULE(TORCH_EXTENSION_NAME, m) {
  m.def("bi_wkv_forward", &bi_wkv::forward, "Bi-WKV forward (CPU/CUDA)",
        py::arg("w"), py::arg("u"), py::arg("k"), py::arg("v"));
  m.def("bi_wkv_backward", &bi_wkv::backward, "Bi-WKV backward (CPU/CUDA)",
        py::arg("w"), py::arg("u"), py::arg("k"), py::arg("v"), py::arg("gy"));
  m.def("has_cuda", &bi_wkv::has_cuda, "Whether the CUDA kernels were built");
  m.def("cpu_isa", &bi_wkv::cpu_isa, "Instruction set of the CPU kernels");
  m.def("cpu_threads", &bi_wkv::cpu_threads,
        "Threads the CPU kernels run on (at::parallel_for workers)");
}
