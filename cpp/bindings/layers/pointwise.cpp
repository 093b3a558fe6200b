// Bindings for cpp/layers/pointwise.h: residual add and dropout. Every argument
// is validated before any output is touched.
#include <cmath>
#include <cstdint>
#include <string>

#include "bindings/checks.h"
#include "layers/pointwise.h"

namespace sg::bind {
namespace {

using std::to_string;

py::array add(py::handle a_obj, py::handle b_obj, py::handle out_obj) {
  const char* fn = "add";
  py::array a = f32_array(fn, "a", a_obj, -1);
  py::array b = f32_array(fn, "b", b_obj, -1);
  require_same_shape(fn, "b", b, "a", a);
  py::array y = elementwise_out(fn, a, "the shape of a", out_obj, {{"a", &a}, {"b", &b}});
  const float* ap = f32_cptr(a);
  const float* bp = f32_cptr(b);
  float* yp = f32_ptr(y);
  const int64_t n = a.size();
  {
    py::gil_scoped_release release;
    add_f32(yp, ap, bp, n);
  }
  return y;
}

py::array dropout(py::handle x_obj, double p, uint64_t seed, py::handle out_obj) {
  const char* fn = "dropout";
  py::array x = f32_array(fn, "x", x_obj, -1);
  if (!(p >= 0.0 && p <= 1.0)) {
    value_error(fn, "dropout probability has to be between 0 and 1, but got " + to_string(p));
  }
  py::array y = elementwise_out(fn, x, "the shape of x", out_obj, {{"x", &x}});
  const DropoutParams d = dropout_params(p);
  const float* xp = f32_cptr(x);
  float* yp = f32_ptr(y);
  const int64_t n = x.size();
  {
    py::gil_scoped_release release;
    dropout_f32(yp, xp, n, seed, d.threshold, d.scale);
  }
  return y;
}

}  // namespace

void register_pointwise(py::module_& m) {
  m.def("add", &add, py::arg("a"), py::arg("b"), py::kw_only(), py::arg("out") = py::none(),
        "a + b elementwise (same shapes); out may be a or b.");
  m.def("dropout", &dropout, py::arg("x"), py::arg("p"), py::arg("seed"), py::kw_only(),
        py::arg("out") = py::none(),
        "x * mask / (1 - p) with mask[i] = hash(seed, i) >= p * 2^32 (counter-based: the same "
        "seed gives the same mask for any thread count or ISA). The backward is "
        "dropout(grad_output, p, seed) with the forward's seed.");
}

}  // namespace sg::bind
