// steadygrad._core: the compiled module. This file holds only the module definition and the
// registration table. Rule: the bindings of cpp/<family>/<header>.h live in
// cpp/bindings/<family>/<header>.cpp and register through register_<header>(); the runtime
// controls (ISA path, threads, cpu_info) are isa/runtime.cpp. Shared argument checks: checks.h.
#include <pybind11/pybind11.h>

#include <string>

#include "common/fork_guard.h"
#include "gemm/matmul_precision.h"
#include "isa/dispatch.h"

namespace py = pybind11;

namespace sg::bind {
void register_runtime(py::module_& m);     // isa/runtime.cpp
void register_kernel_allocs(py::module_& m); // isa/kernel_allocs.cpp
void register_gemm(py::module_& m);        // gemm/gemm.cpp
void register_fma_peak(py::module_& m);    // gemm/fma_peak.cpp
void register_matmul_precision(py::module_& m); // gemm/matmul_precision.cpp
void register_linear(py::module_& m);      // layers/linear.cpp
void register_batchnorm(py::module_& m);   // layers/batchnorm.cpp
void register_embedding(py::module_& m);   // layers/embedding.cpp
void register_layernorm(py::module_& m);   // layers/layernorm.cpp
void register_conv_geometry(py::module_& m); // layers/conv_geometry.cpp
void register_depthwise(py::module_& m);   // depthwise/depthwise.cpp
void register_conv(py::module_& m);        // conv/conv.cpp
void register_activations(py::module_& m); // layers/activations.cpp
void register_softmax_xent(py::module_& m); // layers/softmax_xent.cpp
void register_softmax(py::module_& m);     // layers/softmax.cpp
void register_pointwise(py::module_& m);   // layers/pointwise.cpp
void register_elem_loss(py::module_& m);   // layers/elem_loss.cpp
void register_layout(py::module_& m);      // layout/layout.cpp
void register_norm(py::module_& m);        // reduce/norm.cpp
void register_pooling(py::module_& m);     // pooling/pooling.cpp
void register_optim(py::module_& m);       // optim/optim.cpp
void register_step_tape(py::module_& m);   // step/step_tape.cpp
}  // namespace sg::bind

PYBIND11_MODULE(_core, m) {
  m.doc() = "steadygrad's compiled kernels (GEMM, layers, optimizers) with runtime ISA dispatch.";
  m.attr("__version__") = SG_VERSION;

  std::string err;
  if (!sg::init_isa_from_env(&err)) throw py::value_error(err);
  if (!sg::init_bf16_path_from_env(&err)) throw py::value_error(err);
  sg::install_fork_guard();

  sg::bind::register_runtime(m);
  sg::bind::register_kernel_allocs(m);
  sg::bind::register_gemm(m);
  sg::bind::register_fma_peak(m);
  sg::bind::register_matmul_precision(m);
  sg::bind::register_linear(m);
  sg::bind::register_batchnorm(m);
  sg::bind::register_embedding(m);
  sg::bind::register_layernorm(m);
  sg::bind::register_conv_geometry(m);
  sg::bind::register_depthwise(m);
  sg::bind::register_conv(m);
  sg::bind::register_activations(m);
  sg::bind::register_softmax_xent(m);
  sg::bind::register_softmax(m);
  sg::bind::register_pointwise(m);
  sg::bind::register_elem_loss(m);
  sg::bind::register_layout(m);
  sg::bind::register_norm(m);
  sg::bind::register_pooling(m);
  sg::bind::register_step_tape(m);
  sg::bind::register_optim(m);
}
