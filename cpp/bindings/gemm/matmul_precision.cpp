// Bindings for cpp/gemm/matmul_precision.h: the precision flag (sg.set_matmul_precision wraps
// these in python/steadygrad/_precision.py) and the bf16 path switch the tests use.
#include <string>

#include "bindings/checks.h"
#include "gemm/bf16.h"
#include "gemm/matmul_precision.h"

namespace sg::bind {
namespace {

void set_precision(const std::string& name) {
  if (name == "highest") set_matmul_precision(MatmulPrecision::highest);
  else if (name == "bf16") set_matmul_precision(MatmulPrecision::bf16);
  else value_error("_set_matmul_precision", "precision must be 'highest' or 'bf16', got '" + name + "'");
}

void set_path(const std::string& name) {
  std::string err;
  if (!set_bf16_path(name, &err)) value_error("_set_bf16_path", err);
}

// The rounding the packers apply, on a whole array (tests compare it with a numpy reference).
py::array round_bf16(py::handle x_obj) {
  py::array x = f32_array("_round_bf16", "x", x_obj, -1);
  py::array out = new_f32(std::vector<py::ssize_t>(x.shape(), x.shape() + x.ndim()));
  const float* src = f32_cptr(x);
  float* dst = f32_ptr(out);
  for (py::ssize_t i = 0; i < x.size(); ++i) dst[i] = bf16_round(src[i]);
  return out;
}

}  // namespace

void register_matmul_precision(py::module_& m) {
  m.def("_set_matmul_precision", &set_precision, py::arg("precision"),
        "Private: set the GEMM precision, 'highest' or 'bf16' (sg.set_matmul_precision).");
  m.def("_get_matmul_precision",
        []() { return std::string(matmul_precision_name(matmul_precision())); },
        "Private: the GEMM precision in force, 'highest' or 'bf16'.");
  m.def("_set_bf16_path", &set_path, py::arg("name"),
        "Private: the bf16 GEMM path, 'reference', 'avx512bf16' or 'amx' (ValueError for one this "
        "CPU/OS cannot run). STEADYGRAD_BF16_PATH sets it at import.");
  m.def("_get_bf16_path", []() { return std::string(bf16_path_name(active_bf16_path())); },
        "Private: the bf16 path as chosen (cpu_info()['bf16_path'] is the one a GEMM takes now).");
  m.def("_round_bf16", &round_bf16, py::arg("x"),
        "Private: float32 x rounded to bfloat16 (nearest, ties to even) as the GEMM packers do, "
        "as float32.");
}

}  // namespace sg::bind
