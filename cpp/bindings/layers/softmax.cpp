// Bindings for cpp/layers/softmax.h: softmax and log_softmax along `dim` (torch's negative
// dims too), and their backwards from the forward's output, each out-of-place or into `out`.
#include <string>

#include "bindings/checks.h"
#include "layers/softmax.h"

namespace sg::bind {
namespace {

struct Rows {
  int64_t outer = 1, D = 1, inner = 1;
};

// (outer, D, inner) around dim; torch's IndexError wording for a dim out of range. A 0-d
// tensor is one row of one element (torch accepts dim 0 and -1 there).
Rows rows_along(const char* fn, const py::array& a, int64_t dim) {
  const int64_t nd = a.ndim();
  const int64_t lo = nd == 0 ? -1 : -nd, hi = nd == 0 ? 0 : nd - 1;
  if (dim < lo || dim > hi) {
    throw py::index_error(std::string(fn) + ": Dimension out of range (expected to be in range of [" +
                          std::to_string(lo) + ", " + std::to_string(hi) + "], but got " +
                          std::to_string(dim) + ")");
  }
  Rows r;
  if (nd == 0) return r;
  const int64_t d = dim < 0 ? dim + nd : dim;
  for (int64_t k = 0; k < nd; ++k) {
    const int64_t s = a.shape(k);
    if (k < d) r.outer *= s;
    else if (k == d) r.D = s;
    else r.inner *= s;
  }
  return r;
}

py::array sm_forward(const char* fn, bool log, py::handle x_obj, int64_t dim, py::handle out_obj) {
  py::array x = f32_array(fn, "x", x_obj, -1);
  const Rows r = rows_along(fn, x, dim);
  py::array out = elementwise_out(fn, x, "the input's shape", out_obj, {{"x", &x}});
  const float* xp = f32_cptr(x);
  float* yp = f32_ptr(out);
  {
    py::gil_scoped_release release;
    softmax_kernels().forward(yp, xp, r.outer, r.D, r.inner, log);
  }
  return out;
}

py::array sm_backward(const char* fn, bool log, py::handle dy_obj, py::handle y_obj, int64_t dim,
                      py::handle out_obj) {
  py::array dy = f32_array(fn, "grad_output", dy_obj, -1);
  py::array y = f32_array(fn, "y", y_obj, -1);
  require_same_shape(fn, "y", y, "grad_output", dy);
  const Rows r = rows_along(fn, dy, dim);
  py::array out = elementwise_out(fn, dy, "the input's shape", out_obj, {{"grad_output", &dy}});
  require_disjoint(fn, "out", out, "y", y);
  const float* dyp = f32_cptr(dy);
  const float* yp = f32_cptr(y);
  float* dxp = f32_ptr(out);
  {
    py::gil_scoped_release release;
    softmax_kernels().backward(dxp, dyp, yp, r.outer, r.D, r.inner, log);
  }
  return out;
}

void def_pair(py::module_& m, const char* name, bool log, const char* doc, const char* bdoc) {
  m.def(name, [name = std::string(name), log](py::handle x, int64_t dim, py::handle out) {
          return sm_forward(name.c_str(), log, x, dim, out);
        },
        py::arg("x"), py::arg("dim"), py::kw_only(), py::arg("out") = py::none(), doc);
  const std::string backward = std::string(name) + "_backward";
  m.def(backward.c_str(),
        [backward, log](py::handle dy, py::handle y, int64_t dim, py::handle out) {
          return sm_backward(backward.c_str(), log, dy, y, dim, out);
        },
        py::arg("grad_output"), py::arg("y"), py::arg("dim"), py::kw_only(),
        py::arg("out") = py::none(), bdoc);
}

}  // namespace

void register_softmax(py::module_& m) {
  def_pair(m, "softmax", false, "softmax(x) along dim (max-subtracted).",
           "y * (grad_output - sum(grad_output * y)) along dim, from the forward output y.");
  def_pair(m, "log_softmax", true, "log_softmax(x) along dim (max-subtracted).",
           "grad_output - exp(y) * sum(grad_output) along dim, from the forward output y.");
}

}  // namespace sg::bind
