// Binding for cpp/reduce/norm.h: the deterministic L2 / max-abs norm of a float32 buffer.
#include <cmath>
#include <string>

#include "bindings/checks.h"
#include "reduce/norm.h"

namespace sg::bind {
namespace {

double global_norm(py::handle x_obj, double norm_type) {
  const char* fn = "global_norm";
  py::array x = f32_array(fn, "x", x_obj, -1);
  const bool inf = std::isinf(norm_type) && norm_type > 0;
  if (!inf && norm_type != 2.0) {
    value_error(fn, "norm_type must be 2.0 or inf, got " + std::to_string(norm_type));
  }
  const float* p = f32_cptr(x);
  const int64_t n = x.size();
  py::gil_scoped_release release;
  if (inf) return absmax_f32(p, n);
  return std::sqrt(sumsq_f32(p, n));
}

}  // namespace

void register_norm(py::module_& m) {
  m.def("global_norm", &global_norm, py::arg("x"), py::arg("norm_type") = 2.0,
        "L2 (norm_type=2) or max-abs (norm_type=inf) norm of a float32 buffer. Bitwise identical "
        "for any thread count and ISA path.");
}

}  // namespace sg::bind
